"""Claims committed in batches: every claim ready at once goes into one store call.

A claimant hands its :class:`~oore.store.builds.PickRow` to :meth:`Claims.commit` and
waits; the committer task takes everything that queued up while the previous batch was
in flight and commits it with one store call (one crossing to the database driver's
thread; one statement per distinct label set, which picks the oldest eligible queued
builds that no other daemon's claims hold, ``FOR UPDATE SKIP LOCKED``, and assigns them),
then answers each claimant with its own outcome. The busier the database, the larger the
batches; no timer is involved.
"""

from __future__ import annotations

import logging
from collections import deque

import trio

from oore.actors import Reply
from oore.errors import Conflict
from oore.scheduling.worker import Worker
from oore.store import Store
from oore.store.builds import ClaimOutcome, PickRow

log = logging.getLogger(__name__)

CLAIM_BATCH = 256
CAPACITY = 8192  # claims waiting for a commit before claimants wait for room


def restarting() -> Conflict:
    """The answer to a claim whose commit was cut short: the runner asks again."""
    return Conflict("dispatcher_restarting", "Try the claim again")


class Claims(Worker):
    """The claim committer: :meth:`commit` returns once the claim's batch is durable."""

    def __init__(self, store: Store, *, max_batch: int = CLAIM_BATCH) -> None:
        super().__init__("claims")
        self._store = store
        self._max_batch = max_batch
        self._pending: deque[tuple[PickRow, Reply[ClaimOutcome]]] = deque()
        self._room = trio.Semaphore(CAPACITY)
        self.batches = 0
        self.rows = 0

    async def commit(self, row: PickRow) -> ClaimOutcome:
        """Commit ``row`` with the other claims ready now; its outcome once durable.

        Raises what the batch's commit raised (a store error keeps its type). The caller
        owns the deadline; cancelled once its row is in a batch, the row may still commit.
        """
        try:  # without a trip through the scheduler while there is room
            self._room.acquire_nowait()
        except trio.WouldBlock:
            await self._room.acquire()
        try:
            reply: Reply[ClaimOutcome] = Reply()
            self._pending.append((row, reply))
            self.wake()
            return await reply.wait()
        finally:
            self._room.release()

    def backlog(self) -> int:
        return len(self._pending)

    def due(self) -> float:
        return trio.current_time() if self._pending else super().due()

    async def work(self) -> None:
        batch = [self._pending.popleft() for _ in range(min(self._max_batch, len(self._pending)))]
        batch = [(row, reply) for row, reply in batch if not reply.abandoned]
        if not batch:
            return
        try:
            outcomes = await self._store.builds.pick_claims([row for row, _ in batch])
        except BaseException as exc:
            if not isinstance(exc, Exception):  # cancelled: the claimants ask the database
                for _, reply in batch:
                    reply.fail(restarting())
                raise
            # the batch failed, not the committer: its claimants get exc
            log.warning("claims: commit of %d claims failed: %r", len(batch), exc)
            for _, reply in batch:
                reply.fail(exc)
            return
        self.batches += 1
        self.rows += len(batch)
        for (_, reply), outcome in zip(batch, outcomes, strict=True):
            reply.send(outcome)

    async def on_stop(self) -> None:
        while self._pending:
            await self.work()
