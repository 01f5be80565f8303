"""RunnerActor: one per live runner, holding its liveness and so its leases.

Every heartbeat and job call of a runner renews its lease (``Seen``). When no call
arrives for ``lease`` seconds the runner is lost: ``on_lost`` requeues the builds it held
and marks it offline, and the actor ends. A runner that comes back later gets a fresh
actor on its next call. At daemon start an actor is started for every runner holding a
build, with a full lease, so builds of a runner that never returns are requeued too.

Heartbeats are persisted by the heartbeat group committer, not here: the actor is pure
in-memory liveness, so a heartbeat costs one mailbox message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import assert_never

import trio

from oore.actors.base import Actor, ActorRef, ActorStopped, MailboxFull, Reply
from oore.actors.supervisor import ChildSpec, Restart, actor_spec


@dataclass(frozen=True)
class Seen:
    """The runner made a call: its lease runs for another ``lease`` seconds from now."""


@dataclass(frozen=True)
class Expiry:
    """Seconds (trio clock) until the lease runs out."""

    reply: Reply[float]


RunnerMsg = Seen | Expiry

OnLost = Callable[[str], Awaitable[None]]


class RunnerHandle(ActorRef[RunnerMsg]):
    """The handle of one RunnerActor."""

    def __init__(self, runner_id: str, *, capacity: int = 8) -> None:
        super().__init__(f"runner:{runner_id}", capacity=capacity)
        self.runner_id = runner_id

    def seen(self) -> None:
        """Renew the lease without waiting; a full mailbox already holds a renewal."""
        with contextlib.suppress(MailboxFull, ActorStopped):
            # Full: a renewal is queued already. Stopped: the lease ran out meanwhile.
            self.try_tell(Seen())

    async def expires_in(self) -> float:
        return await self.ask(Expiry)


def runner_actor_spec(
    handle: RunnerHandle, *, lease: float, on_lost: OnLost, on_exit: Callable[[], object]
) -> ChildSpec[RunnerHandle]:
    """A transient child; a restarted incarnation starts a full lease."""
    return actor_spec(
        handle,
        lambda ref: _RunnerActor(ref, lease, on_lost),
        restart=Restart.TRANSIENT,
        grace=5.0,
        on_exit=on_exit,
    )


class _RunnerActor(Actor[RunnerMsg]):
    def __init__(self, handle: RunnerHandle, lease: float, on_lost: OnLost) -> None:
        super().__init__(handle)
        self._handle = handle
        self._lease = lease
        self._on_lost = on_lost

    async def on_start(self) -> None:
        self.deadline = trio.current_time() + self._lease

    async def handle(self, msg: RunnerMsg) -> None:
        match msg:
            case Seen():
                self.deadline = trio.current_time() + self._lease
            case Expiry(reply):
                reply.send(self.deadline - trio.current_time())
            case _:
                assert_never(msg)

    async def on_deadline(self) -> None:
        self._handle.stop()
        await self._on_lost(self._handle.runner_id)
