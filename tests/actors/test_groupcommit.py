"""Group commit: batching, durability before return, failures confined to their batch."""

from __future__ import annotations

from collections import deque

import pytest
import trio
import trio.testing

from oore.actors import (
    ActorStopped,
    GroupCommitStatistics,
    GroupCommitter,
    Supervisor,
)


class FakeStore:
    """Commits rows to a list; a commit can be held at a gate; negative rows violate a rule."""

    def __init__(self) -> None:
        self.durable: list[int] = []
        self.attempts: list[list[int]] = []
        self.gates: deque[trio.Event] = deque()
        self._changed = trio.Event()

    async def commit(self, rows: list[int]) -> None:
        self.attempts.append(list(rows))
        self._changed.set()
        self._changed = trio.Event()
        if self.gates:
            await self.gates.popleft().wait()
        if any(row < 0 for row in rows):
            raise ValueError("constraint violated")
        self.durable.extend(rows)

    async def wait_attempts(self, count: int) -> None:
        while len(self.attempts) < count:
            await self._changed.wait()

    def hold_next(self) -> trio.Event:
        gate = trio.Event()
        self.gates.append(gate)
        return gate


async def test_concurrent_submitters_share_commits_and_return_once_durable() -> None:
    store = FakeStore()
    committer = GroupCommitter[int]("rows", store.commit, max_batch=100, capacity=100)
    first = store.hold_next()
    returned: list[int] = []
    all_returned = trio.Event()

    async def submitter(row: int) -> None:
        await committer.submit_one(row)
        assert row in store.durable  # committed before submit returned
        returned.append(row)
        if len(returned) == 51:
            all_returned.set()

    async with trio.open_nursery() as nursery:
        assert await nursery.start(committer.run) is committer
        nursery.start_soon(submitter, 0)
        await store.wait_attempts(1)
        for row in range(1, 51):
            nursery.start_soon(submitter, row)
        await trio.testing.wait_all_tasks_blocked()
        assert returned == []  # nothing is durable yet, so nobody returned
        assert committer.statistics().queue_depth == 50
        first.set()
        with trio.fail_after(1):
            await all_returned.wait()
        committer.stop()
    assert [sorted(rows) for rows in store.attempts] == [[0], list(range(1, 51))]
    stats = committer.statistics()
    assert (stats.batches, stats.rows, stats.failed_batches, stats.queue_depth) == (2, 51, 0, 0)


async def test_a_failed_commit_fails_exactly_its_batch_and_the_next_one_works() -> None:
    store = FakeStore()
    committer = GroupCommitter[int]("rows", store.commit, max_batch=100, capacity=100)
    first, second = store.hold_next(), store.hold_next()
    errors: dict[int, BaseException] = {}
    done = trio.Event()

    async def submitter(rows: list[int]) -> None:
        try:
            await committer.submit(rows)
        except ValueError as exc:
            errors[rows[0]] = exc
        if len(store.durable) == 3 and len(errors) == 2:
            done.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        nursery.start_soon(submitter, [0])
        await store.wait_attempts(1)
        nursery.start_soon(submitter, [1])
        nursery.start_soon(submitter, [-1])  # poisons the batch it lands in
        await trio.testing.wait_all_tasks_blocked()
        first.set()
        await store.wait_attempts(2)
        nursery.start_soon(submitter, [2, 3])  # queued while the doomed batch is in flight
        await trio.testing.wait_all_tasks_blocked()
        second.set()
        with trio.fail_after(1):
            await done.wait()
        committer.stop()
    assert [sorted(rows) for rows in store.attempts] == [[0], [-1, 1], [2, 3]]
    assert store.durable == [0, 2, 3]
    assert set(errors) == {1, -1}
    assert errors[1] is errors[-1]  # the commit's own exception, raised in each submitter
    stats = committer.statistics()
    assert (stats.batches, stats.rows, stats.failed_batches) == (2, 3, 1)


async def test_batches_hold_whole_submissions_up_to_max_batch_rows() -> None:
    store = FakeStore()
    committer = GroupCommitter[int]("rows", store.commit, max_batch=3, capacity=10)
    first = store.hold_next()
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        nursery.start_soon(committer.submit, [0])
        await store.wait_attempts(1)
        for rows in ([1, 1], [2, 2], [3], [4, 4, 4, 4, 4], [5]):
            nursery.start_soon(committer.submit, rows)
            await trio.testing.wait_all_tasks_blocked()  # keep submission order
        assert committer.statistics().queue_depth == 5
        first.set()
        with trio.fail_after(1):
            await store.wait_attempts(5)
        await trio.testing.wait_all_tasks_blocked()
        committer.stop()
    assert store.attempts == [[0], [1, 1], [2, 2, 3], [4, 4, 4, 4, 4], [5]]


async def test_under_a_supervisor_a_graceful_stop_commits_what_is_queued() -> None:
    store = FakeStore()
    committer = GroupCommitter[int]("rows", store.commit, max_batch=10, capacity=10)
    sup = Supervisor("root")
    first = store.hold_next()
    committed: list[int] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        assert await sup.start_child(committer.spec()) is committer

        async def submitter(row: int) -> None:
            await committer.submit_one(row)
            committed.append(row)

        nursery.start_soon(submitter, 0)
        await store.wait_attempts(1)
        for row in range(1, 4):
            nursery.start_soon(submitter, row)
        await trio.testing.wait_all_tasks_blocked()
        details = sup.statistics().children["rows"].details
        assert isinstance(details, GroupCommitStatistics)
        assert details.queue_depth == 3
        sup.stop()  # closes the mailbox: queued submissions are still committed
        first.set()
    assert sorted(committed) == [0, 1, 2, 3]
    assert [sorted(rows) for rows in store.attempts] == [[0], [1, 2, 3]]
    with pytest.raises(ActorStopped):
        await committer.submit_one(9)


async def test_submitting_nothing_commits_nothing() -> None:
    store = FakeStore()
    committer = GroupCommitter[int]("rows", store.commit, max_batch=10, capacity=1)
    await committer.submit([])
    assert store.attempts == [] and committer.statistics().mailbox_depth == 0


def test_max_batch_must_be_positive() -> None:
    store = FakeStore()
    with pytest.raises(ValueError):
        GroupCommitter[int]("rows", store.commit, max_batch=0, capacity=1)
