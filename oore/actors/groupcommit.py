"""Group commit: many small writes, one transaction per batch.

A :class:`GroupCommitter` is an actor handle whose actor commits rows through a callable
supplied by the store (this module knows no SQL). While one commit is in flight, new
submissions queue in the bounded mailbox; when it finishes they all go into the next
commit. No timer is needed: the busier the database, the larger the batches.

    heartbeats = GroupCommitter("heartbeats", store.commit_heartbeats, max_batch=500,
                                capacity=10_000)
    await supervisor.start_child(heartbeats.spec())
    await heartbeats.submit_one(Heartbeat(runner_id, at))   # returns once durable
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Generic, TypeVar, assert_never, cast

import trio

from oore.actors.base import Actor, ActorRef, ActorStatistics, Reply
from oore.actors.supervisor import DEFAULT_GRACE, ChildSpec, Restart, actor_spec

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Submit(Generic[T]):
    """Rows to commit in one transaction; the reply resolves once they are durable.

    Sent by :meth:`GroupCommitter.submit`. The rows of one submission are never split
    across batches. The reply is sent ``None`` after the batch committed, or failed with
    the exception the commit raised.
    """

    reply: Reply[None]
    rows: tuple[T, ...]


@dataclass(frozen=True)
class GroupCommitStatistics(ActorStatistics):
    """Actor statistics plus the committer's counters, cumulative across restarts.

    ``queue_depth`` counts submissions waiting for a commit: in the mailbox, plus one held
    over when it did not fit in the batch being committed.
    """

    batches: int
    rows: int
    failed_batches: int
    queue_depth: int


class GroupCommitter(ActorRef[Submit[T]]):
    """The handle of a group-commit actor over rows of type ``T``.

    ``commit(rows)`` must write all ``rows`` in one transaction or raise. A batch holds
    whole submissions, at most ``max_batch`` rows (a larger submission is a batch of its
    own). ``capacity`` bounds the mailbox in submissions.
    """

    def __init__(
        self,
        name: str,
        commit: Callable[[list[T]], Awaitable[None]],
        *,
        max_batch: int,
        capacity: int,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, not {max_batch!r}")
        super().__init__(name, capacity=capacity)
        self._commit = commit
        self.max_batch = max_batch
        self._batches = 0
        self._rows = 0
        self._failed_batches = 0
        self._held_over = 0

    async def submit(self, rows: Iterable[T]) -> None:
        """Commit ``rows`` with whatever else is queued; return once they are durable.

        Waits while the mailbox is full. If the batch's commit raises, the same exception
        object is raised here and in every other submitter of that batch (not wrapped, so a
        store error keeps its type). The caller owns the deadline; if it is cancelled after
        its rows were taken into a batch, they may still be committed. Raises
        :class:`~oore.actors.base.ActorStopped`/``ActorCrashed`` like any ask. An empty
        ``rows`` returns at once.
        """
        batch = tuple(rows)
        if not batch:
            await trio.lowlevel.checkpoint()
            return
        await self.ask(Submit, batch)

    async def submit_one(self, row: T) -> None:
        """:meth:`submit` a single row."""
        await self.ask(Submit, (row,))

    def statistics(self) -> GroupCommitStatistics:
        """A snapshot of the mailbox and the commit counters."""
        base = super().statistics()
        return GroupCommitStatistics(
            **asdict(base),
            batches=self._batches,
            rows=self._rows,
            failed_batches=self._failed_batches,
            queue_depth=base.mailbox_depth + self._held_over,
        )

    async def run(
        self, *, task_status: trio.TaskStatus[GroupCommitter[T]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run one incarnation of the committer actor; reports ``self`` once started."""
        await _Committer(self).run(task_status=cast("trio.TaskStatus[Any]", task_status))

    def spec(
        self,
        *,
        id: str | None = None,
        restart: Restart = Restart.PERMANENT,
        grace: float = DEFAULT_GRACE,
        on_exit: Callable[[], None] | None = None,
    ) -> ChildSpec[GroupCommitter[T]]:
        """A child spec for a :class:`~oore.actors.supervisor.Supervisor` (see actor_spec)."""
        return actor_spec(self, _Committer, id=id, restart=restart, grace=grace, on_exit=on_exit)


class _Committer(Actor[Submit[T]]):
    """One incarnation: gather queued submissions, commit them, answer them."""

    def __init__(self, handle: GroupCommitter[T]) -> None:
        super().__init__(handle)
        self._handle = handle

    async def handle(self, msg: Submit[T]) -> None:
        match msg:
            case Submit():
                first: Submit[T] | None = msg
                while first is not None:
                    batch, first = self._gather(first)
                    self._handle._held_over = 0 if first is None else 1
                    try:
                        await self._commit(batch)
                    finally:
                        self._handle._held_over = 0
            case _:
                assert_never(msg)

    def _gather(self, first: Submit[T]) -> tuple[list[Submit[T]], Submit[T] | None]:
        """Take queued submissions after ``first`` while they fit; return the one that did not."""
        batch = [first]
        size = len(first.rows)
        while size < self._handle.max_batch:
            nxt = self.take_nowait()
            if nxt is None:
                return batch, None
            if size + len(nxt.rows) > self._handle.max_batch:
                return batch, nxt
            batch.append(nxt)
            size += len(nxt.rows)
        return batch, None

    async def _commit(self, batch: list[Submit[T]]) -> None:
        """Commit one batch and answer its submitters."""
        rows = [row for submission in batch for row in submission.rows]
        handle = self._handle
        try:
            await handle._commit(rows)
        except Exception as exc:  # the batch failed, not the actor: its submitters get exc
            handle._failed_batches += 1
            logger.warning("%s: commit of %d rows failed: %r", handle.name, len(rows), exc)
            for submission in batch:
                submission.reply.fail(exc)
            return
        handle._batches += 1
        handle._rows += len(rows)
        for submission in batch:
            submission.reply.send(None)
