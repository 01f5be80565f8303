"""One heap for the deadlines of every assigned and running build, served by one task.

A build's current deadline (its assignment or build timeout) is armed here; the worker
sleeps until the earliest one and hands each due build to the build state machines
(``on_due``). Re-arming or disarming a build only records its new time: stale heap
entries are skipped when they come up, so no entry is ever searched for.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Awaitable, Callable

import trio

from oore.errors import ApiError
from oore.scheduling.worker import Worker

log = logging.getLogger(__name__)

RETRY = 5.0  # seconds before a deadline whose handling failed (database away) is retried

OnDue = Callable[[str], Awaitable[None]]


class Deadlines(Worker):
    """Build deadlines (trio time) in a heap; ``on_due(build_id)`` runs when one passes."""

    def __init__(self, on_due: OnDue) -> None:
        super().__init__("deadlines")
        self._on_due = on_due
        self._heap: list[tuple[float, str]] = []
        self._armed: dict[str, float] = {}
        self.fired = 0

    def arm(self, build_id: str, at: float) -> None:
        """The build's deadline is now ``at`` (replacing any earlier one)."""
        self._armed[build_id] = at
        heapq.heappush(self._heap, (at, build_id))
        if len(self._heap) > 2 * len(self._armed) + 64:  # mostly stale: rebuild
            self._heap = [(when, key) for key, when in self._armed.items()]
            heapq.heapify(self._heap)
        if self._heap[0] == (at, build_id):
            self.wake()

    def disarm(self, build_id: str) -> None:
        self._armed.pop(build_id, None)

    def armed(self, build_id: str) -> float | None:
        return self._armed.get(build_id)

    def __len__(self) -> int:
        return len(self._armed)

    def backlog(self) -> int:
        return len(self._armed)

    def due(self) -> float:
        while self._heap and self._armed.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # stale: re-armed or disarmed since
        return self._heap[0][0] if self._heap else math.inf

    async def work(self) -> None:
        now = trio.current_time()
        while self.due() <= now:
            _, build_id = heapq.heappop(self._heap)
            del self._armed[build_id]
            self.fired += 1
            try:
                await self._on_due(build_id)
            except ApiError as exc:
                log.warning("build %s: its deadline could not be handled: %s", build_id, exc)
                if build_id not in self._armed:
                    self.arm(build_id, trio.current_time() + RETRY)
