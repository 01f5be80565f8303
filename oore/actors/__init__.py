"""The actor kernel: supervised trio actors with bounded mailboxes.

``base`` (actors, handles, replies), ``supervisor`` (restart policies and budgets),
``registry`` (find a child by key; ``Registry.get_or_start``, the one way to get or start
one), ``groupcommit`` (many small writes, one transaction) and ``due`` (one worker that
runs callbacks when items fall due). The kernel imports nothing else from oore: the
actors with a domain live above it (``oore/live``, the scheduling package).
"""

from oore.actors.base import (
    Actor,
    ActorCrashed,
    ActorError,
    ActorRef,
    ActorStatistics,
    ActorStopped,
    MailboxFull,
    Reply,
)
from oore.actors.due import DueTimes
from oore.actors.groupcommit import GroupCommitStatistics, GroupCommitter, Submit
from oore.actors.registry import (
    AlreadyRegistered,
    HasStatistics,
    NotRegistered,
    Registry,
    Stoppable,
)
from oore.actors.supervisor import (
    DEFAULT_GRACE,
    ChildSpec,
    ChildStatistics,
    Restart,
    StartFn,
    Supervised,
    Supervisor,
    SupervisorError,
    SupervisorEscalation,
    SupervisorNotRunning,
    SupervisorStatistics,
    actor_spec,
    supervisor_spec,
)

__all__ = [
    "DEFAULT_GRACE",
    "Actor",
    "ActorCrashed",
    "ActorError",
    "ActorRef",
    "ActorStatistics",
    "ActorStopped",
    "AlreadyRegistered",
    "ChildSpec",
    "ChildStatistics",
    "DueTimes",
    "GroupCommitStatistics",
    "GroupCommitter",
    "HasStatistics",
    "MailboxFull",
    "NotRegistered",
    "Registry",
    "Reply",
    "Restart",
    "StartFn",
    "Stoppable",
    "Submit",
    "Supervised",
    "Supervisor",
    "SupervisorError",
    "SupervisorEscalation",
    "SupervisorNotRunning",
    "SupervisorStatistics",
    "actor_spec",
    "supervisor_spec",
]
