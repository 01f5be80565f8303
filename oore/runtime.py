"""The composition root for live state: the supervision tree and the services built on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from oore.actors import ActorStatistics, GroupCommitter, Supervisor
from oore.services.clock import WallClock
from oore.services.identity import Identity
from oore.store import AuditEntry, Store

AUDIT_MAX_BATCH = 500
AUDIT_MAILBOX = 1024


@dataclass(frozen=True)
class Runtime:
    """What the daemon hands to its transports once the actors are running."""

    identity: Identity
    supervisor: Supervisor
    audit: GroupCommitter[AuditEntry]

    def actor_statistics(self) -> Mapping[str, ActorStatistics]:
        """Per-actor statistics for ``/metrics``, keyed by actor id."""
        return dict(self.supervisor.statistics().actors())


@asynccontextmanager
async def open_runtime(store: Store, clock: WallClock) -> AsyncIterator[Runtime]:
    """Start the supervision tree; on exit stop it in reverse order within its grace."""
    audit: GroupCommitter[AuditEntry] = GroupCommitter(
        "audit", store.audit.append, max_batch=AUDIT_MAX_BATCH, capacity=AUDIT_MAILBOX
    )
    root = Supervisor("root", [audit.spec()], max_restarts=5, period=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(root.run)
        try:
            yield Runtime(Identity(store, clock, audit), root, audit)
        finally:
            root.stop()
