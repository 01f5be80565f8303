"""The fan-out on its own: which viewers are written to directly, which get a queue, how
many writes a round makes, what a viewer already has, lagging, and yielding to others.

A viewer's ``send`` is any function that takes bytes and answers how many it wrote (the
lean listener's writes to a socket); here it records each call. A viewer whose task is
idle sleeps in :meth:`Viewer.idle`, as a stream's task does between writes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from itertools import groupby

import pytest
import trio
import trio.testing

from oore.actors import Supervisor
from oore.domain.logs import LogLine, log_events
from oore.live.fanout import Batch, FanOut, GrantEpoch, Viewer

LIMIT = 1 << 20


def line(n: int) -> LogLine:
    return LogLine(n, f"line {n}", "stdout")


def batch(first: int, count: int = 1, attempt: int = 1) -> Batch:
    return Batch.of(attempt, [line(n) for n in range(first, first + count)])


class Socket:
    """A ``send`` that takes up to ``room`` bytes per call (all of them unless told)."""

    def __init__(self, room: int | None = None) -> None:
        self.room = room
        self.calls: list[bytes] = []

    def __call__(self, data: bytes) -> int:
        self.calls.append(data)
        return len(data) if self.room is None else min(self.room, len(data))


class Task:
    """A viewer's stream task asleep in ``idle``: records whether something woke it."""

    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer
        self.woken = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self.viewer.idle(trio.sleep_forever, trio.CancelScope())
        self.woken = True


async def sleeping(nursery: trio.Nursery, viewer: Viewer) -> Task:
    """The viewer's task, started and asleep (its viewer direct when it has a ``send``)."""
    task = Task(viewer)
    await nursery.start(task.run)
    await trio.testing.wait_all_tasks_blocked()
    assert not task.woken
    return task


@pytest.fixture
async def fanout() -> AsyncIterator[FanOut]:
    async with running(FanOut()) as started:
        yield started


