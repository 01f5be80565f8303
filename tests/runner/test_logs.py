"""The log batcher: numbering, batch size and age, retries, bounded memory."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing

from oore.domain.logs import MASK
from oore.runner.client import ConnectionFailed, LogChunk, RunnerError, ServerError
from oore.runner.logs import LogBatcher, open_log_batcher
from oore.runner.retry import Backoff
from oore.runner.variables import LogMask


class Sink:
    """Collects batches like the server does: known sequences are ignored."""

    def __init__(self, failures: Sequence[RunnerError] = ()) -> None:
        self.batches: list[tuple[float, list[LogChunk]]] = []
        self.stored: dict[int, LogChunk] = {}
        self.failures = list(failures)
        self.gate: trio.Event | None = None

    async def __call__(self, chunks: Sequence[LogChunk]) -> int:
        if self.gate is not None:
            await self.gate.wait()
        self.batches.append((trio.current_time(), list(chunks)))
        if self.failures:
            raise self.failures.pop(0)
        new = [chunk for chunk in chunks if chunk.sequence not in self.stored]
        self.stored.update((chunk.sequence, chunk) for chunk in new)
        return len(new)


async def test_lines_are_numbered_from_zero_and_sent_in_batches_of_at_most_200(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = Sink()
    async with open_log_batcher(sink) as logs:
        for i in range(450):
            await logs.write("stderr" if i % 3 == 0 else "stdout", f"line {i}")

    assert [len(batch) for _, batch in sink.batches] == [200, 200, 50]
    sent = [chunk for _, batch in sink.batches for chunk in batch]
    assert [chunk.sequence for chunk in sent] == list(range(450))
    assert sent[3] == LogChunk(3, "line 3", "stderr")
    assert sent[4] == LogChunk(4, "line 4", "stdout")
    assert logs.sent == 450


async def test_a_partial_batch_leaves_250_ms_after_its_first_line(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = Sink()
    async with open_log_batcher(sink) as logs:
        start = trio.current_time()
        await logs.write("stdout", "a")
        await trio.sleep(0.1)
        await logs.write("stdout", "b")
        await trio.sleep(1)
        await logs.write("stdout", "c")
        await trio.sleep(1)

    [(first_at, first), (second_at, second)] = sink.batches
    assert [c.content for c in first] == ["a", "b"]
    assert first_at - start == pytest.approx(0.25)
    assert [c.content for c in second] == ["c"]
    assert second_at - start == pytest.approx(1.35)


async def test_a_failed_send_is_retried_with_the_same_sequences(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = Sink([ConnectionFailed("down"), ServerError(503, "overloaded", "busy")])
    async with open_log_batcher(sink, backoff=lambda: Backoff(0.5, 10)) as logs:
        start = trio.current_time()
        for i in range(3):
            await logs.write("stdout", f"l{i}")

    assert len(sink.batches) == 3
    assert all([c.sequence for c in batch] == [0, 1, 2] for _, batch in sink.batches)
    # Backoff: the first retry after 0.5 s, the second 1 s after that.
    assert sink.batches[1][0] - sink.batches[0][0] == pytest.approx(0.5)
    assert sink.batches[2][0] - sink.batches[1][0] == pytest.approx(1.0)
    assert sink.batches[0][0] == start, "closing the batcher ships at once"
    assert sorted(sink.stored) == [0, 1, 2]
    assert (logs.sent, logs.retries, logs.dropped) == (3, 2, 0)


async def test_a_refused_send_stops_shipping_without_blocking_the_writer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    refused = ServerError(403, "runner_mismatch", "not yours")
    sink = Sink([refused])
    async with open_log_batcher(sink, max_lines=2, capacity=2) as logs:
        for i in range(20):
            await logs.write("stdout", f"l{i}")

    assert len(sink.batches) == 1
    assert logs.error is refused
    assert (logs.sent, logs.dropped) == (0, 20)


async def test_a_slow_server_makes_the_writer_wait_instead_of_buffering_everything(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = Sink()
    sink.gate = trio.Event()
    written = 0
    batcher = LogBatcher(sink, max_lines=10, capacity=5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)

        async def write_all() -> None:
            nonlocal written
            for i in range(100):
                await batcher.write("stdout", f"l{i}")
                written += 1
            batcher.close()

        nursery.start_soon(write_all)
        await trio.testing.wait_all_tasks_blocked()
        # One batch of 10 is held by the stuck send, 5 lines wait: the writer is blocked.
        assert written == 15
        sink.gate.set()

    assert written == 100
    assert sorted(sink.stored) == list(range(100))


async def test_a_write_cancelled_while_it_waits_for_room_leaves_no_gap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The executor stops reading a step's pipes with a deadline; a write cut short there
    # must not take a sequence number with it (the server would hold a log with a hole).
    sink = Sink()
    sink.gate = trio.Event()
    batcher = LogBatcher(sink, max_lines=10, capacity=5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        for i in range(15):
            await batcher.write("stdout", f"l{i}")
        with trio.move_on_after(1):
            await batcher.write("stdout", "never queued")
        sink.gate.set()
        await batcher.write("stderr", "after")
        batcher.close()

    assert sorted(sink.stored) == list(range(16))
    assert sink.stored[15] == LogChunk(15, "after", "stderr")


async def test_a_secret_cut_by_a_batchs_end_is_masked_whole(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mask = LogMask(["hunter2-secret"])
    sink = Sink()
    async with open_log_batcher(
        lambda chunks: sink(mask(chunks)), max_lines=2, hold=mask.held_back
    ) as logs:
        for text in ("first", "the key is hun", "ter2-", "secret; done"):
            await logs.write("stdout", text)
        await trio.sleep(5)  # a held line that nothing follows leaves after a while
        await logs.write("stdout", "a lone h")
        await trio.sleep(5)
        await logs.write("stdout", "hunt")  # held, then shipped when the log closes

    sent = [chunk.content for _, batch in sink.batches for chunk in batch]
    assert sent == ["first", f"the key is {MASK}", MASK, f"{MASK}; done", "a lone h", "hunt"]
    assert "".join(sent).count("hun") == 1  # only in the last line, never a partial secret
    assert [chunk.sequence for _, batch in sink.batches for chunk in batch] == list(range(6))
