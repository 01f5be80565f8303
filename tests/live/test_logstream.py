"""LogStream: group commit, one encoding per batch, lagging viewers, re-checks, restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Hashable, Sequence

import pytest
import trio
import trio.testing

from oore.actors import ActorCrashed, Supervisor
from oore.domain.logs import LogLine, LogWrite
from oore.errors import Forbidden, ServiceUnavailable
from oore.live.fanout import FanOut, Viewer
from oore.live.logstream import (
    Appended,
    LogState,
    LogStreamHandle,
    LogStreams,
    LogStreamTimings,
    log_stream_spec,
)


class Records:
    """An in-memory log with the store's rules: one log per attempt, first sequence wins,
    and only the runner holding the build at its attempt may write."""

    def __init__(self) -> None:
        self.rows: dict[int, LogLine] = {}  # the current attempt's
        self.attempt = 1
        self.holder = "r"
        self.commits: list[int] = []
        self.gate: trio.Event | None = None
        self.finished_value: bool | None = False
        self.allowed: set[Hashable] | None = None
        self.fail_next = False
        self.checking = trio.Event()  # set when a re-check asks about grants
        self.check_gate: trio.Event | None = None  # holds re-checks until set

    def requeue(self, holder: str) -> None:
        self.attempt += 1
        self.holder = holder
        self.rows = {}

    async def commit(self, build_id: str, writes: Sequence[LogWrite]) -> Appended:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("store down")
        counts: list[int | None] = []
        fresh = []
        for write in writes:
            if (write.runner_id, write.attempt) != (self.holder, self.attempt):
                counts.append(None)
                continue
            count = 0
            for line in write.lines:
                if line.sequence not in self.rows:
                    self.rows[line.sequence] = line
                    fresh.append(line)
                    count += 1
            counts.append(count)
        self.commits.append(len(writes))
        return Appended(counts, sorted(fresh, key=lambda line: line.sequence), self.attempt)

    async def state(self, build_id: str) -> LogState | None:
        if self.finished_value is None:
            return None
        return LogState(self.finished_value, self.attempt)

    async def still_allowed(self, build_id: str, grants: set[Hashable]) -> set[Hashable]:
        self.checking.set()
        if self.check_gate is not None:
            await self.check_gate.wait()
        return grants if self.allowed is None else grants & self.allowed


def line(n: int, text: str = "x") -> LogLine:
    return LogLine(n, f"{text}{n}", "stdout")


@pytest.fixture
def records() -> Records:
    return Records()


async def woken(viewer: Viewer) -> None:
    """Until something wakes the viewer's task (or at once if it has work)."""
    await viewer.idle(trio.sleep_forever, trio.CancelScope())


def sequences(viewer: Viewer) -> list[int]:
    """The sequences queued for the viewer's task, in order."""
    return [line.sequence for batch in viewer.queue for line in batch.lines]


