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

Revocation: every change that may take a viewer's read access away (a member removed or
demoted, a user disabled or demoted, a session or API token ended, a project deleted, on
this daemon or another) moves the :class:`GrantEpoch` on. A viewer whose grant was last
found to hold at an earlier epoch is written nothing directly: its batches are queued and
its task re-checks the grant (one lookup per distinct access, not per line or viewer)
before it writes another line, and ends the stream with ``authorization_ended`` if the
grant no longer holds. Without a change, delivery costs one integer comparison.
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
NO_LINE = -(2**63)  # a cursor before every line (sequences are any 64-bit integer)

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


class GrantEpoch:
    """Moves on with every change that may take read access away, anywhere."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def moved(self) -> None:
        self.value += 1


class Viewer:
    """One open stream as the fan-out sees it: where it is, and what waits to be written.

    ``following``/``last``: the attempt whose lines it is sent and the last sequence of
    that attempt handed to its connection (written, or queued to be). ``latest``: the
    latest attempt seen of the build. ``checked``: the :class:`GrantEpoch` at which its
    grant was last found to hold. Only the fan-out and the LogStream actor change the
    queue and the flags; the viewer's own task takes from them.
    """

    __slots__ = (
        "_idle",
        "checked",
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
        self.checked = 0
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

    def revoke(self) -> None:
        """Its grant no longer holds: it ends with ``authorization_ended`` and is written
        nothing more, even when it was ending with the build."""
        self.ended = "authorization_ended"
        self.queue.clear()
        self.queued_bytes = 0
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
    """A build's viewers, and its committed batches waiting for the fan-out.

    With other daemons sharing the database (``on_behind`` given: see
    ``oore/live/logpeers.py``), lines of the build may be committed anywhere, so the
    audience keeps a *cursor*: the (attempt, sequence) up to which its viewers have every
    stored line, from what was published to it or what they read themselves. Lines this
    daemon commits are published at once when they follow the cursor; otherwise, or when
    another daemon told of lines past it, the audience is *behind* and ``on_behind`` has
    the lines after the cursor read from the database and published, in order. Without a
    cursor (no viewer yet, or the build moved on to a later attempt) one is read from the
    database; each viewer that joined meanwhile checks, once it has read its backlog, that
    it is not short of it, and reads again if it is.
    """

    __slots__ = (
        "_fanout",
        "_on_behind",
        "_published",
        "_scheduled",
        "behind",
        "cursor",
        "epoch",
        "here",
        "unsure",
        "viewers",
    )

    def __init__(self, fanout: FanOut, on_behind: Callable[[], None] | None = None) -> None:
        self._fanout = fanout
        self._on_behind = on_behind
        self.viewers: set[Viewer] = set()
        self._published: list[Batch] = []
        self._scheduled = False
        self.cursor: tuple[int, int] | None = None
        self.epoch = 0  # changes whenever the cursor is forgotten
        self.behind = False  # lines past the cursor are to be read from the database
        self.here = False  # lines were committed by this daemon since the last look
        # Viewers that joined without a cursor, with the (attempt, sequence) each read up
        # to, once it has: checked against the cursor when there is one.
        self.unsure: dict[Viewer, tuple[int, int] | None] = {}

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

    # -- among daemons ------------------------------------------------------------------

    def watch(self, viewer: Viewer) -> None:
        if not self.viewers:
            self._forget()  # nothing was published while no one watched
        self.viewers.add(viewer)
        if self._on_behind is not None and self.cursor is None:
            self.unsure[viewer] = None
            self.fall_behind()

    def unwatch(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)
        self.unsure.pop(viewer, None)

    def committed(self, batch: Batch) -> None:
        """Lines this daemon committed: published now if they follow the cursor, else
        read with whatever came before them from the database."""
        if self._on_behind is None:
            self.publish(batch)
            return
        self.here = True
        if not self.viewers:
            return
        cursor = self.cursor
        if cursor is not None and batch.attempt == cursor[0] and batch.first == cursor[1] + 1:
            self.cursor = (batch.attempt, batch.last)
            self.publish(batch)
            return
        self.told(batch.attempt, batch.last)

    def told(self, attempt: int, last: int) -> None:
        """Lines up to ``last`` of ``attempt`` are stored (here or by another daemon)."""
        if not self.viewers:
            return
        cursor = self.cursor
        if cursor is None:
            self.fall_behind()
        elif attempt > cursor[0]:
            self.moved_to(attempt)
        elif attempt == cursor[0] and last > cursor[1]:
            self.fall_behind()

    def fall_behind(self) -> None:
        """Have the lines after the cursor (or the cursor itself) read."""
        if not self.behind and self._on_behind is not None:
            self.behind = True
            self._on_behind()

    def moved_to(self, attempt: int, *, reported: Viewer | None = None) -> None:
        """The build is on a later attempt: the cursor is read again, and every viewer
        reads what it lacks from the database (those on an earlier attempt move on)."""
        self._forget()
        for viewer in self.viewers:
            self.unsure[viewer] = None
            if viewer is reported:
                self.unsure[viewer] = (viewer.following, viewer.last)
            elif viewer.following < attempt:
                viewer.attempt_seen(attempt)
            else:
                viewer.lost()
        self.fall_behind()

    def caught_up(self, viewer: Viewer) -> None:
        """``viewer`` has read the database up to its last line (a viewer's task calls
        this after every catch-up)."""
        if viewer not in self.unsure:
            return
        cursor = self.cursor
        if cursor is not None and viewer.following > cursor[0]:
            self.moved_to(viewer.following, reported=viewer)
            return
        self.unsure[viewer] = (viewer.following, viewer.last)
        if cursor is not None:
            self._judge(viewer, cursor)

    def read(self, epoch: int, mark: tuple[int, int | None] | None) -> None:
        """The cursor as read from the database (``mark``: the build's attempt and its
        last line; None when the build is gone), unless it was forgotten since."""
        if epoch != self.epoch or self.cursor is not None or mark is None:
            return
        attempt, last = mark
        self.cursor = (attempt, last if last is not None else NO_LINE)
        for viewer, seen in list(self.unsure.items()):
            if seen is not None:
                self._judge(viewer, self.cursor)

    def lines_read(self, attempt: int, after: int, lines: Sequence[LogLine]) -> None:
        """Every stored line of ``attempt`` after ``after`` (up to the last of ``lines``), as
        read from the database: those past the cursor are published."""
        cursor = self.cursor
        if cursor is None or attempt != cursor[0] or after > cursor[1] or not self.viewers:
            return
        fresh = [line for line in lines if line.sequence > cursor[1]]
        if fresh:
            self.cursor = (attempt, fresh[-1].sequence)
            self.publish(Batch.of(attempt, fresh))

    def _judge(self, viewer: Viewer, cursor: tuple[int, int]) -> None:
        seen = self.unsure[viewer]
        assert seen is not None
        if seen[0] < cursor[0]:
            self.unsure[viewer] = None
            viewer.attempt_seen(cursor[0])  # it moves on and reads again
        elif seen[0] > cursor[0]:
            self.moved_to(seen[0], reported=viewer)
        elif seen[1] >= cursor[1]:
            del self.unsure[viewer]
        else:  # lines up to the cursor may never reach it otherwise
            self.unsure[viewer] = None
            viewer.lost()

    def _forget(self) -> None:
        self.cursor = None
        self.epoch += 1
        self.unsure.clear()


@dataclass
class FanOutStatistics:
    rounds: int = 0  # (build, attempt) rounds written out
    batches: int = 0  # committed batches those rounds carried
    direct: int = 0  # viewer writes straight to a socket
    partial: int = 0  # of which the socket took only a part (the task writes the rest)
    lagged: int = 0  # times a viewer's queue overflowed (its task then catches up)


class FanOut(ActorRef[Audience]):
    """The handle of the fan-out actor (start it with :meth:`spec`)."""

    def __init__(
        self,
        *,
        capacity: int = CAPACITY,
        slice_size: int = SLICE,
        grants: GrantEpoch | None = None,
    ) -> None:
        super().__init__("log-fanout", capacity=capacity)
        self.slice_size = slice_size
        self.counts = FanOutStatistics()
        self.grants = grants or GrantEpoch()

    def audience(self, on_behind: Callable[[], None] | None = None) -> Audience:
        return Audience(self, on_behind)

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
        grants = self._fanout.grants
        for index, viewer in enumerate(list(audience.viewers)):
            if viewer.checked != grants.value:
                viewer.offer(batch)  # its task re-checks the grant before writing it
            elif viewer.direct:
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
