"""LogStream: one actor per build whose log is being written or watched.

Appends from the runner queue in its mailbox; each turn takes every append waiting,
commits them in one transaction (shared with the appends of other builds waiting at the
same time: ``oore/live/logcommit.py``) and answers each runner only once its lines are
durable.
The committed lines are then encoded once as server-sent events and published to the
build's :class:`~oore.live.fanout.Audience`; the fan-out (``oore/live/fanout.py``) writes
them to the viewers in its own task, so a commit never waits for a viewer, and a viewer
that falls behind catches up from the database, so none misses or reorders a line.

Every ``check_every`` seconds while anyone watches, the actor re-checks the viewers'
authorizations (once per distinct grant) and the build's status: a grant that no longer
holds ends its viewers with ``authorization_ended``; a finished build ends them all with
``build_finished`` (after the lines committed before it), a deleted one with
``build_not_found``.

The viewer set lives on the handle, which outlives a crash: a restarted incarnation
marks every viewer lagging, and they resync from the database, so a crash loses nothing.
The actor stops itself after ``idle`` seconds without appends or viewers.

Attempts: every committed batch belongs to one attempt of the build (the one whose runner
holds it; a lost attempt's late appends are refused, never stored). Each viewer is told
the latest attempt the actor has seen, from its commits and its periodic checks; a
viewer's task that finds the build on a later attempt than the one it follows switches
to it (see ``oore/services/logs.py``).

:class:`LogStreams` owns the actors: their supervisor, the registry that finds a build's
actor, and the one way to get it (started on first use, replaced when it was stopping).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, assert_never

import trio

from oore.actors import (
    Actor,
    ActorError,
    ActorRef,
    ActorStopped,
    ChildSpec,
    MailboxFull,
    Registry,
    Reply,
    Restart,
    Supervisor,
    SupervisorNotRunning,
    actor_spec,
    supervisor_spec,
)
from oore.domain.logs import LogLine, LogWrite
from oore.errors import Forbidden, ServiceUnavailable
from oore.live.fanout import Audience, Batch, FanOut, GrantEpoch, Viewer

MAX_GROUP = 64
APPEND_TRIES = 3


@dataclass(frozen=True)
class Appended:
    """What one group commit stored: per-append counts (None: refused, that runner no
    longer holds the build at that attempt), and the lines to fan out, of ``attempt``."""

    counts: list[int | None]
    lines: list[LogLine]
    attempt: int


@dataclass(frozen=True)
class LogState:
    """The build as a stream sees it: finished or not, and its current attempt."""

    terminal: bool
    attempt: int


class LogRecords(Protocol):
    """What the actor needs from the services below it."""

    async def commit(self, build_id: str, writes: Sequence[LogWrite]) -> Appended: ...

    async def state(self, build_id: str) -> LogState | None:
        """The build's state now, None when it no longer exists."""
        ...

    async def still_allowed(self, build_id: str, grants: set[Hashable]) -> set[Hashable]:
        """The grants that still give read access to the build now."""
        ...


class LogPeering(Protocol):
    """The other daemons sharing the database (``oore/live/logpeers.py``)."""

    def committed(self, build_id: str, attempt: int, last: int) -> None:
        """Lines up to ``last`` of the build's ``attempt`` were committed here."""
        ...

    def behind(self, build_id: str) -> None:
        """The build's audience needs lines (or its cursor) read from the database."""
        ...


@dataclass(frozen=True)
class Append:
    """Store a runner's lines; replies how many were new, or fails with 403
    ``runner_mismatch`` when the runner no longer holds the build at that attempt."""

    reply: Reply[int]
    write: LogWrite


@dataclass(frozen=True)
class Watch:
    viewer: Viewer


@dataclass(frozen=True)
class Unwatch:
    viewer: Viewer


LogMsg = Append | Watch | Unwatch


class LogStreamHandle(ActorRef[LogMsg]):
    def __init__(self, build_id: str, audience: Audience, *, capacity: int = 1024) -> None:
        super().__init__(f"log:{build_id}", capacity=capacity)
        self.build_id = build_id
        # Kept here, not in the actor, so that a restarted incarnation still knows them.
        self.audience = audience

    @property
    def viewers(self) -> set[Viewer]:
        return self.audience.viewers

    async def append(self, runner_id: str, attempt: int, lines: Sequence[LogLine]) -> int:
        """Store lines of the runner's attempt; answered with how many were new once they
        are durable (403 ``runner_mismatch`` if that attempt is over)."""
        return await self.ask(Append, LogWrite(runner_id, attempt, tuple(lines)))

    def watch(self, viewer: Viewer) -> None:
        """Add a viewer now: batches committed from here on are offered to it."""
        self.audience.watch(viewer)
        self.try_tell_or_ignore(Watch(viewer))

    def unwatch(self, viewer: Viewer) -> None:
        self.audience.unwatch(viewer)
        self.try_tell_or_ignore(Unwatch(viewer))

    def try_tell_or_ignore(self, msg: LogMsg) -> None:
        """Wake the actor; a full mailbox or a stopped actor needs no wake-up (the set
        changed already; the next turn or incarnation sees it)."""
        with contextlib.suppress(MailboxFull, ActorStopped):
            self.try_tell(msg)


@dataclass(frozen=True)
class LogStreamTimings:
    check_every: float = 1.0
    idle: float = 30.0


