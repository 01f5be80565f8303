"""Fan-out: a build's committed log lines, written to its viewers by one task.

A build's LogStream actor commits lines and publishes each committed batch to the build's
:class:`Audience`; it never waits for a viewer. :class:`FanOut`, one actor under the logs
supervisor, then writes them out: per round, every batch the build committed since its
previous round goes out as one write to each viewer, so the cost grows with viewers times
rounds, not viewers times lines, and a busy build's latency stays about one round. It yields
to the scheduler every :data:`SLICE` viewers, so 10,000 viewers of one build do not hold
up the appends of any build.

A viewer whose stream owns its socket (the daemon's lean listener) and whose task is idle
is written to *directly*: the fan-out hands the bytes to the socket without waiting, and
the viewer's task stays asleep. Whatever the socket does not take at once, and everything
for a viewer whose task is busy (reading its backlog, writing, or served through the ASGI
stack), is queued on the viewer and its task is woken to write it. Past the viewer's byte
limit the queue is dropped and the viewer is marked lagging: its task then reads the lines
it missed from the database from its last line and rejoins live (see
``oore/services/logs.py``). So a slow viewer costs at most ``limit`` bytes of queue plus
one partial write, and never slows the runner or the other viewers.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from itertools import groupby

import trio

from oore.actors import Actor, ActorRef, ActorStopped, ChildSpec, MailboxFull, Restart, actor_spec
from oore.domain.logs import LogLine, log_events

log = logging.getLogger(__name__)

SLICE = 32  # viewers written to between yields to the scheduler
CAPACITY = 65_536  # builds with a round waiting; past it a build's viewers catch up instead

# Writes what the socket takes now and answers how many bytes; raises OSError when the
# connection is broken.
Send = Callable[[bytes], int]


@dataclass(frozen=True)
class Batch:
    """Committed lines of one attempt in sequence order and their SSE bytes, encoded once."""

    attempt: int
    lines: tuple[LogLine, ...]
    data: bytes

    @classmethod
    def of(cls, attempt: int, lines: Sequence[LogLine]) -> Batch:
        return cls(attempt, tuple(lines), log_events(lines, attempt))

    @classmethod
    def merged(cls, batches: Sequence[Batch]) -> Batch:
        """Consecutive batches of one attempt as one."""
        if len(batches) == 1:
            return batches[0]
        lines = tuple(line for batch in batches for line in batch.lines)
        return cls(batches[0].attempt, lines, b"".join(batch.data for batch in batches))

    @property
    def first(self) -> int:
        return self.lines[0].sequence

    @property
    def last(self) -> int:
        return self.lines[-1].sequence

    def after(self, sequence: int) -> bytes:
        """The bytes of the lines after ``sequence`` (all of them, usually)."""
        if self.first > sequence:
            return self.data
        return log_events((line for line in self.lines if line.sequence > sequence), self.attempt)


class Viewer:
    """One open stream as the fan-out sees it: where it is, and what waits to be written.

    ``following``/``last``: the attempt whose lines it is sent and the last sequence of
    that attempt handed to its connection (written, or queued to be). ``latest``: the
    latest attempt seen of the build. Only the fan-out and the LogStream actor change the
    queue and the flags; the viewer's own task takes from them.
    """

    __slots__ = (
        "_idle",
        "direct",
        "ended",
        "following",
        "grant",
        "lagging",
        "last",
        "latest",
        "limit",
        "queue",
        "queued_bytes",
        "send",
        "unsent",
        "written_at",
    )

    def __init__(self, grant: Hashable, limit: int, send: Send | None = None) -> None:
        self.grant = grant
        self.limit = limit
        self.send = send
        self.queue: deque[Batch] = deque()
        self.queued_bytes = 0
        self.unsent = b""  # the rest of a direct write the socket took only part of
        self.lagging = False
        self.ended: str | None = None
        self.following = 1
        self.last = -1
        self.latest = 0
        self.direct = False  # its task is idle with nothing queued: write to ``send``
        self.written_at = -math.inf  # trio time of the last write, by anyone
        self._idle: trio.CancelScope | None = None

    @property
    def moved_on(self) -> bool:
        """The build is on a later attempt than the one this viewer follows."""
        return self.latest > self.following

    @property
    def has_work(self) -> bool:
        """Something for its task to do rather than sleep."""
        return bool(
            self.unsent or self.queue or self.lagging or self.ended is not None or self.moved_on
        )

    def wake(self) -> None:
        """Have the viewer's task take over: writes go through its queue until it idles."""
        self.direct = False
        if self._idle is not None:
            self._idle.cancel()

    def attempt_seen(self, attempt: int) -> None:
        """The build was seen at ``attempt``; a later one than followed wakes the task."""
        if attempt > self.latest:
            self.latest = attempt
            if self.moved_on:
                self.wake()

    def deliver(self, batch: Batch, now: float) -> None:
        """Write ``batch`` to the socket now, or queue it for the task (the fan-out's call)."""
        self.attempt_seen(batch.attempt)
        if not self.direct or batch.attempt != self.following:
            self.offer(batch)
            return
        if batch.last <= self.last:
            return
        data = batch.data if batch.first > self.last else batch.after(self.last)
        self.last = batch.last
        self.written_at = now
        assert self.send is not None
        try:
            sent = self.send(data)
        except OSError:
            sent = 0  # broken: the task's own write of the rest meets the error and ends
        if sent < len(data):
            self.unsent = data[sent:]
            self.wake()

    def offer(self, batch: Batch) -> None:
        """Queue a batch for the task without waiting; past the limit, switch to catch-up."""
        self.attempt_seen(batch.attempt)
        if self.lagging or self.ended is not None:
            return
        if self.queued_bytes + len(batch.data) > self.limit:
            self.lost()
            return
        self.queue.append(batch)
        self.queued_bytes += len(batch.data)
        self.wake()

    def lost(self) -> None:
        """Batches meant for it were dropped (or would pass its limit): it catches up from
        the database."""
        if self.ended is None:
            self.lagging = True
            self.queue.clear()
            self.queued_bytes = 0
            self.wake()

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
            self.wake()

    def take(self) -> Batch | None:
        if not self.queue:
            return None
        batch = self.queue.popleft()
        self.queued_bytes -= len(batch.data)
        return batch

    def resync(self) -> None:
        """The task is about to read the database from its last line: batches from now on
        are queued again (any it also reads are skipped by it)."""
        self.lagging = False
        self.queue.clear()
        self.queued_bytes = 0

    async def idle(
        self, wait: Callable[[], Awaitable[None]], within: AbstractContextManager[trio.CancelScope]
    ) -> None:
        """Sleep in ``wait``, inside ``within``'s cancel scope (its deadline is the next
        keep-alive), until woken; while asleep with a ``send``, rounds are written to the
        socket directly."""
        if self.has_work:
            return
        with within as scope:
            self._idle = scope
            self.direct = self.send is not None
            try:
                await wait()
            finally:
                self._idle = None
                self.direct = False