@asynccontextmanager
async def running(fanout: FanOut) -> AsyncIterator[FanOut]:
    """``fanout`` under a supervisor, as the logs service runs it."""
    supervisor = Supervisor("logs", [fanout.spec()], max_restarts=10, period=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        yield fanout
        supervisor.stop()


async def test_an_idle_viewer_is_written_to_directly_and_its_task_sleeps_on(
    fanout: FanOut,
) -> None:
    socket = Socket()
    viewer = Viewer("g", LIMIT, socket)
    audience = fanout.audience()
    audience.viewers.add(viewer)
    async with trio.open_nursery() as nursery:
        task = await sleeping(nursery, viewer)
        assert viewer.direct
        audience.publish(batch(0, 2))
        await trio.testing.wait_all_tasks_blocked()
        assert socket.calls == [log_events([line(0), line(1)])]
        assert not task.woken and viewer.direct and not viewer.has_work
        assert viewer.last == 1 and not viewer.queue
        assert fanout.counts.direct == 1 and fanout.counts.partial == 0
        viewer.wake()
    assert task.woken


async def test_batches_published_before_a_round_are_one_write_per_viewer(
    fanout: FanOut,
) -> None:
    sockets = [Socket() for _ in range(3)]
    viewers = [Viewer("g", LIMIT, socket) for socket in sockets]
    audience = fanout.audience()
    audience.viewers.update(viewers)
    async with trio.open_nursery() as nursery:
        tasks = [await sleeping(nursery, viewer) for viewer in viewers]
        for first in (0, 2, 5):  # three commits before the fan-out gets to run
            audience.publish(batch(first, 3 if first == 2 else 2))
        await trio.testing.wait_all_tasks_blocked()
        everything = log_events([line(n) for n in range(7)])
        assert [socket.calls for socket in sockets] == [[everything]] * 3
        assert not any(task.woken for task in tasks)
        assert (fanout.counts.rounds, fanout.counts.batches) == (1, 3)
        nursery.cancel_scope.cancel()


async def test_a_partial_write_leaves_the_rest_to_the_task_and_later_batches_queue(
    fanout: FanOut,
) -> None:
    socket = Socket(room=10)
    first = batch(0, 2)
    viewer = Viewer("g", limit=len(first.data) * 2, send=socket)
    audience = fanout.audience()
    audience.viewers.add(viewer)
    async with trio.open_nursery() as nursery:
        task = await sleeping(nursery, viewer)
        audience.publish(first)
        await trio.testing.wait_all_tasks_blocked()
        assert socket.calls == [first.data]
        assert viewer.unsent == first.data[10:] and viewer.last == 1
        assert task.woken and not viewer.direct
        assert fanout.counts.partial == 1
        # The task has not written the rest yet: later lines queue behind it, in order.
        audience.publish(batch(2))
        await trio.testing.wait_all_tasks_blocked()
        assert socket.calls == [first.data]  # no direct write while the task owns the socket
        assert [b.first for b in viewer.queue] == [2] and not viewer.lagging
        # Past the viewer's byte limit its queue is dropped: it catches up instead.
        audience.publish(batch(3, 4))
        await trio.testing.wait_all_tasks_blocked()
        assert viewer.lagging and not viewer.queue and viewer.queued_bytes == 0
        assert viewer.unsent == first.data[10:]  # what the socket has part of stays whole
        assert fanout.counts.lagged == 1


async def test_a_broken_socket_leaves_the_write_to_the_task(fanout: FanOut) -> None:
    def broken(data: bytes) -> int:
        raise BrokenPipeError

    viewer = Viewer("g", LIMIT, broken)
    audience = fanout.audience()
    audience.viewers.add(viewer)
    async with trio.open_nursery() as nursery:
        task = await sleeping(nursery, viewer)
        audience.publish(batch(0))
        await trio.testing.wait_all_tasks_blocked()
        assert task.woken  # its own write meets the error and ends the stream
    assert viewer.unsent == batch(0).data


async def test_a_viewer_without_a_send_gets_a_queue_and_is_woken(fanout: FanOut) -> None:
    viewer = Viewer("g", LIMIT)  # served through the ASGI stack: no socket of its own
    audience = fanout.audience()
    audience.viewers.add(viewer)
    async with trio.open_nursery() as nursery:
        task = await sleeping(nursery, viewer)
        assert not viewer.direct
        audience.publish(batch(0, 2))
        await trio.testing.wait_all_tasks_blocked()
        assert task.woken
    taken = viewer.take()
    assert taken is not None and taken.data == log_events([line(0), line(1)])
    assert fanout.counts.direct == 0


async def test_a_busy_viewer_gets_a_queue_never_a_direct_write(fanout: FanOut) -> None:
    socket = Socket()
    viewer = Viewer("g", LIMIT, socket)  # its task is writing, not asleep in idle()
    audience = fanout.audience()
    audience.viewers.add(viewer)
    audience.publish(batch(0))
    audience.publish(batch(1))
    await trio.testing.wait_all_tasks_blocked()
    assert socket.calls == [] and not viewer.direct
    taken = viewer.take()
    assert taken is not None and [x.sequence for x in taken.lines] == [0, 1]
    assert viewer.take() is None


async def test_lines_a_viewer_already_has_are_not_written_again(fanout: FanOut) -> None:
    socket = Socket()
    viewer = Viewer("g", LIMIT, socket)
    viewer.last = 3  # its task read lines 0..3 from the database
    audience = fanout.audience()
    audience.viewers.add(viewer)
    async with trio.open_nursery() as nursery:
        task = await sleeping(nursery, viewer)
        audience.publish(batch(0, 3))  # all of them had: skipped
        await trio.testing.wait_all_tasks_blocked()
        assert socket.calls == [] and not task.woken
        audience.publish(batch(2, 4))  # lines 2..5: cut after line 3
        await trio.testing.wait_all_tasks_blocked()
        assert socket.calls == [log_events([line(4), line(5)])]
        assert viewer.last == 5 and not task.woken
        nursery.cancel_scope.cancel()


async def test_a_later_attempts_batch_wakes_the_viewer_as_moved_on(fanout: FanOut) -> None:
    socket = Socket()
    viewer = Viewer("g", LIMIT, socket)  # follows attempt 1
    audience = fanout.audience()
    audience.viewers.add(viewer)
    async with trio.open_nursery() as nursery:
        task = await sleeping(nursery, viewer)
        audience.publish(batch(0, attempt=2))
        await trio.testing.wait_all_tasks_blocked()
        assert socket.calls == []  # its task says ``event: attempt`` first
        assert task.woken and viewer.moved_on and viewer.latest == 2
        assert viewer.last == -1 and viewer.following == 1


async def test_an_earlier_attempts_batch_is_never_written_directly(fanout: FanOut) -> None:
    socket = Socket()
    viewer = Viewer("g", LIMIT, socket)
    viewer.following = viewer.latest = 2  # it opened after the build was requeued
    audience = fanout.audience()
    audience.viewers.add(viewer)
    async with trio.open_nursery() as nursery:
        await sleeping(nursery, viewer)
        audience.publish(batch(5, attempt=1))  # committed by the lost runner just before
        await trio.testing.wait_all_tasks_blocked()
        assert socket.calls == []  # its task drops it: not a line of the attempt it shows
        assert viewer.following == 2 and not viewer.moved_on


class Steps(trio.abc.Instrument):
    """Counts task steps: a task's writes between two of its checkpoints share a count."""

    def __init__(self) -> None:
        self.count = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.count += 1


async def test_a_round_over_many_viewers_lets_other_tasks_run_between_slices() -> None:
    steps = Steps()
    ticks = 0  # how often another task got to run
    seen: list[tuple[int, int]] = []  # (step, tick) at each write of the round
    done = trio.Event()

    def send(data: bytes) -> int:
        seen.append((steps.count, ticks))
        if len(seen) == 6:
            done.set()
        return len(data)

    async def other_task() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with running(FanOut(slice_size=2)) as fanout:
        audience = fanout.audience()
        viewers = [Viewer("g", LIMIT, send) for _ in range(6)]
        audience.viewers.update(viewers)
        async with trio.open_nursery() as nursery:
            for viewer in viewers:
                await sleeping(nursery, viewer)
            trio.lowlevel.add_instrument(steps)
            try:
                nursery.start_soon(other_task)
                audience.publish(batch(0))
                with trio.fail_after(5):
                    await done.wait()
            finally:
                trio.lowlevel.remove_instrument(steps)
            nursery.cancel_scope.cancel()
    assert fanout.counts.rounds == 1
    # Two viewers per step of the fan-out's task: it yields to the scheduler in between...
    assert [len(list(same)) for _, same in groupby(step for step, _ in seen)] == [2, 2, 2]
    # ... and the other task, always ready to run, ran while the round was going on.
    assert seen[-1][1] > seen[0][1]


async def test_publishing_to_an_empty_audience_keeps_nothing(fanout: FanOut) -> None:
    audience = fanout.audience()
    audience.publish(batch(0))  # nobody watches: nothing is kept or scheduled
    assert audience.take() == []
    viewer = Viewer("g", LIMIT)
    audience.viewers.add(viewer)
    audience.publish(batch(1))
    await trio.testing.wait_all_tasks_blocked()
    taken = viewer.take()
    assert taken is not None and [x.sequence for x in taken.lines] == [1]
    assert viewer.take() is None and fanout.counts.batches == 1


async def test_a_fanout_that_cannot_take_a_round_makes_its_viewers_catch_up() -> None:
    fanout = FanOut()
    fanout.stop()  # not running (the daemon is stopping)
    viewer = Viewer("g", LIMIT, Socket())
    audience = fanout.audience()
    audience.viewers.add(viewer)
    async with trio.open_nursery() as nursery:
        task = await sleeping(nursery, viewer)
        audience.publish(batch(0))
        await trio.testing.wait_all_tasks_blocked()
        assert viewer.lagging and task.woken  # it reads the lines from the database
    assert audience.take() == []


async def test_a_full_fanout_makes_only_the_viewers_it_cannot_serve_catch_up() -> None:
    fanout = FanOut(capacity=1)  # not started yet: its mailbox holds one round
    waiting, refused = fanout.audience(), fanout.audience()
    served, lagging = Viewer("g", LIMIT), Viewer("g", LIMIT)
    waiting.viewers.add(served)
    refused.viewers.add(lagging)
    waiting.publish(batch(0))
    refused.publish(batch(0))
    assert lagging.lagging and not served.lagging
    async with running(fanout):
        await trio.testing.wait_all_tasks_blocked()
        taken = served.take()
        assert taken is not None and taken.last == 0
        refused.publish(batch(1))  # once there is room again, rounds are taken
        await trio.testing.wait_all_tasks_blocked()
    assert lagging.lagging and fanout.counts.batches == 2


class Behind:
    """An audience's ``on_behind``: counts the reads it asked for."""

    def __init__(self) -> None:
        self.asked = 0

    def __call__(self) -> None:
        self.asked += 1


def sequences(batches: list[Batch]) -> list[list[int]]:
    return [[line.sequence for line in b.lines] for b in batches]


async def test_lines_committed_here_go_out_when_they_follow_the_cursor_else_are_read() -> None:
    behind = Behind()
    audience = FanOut().audience(behind)
    viewer = Viewer("g", LIMIT)
    audience.watch(viewer)
    assert audience.cursor is None and behind.asked == 1  # the cursor is read first
    audience.committed(batch(8, 2))
    assert not audience.take()  # no cursor: not published
    audience.behind = False  # the reader took it
    audience.read(audience.epoch, (1, 9))
    viewer.last = 9
    audience.caught_up(viewer)
    assert audience.cursor == (1, 9) and not audience.unsure and not viewer.lagging
    audience.committed(batch(10, 5))
    assert sequences(audience.take()) == [[10, 11, 12, 13, 14]]
    audience.committed(batch(20, 5))  # lines 15..19 were committed elsewhere
    assert not audience.take() and audience.behind and behind.asked == 2
    audience.lines_read(1, 14, [line(n) for n in range(12, 25)])
    assert sequences(audience.take()) == [list(range(15, 25))]
    assert audience.cursor == (1, 24)
    audience.told(1, 24)  # nothing new
    assert audience.behind  # (still waiting for the reader's round)
    audience.behind = False
    audience.told(1, 30)
    assert audience.behind and behind.asked == 3


async def test_a_viewer_that_read_less_than_the_cursor_catches_up_again() -> None:
    audience = FanOut().audience(Behind())
    viewer = Viewer("g", LIMIT)
    audience.watch(viewer)
    viewer.last = 9
    audience.caught_up(viewer)  # before the cursor is known: kept for later
    assert audience.unsure == {viewer: (1, 9)}
    audience.read(audience.epoch, (1, 20))  # lines 10..20 were never published here
    assert viewer.lagging and audience.unsure == {viewer: None}
    viewer.resync()
    viewer.last = 20
    audience.caught_up(viewer)
    assert not audience.unsure and not viewer.lagging


async def test_a_later_attempt_has_the_cursor_read_again_and_moves_viewers_on() -> None:
    behind = Behind()
    audience = FanOut().audience(behind)
    viewer = Viewer("g", LIMIT)
    audience.watch(viewer)
    audience.read(audience.epoch, (1, 5))
    viewer.last = 5
    audience.caught_up(viewer)
    epoch = audience.epoch
    audience.behind = False
    audience.told(2, 3)
    assert audience.cursor is None and audience.epoch != epoch and audience.behind
    assert viewer.moved_on and viewer in audience.unsure
    audience.read(epoch, (1, 5))  # a read from before the move is ignored
    assert audience.cursor is None
    audience.read(audience.epoch, (2, 3))
    assert audience.cursor == (2, 3)


async def test_after_a_grant_change_a_viewer_is_written_nothing_until_its_task_rechecks() -> None:
    grants = GrantEpoch()
    async with running(FanOut(grants=grants)) as fanout:
        checked, stale = Socket(), Socket()
        fresh_viewer, stale_viewer = Viewer("a", LIMIT, checked), Viewer("b", LIMIT, stale)
        audience = fanout.audience()
        audience.viewers.update([fresh_viewer, stale_viewer])
        async with trio.open_nursery() as nursery:
            await sleeping(nursery, fresh_viewer)
            task = await sleeping(nursery, stale_viewer)
            grants.moved()
            fresh_viewer.checked = grants.value  # re-checked since; the other was not
            audience.publish(batch(0, 2))
            await trio.testing.wait_all_tasks_blocked()
            assert checked.calls == [log_events([line(0), line(1)])]
            assert stale.calls == [] and task.woken  # queued for its task, which re-checks
            assert [queued.last for queued in stale_viewer.queue] == [1]
            stale_viewer.revoke()  # the re-check found the grant gone
            assert stale_viewer.ended == "authorization_ended" and not stale_viewer.queue
            audience.publish(batch(2))
            await trio.testing.wait_all_tasks_blocked()
            assert stale.calls == [] and not stale_viewer.queue
            fresh_viewer.wake()