@pytest.fixture
async def stream(records: Records) -> AsyncIterator[LogStreamHandle]:
    fanout = FanOut()
    supervisor = Supervisor("logs", [fanout.spec()], max_restarts=10, period=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        handle = LogStreamHandle("b1", fanout.audience())
        await supervisor.start_child(
            log_stream_spec(handle, records, LogStreamTimings(check_every=1.0, idle=30.0))
        )
        yield handle
        supervisor.stop()


async def test_appends_waiting_together_are_committed_together(
    stream: LogStreamHandle, records: Records
) -> None:
    records.gate = trio.Event()
    counts: list[int] = []

    async def append(lines: list[LogLine]) -> None:
        counts.append(await stream.append("r", 1, lines))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(append, [line(0), line(1)])
        await trio.testing.wait_all_tasks_blocked()
        for start in (2, 4, 6):
            nursery.start_soon(append, [line(start), line(start + 1), line(0)])
        await trio.testing.wait_all_tasks_blocked()
        records.gate.set()
    assert records.commits == [1, 3]
    assert sorted(counts) == [2, 2, 2, 2]
    assert sorted(records.rows) == list(range(8))


async def test_viewers_get_the_same_bytes_of_each_committed_batch(
    stream: LogStreamHandle,
) -> None:
    viewers = [Viewer(grant="g", limit=1 << 20) for _ in range(3)]
    for viewer in viewers:
        stream.watch(viewer)
    assert await stream.append("r", 1, [line(1), line(0)]) == 2
    assert await stream.append("r", 1, [line(1)]) == 0  # a duplicate is not sent again
    await trio.testing.wait_all_tasks_blocked()  # the fan-out's round
    batches = [viewer.take() for viewer in viewers]
    assert all(batch is not None for batch in batches)
    first = batches[0]
    assert first is not None and [x.sequence for x in first.lines] == [0, 1]
    assert all(batch is first for batch in batches)  # encoded once, shared
    assert all(viewer.take() is None for viewer in viewers)


async def test_a_viewer_that_falls_behind_lags_and_the_runner_never_waits(
    stream: LogStreamHandle,
) -> None:
    slow = Viewer(grant="g", limit=600)
    fast = Viewer(grant="g", limit=1 << 20)
    stream.watch(slow)
    stream.watch(fast)
    with trio.fail_after(5):  # nobody reads either viewer: appends still complete
        for n in range(20):
            assert await stream.append("r", 1, [line(n, "a" * 50)]) == 1
    await trio.testing.wait_all_tasks_blocked()
    assert slow.lagging and not slow.queue and slow.queued_bytes == 0
    assert sequences(fast) == list(range(20))
    slow.resync()  # its task reads the database from its last line, then rejoins
    await stream.append("r", 1, [line(20)])
    await trio.testing.wait_all_tasks_blocked()
    again = slow.take()
    assert again is not None and again.last == 20 and not slow.lagging


async def test_partial_overlap_is_cut_at_the_viewers_last_line(stream: LogStreamHandle) -> None:
    viewer = Viewer(grant="g", limit=1 << 20)
    stream.watch(viewer)
    await stream.append("r", 1, [line(0), line(1), line(2)])
    await trio.testing.wait_all_tasks_blocked()
    batch = viewer.take()
    assert batch is not None
    assert batch.after(-1) is batch.data
    assert b"id: 0\n" not in batch.after(0) and b"id: 2\n" in batch.after(0)


async def test_a_viewer_joining_while_grants_are_checked_is_not_ended_by_that_check(
    stream: LogStreamHandle, records: Records
) -> None:
    records.check_gate = trio.Event()
    first = Viewer(grant="first", limit=1024)
    stream.watch(first)
    with trio.fail_after(3):
        await records.checking.wait()  # the check asked about "first" only
    joined = Viewer(grant="joined", limit=1024)
    stream.watch(joined)
    records.check_gate.set()
    await trio.testing.wait_all_tasks_blocked()
    assert first.ended is None and joined.ended is None


async def test_checks_end_viewers_whose_grant_lapsed_or_when_the_build_ends(
    stream: LogStreamHandle, records: Records
) -> None:
    kept, dropped = Viewer(grant="kept", limit=1024), Viewer(grant="dropped", limit=1024)
    stream.watch(kept)
    stream.watch(dropped)
    records.allowed = {"kept"}
    with trio.fail_after(3):
        await woken(dropped)
    assert dropped.ended == "authorization_ended" and kept.ended is None
    records.finished_value = True
    with trio.fail_after(3):
        await woken(kept)
    assert kept.ended == "build_finished"
    gone = Viewer(grant="kept", limit=1024)
    stream.watch(gone)
    records.finished_value = None
    with trio.fail_after(3):
        await woken(gone)
    assert gone.ended == "build_not_found"


async def test_a_crash_marks_viewers_lagging_so_they_resync(
    stream: LogStreamHandle, records: Records
) -> None:
    viewer = Viewer(grant="g", limit=1 << 20)
    stream.watch(viewer)
    records.fail_next = True
    with pytest.raises(ActorCrashed):  # the asker learns of the crash
        await stream.append("r", 1, [line(0)])
    with trio.fail_after(3):
        while stream.statistics().restarts == 0:  # noqa: ASYNC110
            await trio.sleep(0.01)
        assert await stream.append("r", 1, [line(1)]) == 1
    assert viewer.lagging  # whatever the crashed incarnation did, the database has it


async def test_a_lost_attempts_late_lines_are_refused_and_never_offered(
    stream: LogStreamHandle, records: Records
) -> None:
    viewer = Viewer(grant="g", limit=1 << 20)
    stream.watch(viewer)
    assert await stream.append("r", 1, [line(0), line(1)]) == 2
    records.requeue("r2")
    with pytest.raises(Forbidden) as refused:
        await stream.append("r", 1, [line(2)])  # the lost runner, still talking
    assert refused.value.code == "runner_mismatch"
    with pytest.raises(Forbidden):
        await stream.append("r2", 1, [line(2)])  # the new holder, naming the old attempt
    assert await stream.append("r2", 2, [line(0)]) == 1  # numbered from 0 again: kept
    await trio.testing.wait_all_tasks_blocked()
    first, second = viewer.take(), viewer.take()
    assert first is not None and (first.attempt, first.last) == (1, 1)
    assert second is not None and (second.attempt, second.last) == (2, 0)
    assert b"id: 1\n" in first.data and b"id: 2:0\n" in second.data
    assert viewer.take() is None and viewer.latest == 2 and viewer.moved_on


async def test_the_check_tells_viewers_of_a_requeue_before_any_new_line(
    stream: LogStreamHandle, records: Records
) -> None:
    viewer = Viewer(grant="g", limit=1 << 20)
    stream.watch(viewer)
    await stream.append("r", 1, [line(0)])
    await trio.testing.wait_all_tasks_blocked()
    assert viewer.take() is not None and not viewer.moved_on
    records.requeue("r2")
    with trio.fail_after(3):
        await woken(viewer)  # woken by the periodic check, nothing was appended
    assert viewer.moved_on and viewer.latest == 2 and viewer.ended is None


async def test_log_streams_start_one_actor_per_build_and_replace_a_stopping_one(
    records: Records,
) -> None:
    streams = LogStreams(records, LogStreamTimings(check_every=1.0, idle=30.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(streams.spec().start)
        with trio.fail_after(5):
            first = await streams.stream("b1")
            assert await streams.stream("b1") is first and streams.registry["b1"] is first
            # The actor stops itself (idle) while an append is still being committed:
            # the next append waits for it to end and goes to a fresh one.
            records.gate = trio.Event()
            async with trio.open_nursery() as appends:
                appends.start_soon(first.append, "r", 1, [line(0)])
                await trio.testing.wait_all_tasks_blocked()
                first.stop()
                counts: list[int] = []

                async def append_next() -> None:
                    counts.append(await streams.append("b1", "r", 1, [line(1)]))

                appends.start_soon(append_next)
                await trio.testing.wait_all_tasks_blocked()
                assert counts == [] and streams.registry["b1"] is first
                records.gate.set()
            assert counts == [1] and sorted(records.rows) == [0, 1]
            assert streams.registry["b1"] is not first
        streams.supervisor.stop()


async def test_log_streams_refuse_with_503_once_stopping(records: Records) -> None:
    streams = LogStreams(records, LogStreamTimings())
    with pytest.raises(ServiceUnavailable) as refused:
        await streams.append("b1", "r", 1, [line(0)])
    assert refused.value.code == "shutting_down" and "b1" not in streams.registry