class Audience:
    """A build's viewers, and its committed batches waiting for the fan-out."""

    __slots__ = ("_fanout", "_published", "_scheduled", "viewers")

    def __init__(self, fanout: FanOut) -> None:
        self._fanout = fanout
        self.viewers: set[Viewer] = set()
        self._published: list[Batch] = []
        self._scheduled = False

    def publish(self, batch: Batch) -> None:
        """Committed lines, for every viewer: written by the fan-out's next round of the
        build, never waited for."""
        if not self.viewers:
            return
        self._published.append(batch)
        if not self._scheduled:
            self._scheduled = self._fanout.schedule(self)
            if not self._scheduled:
                self.lost()

    def take(self) -> list[Batch]:
        batches, self._published = self._published, []
        self._scheduled = False
        return batches

    def lost(self) -> None:
        """The waiting batches cannot be written out: every viewer catches up instead."""
        self._published = []
        self._scheduled = False
        for viewer in self.viewers:
            viewer.lost()


@dataclass
class FanOutStatistics:
    rounds: int = 0  # (build, attempt) rounds written out
    batches: int = 0  # committed batches those rounds carried
    direct: int = 0  # viewer writes straight to a socket
    partial: int = 0  # of which the socket took only a part (the task writes the rest)
    lagged: int = 0  # times a viewer's queue overflowed (its task then catches up)


class FanOut(ActorRef[Audience]):
    """The handle of the fan-out actor (start it with :meth:`spec`)."""

    def __init__(self, *, capacity: int = CAPACITY, slice_size: int = SLICE) -> None:
        super().__init__("log-fanout", capacity=capacity)
        self.slice_size = slice_size
        self.counts = FanOutStatistics()

    def audience(self) -> Audience:
        return Audience(self)

    def schedule(self, audience: Audience) -> bool:
        """Queue a round of ``audience``'s build; False when it cannot be (stopping, full)."""
        try:
            self.try_tell(audience)
        except (MailboxFull, ActorStopped):
            return False
        return True

    def spec(self) -> ChildSpec[FanOut]:
        return actor_spec(self, lambda ref: _FanOutWorker(self), restart=Restart.PERMANENT)


class _FanOutWorker(Actor[Audience]):
    def __init__(self, fanout: FanOut) -> None:
        super().__init__(fanout)
        self._fanout = fanout

    async def handle(self, msg: Audience) -> None:
        batches = msg.take()
        self._fanout.counts.batches += len(batches)
        try:
            for _, same in groupby(batches, key=lambda batch: batch.attempt):
                await self._round(msg, Batch.merged(list(same)))
        except Exception:  # a bug here must not cost lines: the viewers catch up instead
            log.exception("log fan-out failed; its viewers catch up from the database")
            msg.lost()

    async def _round(self, audience: Audience, batch: Batch) -> None:
        counts = self._fanout.counts
        counts.rounds += 1
        now = trio.current_time()
        step = self._fanout.slice_size
        for index, viewer in enumerate(list(audience.viewers)):
            if viewer.direct:
                counts.direct += 1
                viewer.deliver(batch, now)
                if viewer.unsent:
                    counts.partial += 1
            elif not viewer.lagging:
                viewer.deliver(batch, now)
                if viewer.lagging:
                    counts.lagged += 1
            else:
                viewer.attempt_seen(batch.attempt)
            if index % step == step - 1:
                await trio.lowlevel.checkpoint()
