"""The log batcher: numbers a build's lines and ships them in batches (contract §6.1).

Lines are numbered 0, 1, 2... in the order :meth:`LogBatcher.write` queued them. A batch
leaves when it holds ``max_lines`` lines or ``interval`` seconds after its first line,
whichever comes first. A ``hold`` callable may keep a batch's last lines back for the
next one (at most ``hold_seconds``), so that a secret cut by the batch's end is masked
whole (see :meth:`oore.runner.variables.LogMask.held_back`). A failed send that may pass
is repeated with backoff (the server ignores sequences it already has); a refused one (the
build is no longer ours) stops shipping, and later lines are counted in
:attr:`LogBatcher.dropped`. At most ``capacity`` lines wait; beyond that
:meth:`LogBatcher.write` waits for room.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import trio

from oore.runner.client import LogChunk, RunnerError, Stream, retryable
from oore.runner.retry import Backoff

MAX_BATCH_LINES = 200
BATCH_INTERVAL = 0.25
CAPACITY = 1000

HOLD_SECONDS = 1.0
MAX_HELD_LINES = 16  # a secret's beginning spans a few lines; batches stay near max_lines

SendChunks = Callable[[Sequence[LogChunk]], Awaitable[Any]]
HoldBack = Callable[[Sequence[LogChunk]], int]


class _Queued(NamedTuple):
    stream: Stream
    content: str
    step: int | None
    step_name: str | None


class LogBatcher:
    """Numbers lines and ships them through ``send``; run :meth:`run` in a task."""

    def __init__(
        self,
        send: SendChunks,
        *,
        max_lines: int = MAX_BATCH_LINES,
        interval: float = BATCH_INTERVAL,
        capacity: int = CAPACITY,
        backoff: Callable[[], Backoff] = Backoff,
        hold: HoldBack | None = None,
        hold_seconds: float = HOLD_SECONDS,
    ) -> None:
        if max_lines < 1 or capacity < 1:
            raise ValueError("max_lines and capacity must be at least 1")
        self._send_chunks = send
        self._hold = hold
        self._hold_seconds = hold_seconds
        self._max_lines = max_lines
        self._interval = interval
        self._backoff = backoff
        self._in, self._out = trio.open_memory_channel[_Queued](capacity)
        self._next_sequence = 0
        self.sent = 0
        self.dropped = 0
        self.retries = 0
        self.error: RunnerError | None = None

    async def write(
        self, stream: Stream, content: str, *, step: int | None = None, step_name: str | None = None
    ) -> None:
        """Queue one line (printed by ``step``, if given: its position among the reported
        steps and its name); waits while ``capacity`` lines are already waiting.

        A write cancelled while it waits leaves no trace: lines are numbered as they
        leave the queue, so a cancelled one never leaves a gap in the sequence.
        """
        await self._in.send(_Queued(stream, content, step, step_name))

    def close(self) -> None:
        """No more lines: :meth:`run` ships what is queued and returns."""
        self._in.close()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Ship batches until :meth:`close` was called and every queued line is handled."""
        task_status.started()
        held: list[LogChunk] = []
        async with self._out:
            while True:
                try:
                    first = await self._next(held)
                except trio.EndOfChannel:
                    if held:
                        await self._deliver(held)
                    return
                if first is None:  # held lines waited long enough: no more is coming soon
                    await self._deliver(held)
                    held = []
                    continue
                # Up to max_lines new lines join the held ones.
                batch, held = [*held, first], []
                size = len(batch) - 1 + self._max_lines
                ended = False
                with trio.move_on_after(self._interval):
                    while len(batch) < size:
                        try:
                            batch.append(await self._receive())
                        except trio.EndOfChannel:
                            ended = True
                            break
                if self._hold is not None and not ended:
                    keep = min(self._hold(batch), MAX_HELD_LINES)
                    if keep:
                        batch, held = batch[:-keep], batch[-keep:]
                if batch:
                    await self._deliver(batch)

    async def _next(self, held: list[LogChunk]) -> LogChunk | None:
        """The next line; None when lines are held and none came within ``hold_seconds``."""
        if not held:
            return await self._receive()
        with trio.move_on_after(self._hold_seconds):
            return await self._receive()
        return None

    async def _receive(self) -> LogChunk:
        line = await self._out.receive()
        chunk = LogChunk(self._next_sequence, line.content, line.stream, line.step, line.step_name)
        self._next_sequence += 1
        return chunk

    async def _deliver(self, batch: list[LogChunk]) -> None:
        if self.error is not None:
            self.dropped += len(batch)
            return
        backoff = self._backoff()
        while True:
            try:
                await self._send_chunks(batch)
            except RunnerError as exc:
                if not retryable(exc):
                    self.error = exc
                    self.dropped += len(batch)
                    return
                self.retries += 1
                await trio.sleep(backoff.next())
            else:
                self.sent += len(batch)
                return


@asynccontextmanager
async def open_log_batcher(send: SendChunks, **options: Any) -> AsyncIterator[LogBatcher]:
    """A running :class:`LogBatcher`; leaving the block normally waits until all is shipped."""
    batcher = LogBatcher(send, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        try:
            yield batcher
        finally:
            batcher.close()
