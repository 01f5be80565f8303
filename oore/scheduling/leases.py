"""Runner leases in one timer structure, and ``last_seen`` written in batches.

Every call of a runner renews its lease (:meth:`Leases.seen`: a dict write, no task, no
message). One heap holds one entry per runner; when an entry comes up, the runner's lease
is checked: renewed since, it goes back in at its new expiry; run out, the runner is lost
(``on_lost`` requeues its builds and marks it offline). When a runner was last heard from
is written to PostgreSQL in one statement every ``flush_every`` seconds and at stop, not
once per call.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Awaitable, Callable

import trio

from oore.errors import ApiError
from oore.scheduling.ports import Clock
from oore.scheduling.worker import Worker
from oore.store import Store

log = logging.getLogger(__name__)

FLUSH_EVERY = 15.0
STOP_FLUSH_DEADLINE = 5.0
RETRY = 5.0  # seconds before a lost runner whose builds could not be requeued is retried

OnLost = Callable[[str], Awaitable[None]]


class Leases(Worker):
    """Each runner's lease expiry (trio time) and when it was last seen (wall clock)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        on_lost: OnLost,
        *,
        lease: float,
        flush_every: float = FLUSH_EVERY,
    ) -> None:
        super().__init__("leases")
        self._store = store
        self._clock = clock
        self._on_lost = on_lost
        self.lease = lease
        # Other daemons judge a runner lost by when it was last written here: well within
        # a lease.
        self._flush_every = min(flush_every, lease / 4)
        self._expires: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._last_seen: dict[str, int] = {}
        self._next_flush = math.inf
        self.flushes = 0
        self.lost = 0

    def seen(self, runner_id: str) -> None:
        """The runner called: its lease runs ``lease`` seconds from now."""
        expires = trio.current_time() + self.lease
        if runner_id not in self._expires:
            heapq.heappush(self._heap, (expires, runner_id))
            if self._heap[0][1] == runner_id:
                self.wake()
        self._expires[runner_id] = expires
        self._last_seen[runner_id] = self._clock.now()

    def forget(self, runner_id: str) -> None:
        """The runner was deleted: no lease, nothing to write."""
        self._expires.pop(runner_id, None)
        self._last_seen.pop(runner_id, None)

    def expires_in(self, runner_id: str) -> float | None:
        """Seconds until the runner's lease runs out; None without a lease."""
        expires = self._expires.get(runner_id)
        return None if expires is None else expires - trio.current_time()

    def __len__(self) -> int:
        return len(self._expires)

    def backlog(self) -> int:
        return len(self._last_seen)

    async def on_start(self) -> None:
        self._next_flush = trio.current_time() + self._flush_every

    def due(self) -> float:
        return min(self._heap[0][0] if self._heap else math.inf, self._next_flush)

    async def work(self) -> None:
        now = trio.current_time()
        if now >= self._next_flush:
            self._next_flush = now + self._flush_every
            await self.flush()
        lost: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            _, runner_id = heapq.heappop(self._heap)
            expires = self._expires.get(runner_id)
            if expires is None:
                continue
            if expires > now:
                heapq.heappush(self._heap, (expires, runner_id))
            else:
                del self._expires[runner_id]
                lost.append(runner_id)
        for runner_id in lost:
            self.lost += 1
            try:
                await self._on_lost(runner_id)
            except ApiError as exc:
                log.warning("runner %s: its lost lease could not be handled: %s", runner_id, exc)
                if runner_id not in self._expires:
                    retry = trio.current_time() + RETRY
                    self._expires[runner_id] = retry
                    heapq.heappush(self._heap, (retry, runner_id))

    async def flush(self) -> None:
        """Write every ``last_seen`` noted since the last flush, in one statement."""
        seen, self._last_seen = self._last_seen, {}
        if not seen:
            return
        try:
            await self._store.runners.touch(list(seen.items()))
        except ApiError as exc:
            log.warning("last seen times of %d runners not written: %s", len(seen), exc)
            for runner_id, at in seen.items():  # kept for the next flush
                self._last_seen.setdefault(runner_id, at)
        else:
            self.flushes += 1

    async def on_stop(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(STOP_FLUSH_DEADLINE):
            await self.flush()
