"""A supervised scheduling task: one loop that sleeps until it is woken or due, then works.

Each part of the scheduling tree with work of its own (the claim committer, the build
deadlines, the runner leases) is one :class:`Worker`: one task however many builds or
runners it serves, started under a supervisor like an actor, restarted after a crash.
"""

from __future__ import annotations

import math

import trio

from oore.actors import DEFAULT_GRACE, ActorStatistics, ChildSpec, Restart


class Worker:
    """The handle and loop of one supervised task; subclasses give ``due`` and ``work``."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._wake = trio.Event()
        self._stopping = False
        self._running = False
        self._incarnations = 0
        self._rounds = 0
        self._lag = 0.0

    @property
    def name(self) -> str:
        return self._name

    @property
    def stopping(self) -> bool:
        return self._stopping

    def wake(self) -> None:
        """Run ``work`` soon (never blocks)."""
        self._wake.set()

    def stop(self) -> None:
        """Finish: the loop ends after its current round, then ``on_stop`` runs."""
        self._stopping = True
        self._wake.set()

    def due(self) -> float:
        """When (trio time) ``work`` must run even if nobody wakes the worker."""
        return math.inf

    async def on_start(self) -> None:
        """Run before the worker reports itself started (each incarnation)."""

    async def work(self) -> None:
        """One round: do what is due or was asked for."""

    async def on_stop(self) -> None:
        """Run once the loop ended on :meth:`stop`."""

    def backlog(self) -> int:
        """Items waiting for this worker (for ``statistics``)."""
        return 0

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(
            name=self._name,
            mailbox_depth=self.backlog(),
            mailbox_capacity=0,
            blocked_senders=0,
            processed=self._rounds,
            restarts=max(0, self._incarnations - 1),
            lag=self._lag,
            running=self._running,
            stopping=self._stopping,
        )

    async def run(self, *, task_status: trio.TaskStatus[Worker] = trio.TASK_STATUS_IGNORED) -> None:
        """One incarnation: serve until stopped; reports ``self`` once started."""
        self._incarnations += 1
        self._running = True
        try:
            await self.on_start()
            task_status.started(self)
            while not self._stopping:
                due = self.due()
                if due > trio.current_time():
                    with trio.move_on_at(due):
                        await self._wake.wait()
                self._wake = trio.Event()
                if self._stopping:
                    break
                began = trio.current_time()
                self._lag = max(0.0, began - due) if due != math.inf else 0.0
                self._rounds += 1
                await self.work()
            await self.on_stop()
        finally:
            self._running = False

    def spec(self, *, grace: float = DEFAULT_GRACE) -> ChildSpec[Worker]:
        return ChildSpec(id=self._name, start=self.run, restart=Restart.PERMANENT, grace=grace)