def log_stream_spec(
    handle: LogStreamHandle,
    records: LogRecords,
    timings: LogStreamTimings,
    *,
    on_exit: Callable[[], object] | None = None,
    peers: LogPeering | None = None,
) -> ChildSpec[LogStreamHandle]:
    return actor_spec(
        handle,
        lambda ref: _LogStream(ref, records, timings, peers),
        restart=Restart.TRANSIENT,
        grace=5.0,
        on_exit=on_exit,
    )


class _LogStream(Actor[LogMsg]):
    def __init__(
        self,
        handle: LogStreamHandle,
        records: LogRecords,
        timings: LogStreamTimings,
        peers: LogPeering | None = None,
    ) -> None:
        super().__init__(handle)
        self._handle = handle
        self._records = records
        self._timings = timings
        self._peers = peers
        self._idle_since = trio.current_time()

    async def on_start(self) -> None:
        # Batches may have been committed by a crashed incarnation and never offered.
        self._handle.audience.lost()
        self._arm()

    def _arm(self) -> None:
        if self._handle.viewers:
            self.deadline = trio.current_time() + self._timings.check_every
        else:
            self.deadline = self._idle_since + self._timings.idle

    async def handle(self, msg: LogMsg) -> None:
        match msg:
            case Append():
                await self._commit(msg)
            case Watch() | Unwatch():
                pass  # the handle already changed the set; re-arm the timer below
            case _:
                assert_never(msg)
        self._idle_since = trio.current_time()
        self._arm()

    async def _commit(self, first: Append) -> None:
        group = [first]
        while len(group) < MAX_GROUP:
            more = self.take_nowait()
            if more is None:
                break
            if isinstance(more, Append):
                group.append(more)
        appended = await self._records.commit(self._handle.build_id, [a.write for a in group])
        for append, count in zip(group, appended.counts, strict=True):
            if count is None:
                append.reply.fail(
                    Forbidden("runner_mismatch", "This build is not assigned to this runner")
                )
            else:
                append.reply.send(count)
        if appended.lines:
            batch = Batch.of(appended.attempt, appended.lines)
            if self._peers is not None:
                self._peers.committed(self._handle.build_id, batch.attempt, batch.last)
            self._handle.audience.committed(batch)

    async def on_deadline(self) -> None:
        viewers = self._handle.viewers
        if not viewers:
            if trio.current_time() - self._idle_since >= self._timings.idle:
                self._handle.stop()
            else:
                self._arm()
            return
        build_id = self._handle.build_id
        state = await self._records.state(build_id)
        if state is None:
            for viewer in list(viewers):
                viewer.end("build_not_found")
        else:
            grants = {viewer.grant for viewer in viewers}
            allowed = await self._records.still_allowed(build_id, grants)
            for viewer in list(viewers):
                if viewer.grant not in grants:
                    continue  # joined while the others were checked: checked next time
                if viewer.grant not in allowed:
                    viewer.end("authorization_ended")
                    continue
                viewer.attempt_seen(state.attempt)  # a requeue is news before any line
                if state.terminal:
                    viewer.end("build_finished")
        self._idle_since = trio.current_time()
        self._arm()


class LogStreams:
    """The LogStream actors of every build being written or watched, under one supervisor."""

    def __init__(
        self,
        records: LogRecords,
        timings: LogStreamTimings,
        *,
        children: Sequence[ChildSpec[Any]] = (),
        grants: GrantEpoch | None = None,
    ) -> None:
        """``children``: started before any stream and stopped after them all (the
        committer the streams' appends share); the fan-out is started after them.
        ``grants``: moved on by every change that may take read access away."""
        self._records = records
        self._timings = timings
        self.peers: LogPeering | None = None  # set before any stream starts, if shared
        self.fanout = FanOut(grants=grants)
        self.registry: Registry[str, LogStreamHandle] = Registry("logs")
        self.supervisor = Supervisor(
            "logs", [*children, self.fanout.spec()], max_restarts=100, period=10.0
        )

    def spec(self) -> ChildSpec[Supervisor]:
        """The streams' supervisor, to run under the root supervisor."""
        return supervisor_spec(self.supervisor)

    async def stream(self, build_id: str) -> LogStreamHandle:
        """The build's actor, started if needed; 503 ``shutting_down`` while stopping."""
        try:
            return await self.registry.get_or_start(
                build_id, self.supervisor, partial(self._handle, build_id), self._spec
            )
        except (SupervisorNotRunning, ValueError):
            raise ServiceUnavailable("shutting_down", "The server is stopping") from None

    def _handle(self, build_id: str) -> LogStreamHandle:
        peers = self.peers
        behind = None if peers is None else partial(peers.behind, build_id)
        return LogStreamHandle(build_id, self.fanout.audience(behind))

    def _spec(self, handle: LogStreamHandle) -> ChildSpec[LogStreamHandle]:
        return log_stream_spec(handle, self._records, self._timings, peers=self.peers)

    async def append(
        self, build_id: str, runner_id: str, attempt: int, lines: Sequence[LogLine]
    ) -> int:
        """Store lines through the build's actor (see :meth:`LogStreamHandle.append`).

        An actor that was stopping or restarting when asked is replaced by a fresh one,
        which takes the lines; after a few such tries, 503 ``log_stream_unavailable``.
        """
        for _ in range(APPEND_TRIES):
            handle = await self.stream(build_id)
            try:
                return await handle.append(runner_id, attempt, lines)
            except ActorError:
                continue
        raise ServiceUnavailable("log_stream_unavailable", "Try the log append again")
