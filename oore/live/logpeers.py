"""Log lines committed on other daemons, to this daemon's viewers.

With several daemons on one database, a build's runner appends through one daemon while
its viewers may watch through any. After each commit the committing daemon publishes a
notice for the build (``build_id:attempt:last_sequence``, one per build and commit,
sent with everything else published meanwhile; never one per line). A daemon with
viewers of that build reads the lines after what its audience has (its cursor, see
:class:`~oore.live.fanout.Audience`) from the database and publishes them to its
fan-out, in order; the reads of every build waiting at that moment share one statement,
a bounded page per build (a longer run is read page by page, one round each).

The same reader takes the lines this daemon committed that do not follow what its
audience has (the runner moved here from another daemon, whose last lines were not heard
of yet): they are read with what came before them, so no line is skipped or sent twice.

Lost notices: every ``poll_every`` seconds the builds with viewers here and no appends
here are read past their cursor (a fallback for a notice that never came); once the
listener is back after a reconnect, every audience here catches up.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from oore.actors import Actor, ActorRef, ActorStopped, ChildSpec, MailboxFull, Restart, actor_spec
from oore.cluster import Notices, Subscription
from oore.domain.logs import LogLine
from oore.errors import ApiError
from oore.live.fanout import Audience
from oore.live.logstream import LogStreams

log = logging.getLogger(__name__)

LOGS = "log"  # the notices' topic
POLL_EVERY = 1.0  # seconds between fallback reads of the builds watched here
CAPACITY = 65_536  # builds waiting for a read; past it the next poll takes them
MAX_ROUND = 1000  # builds read by one statement


class LogReads(Protocol):
    """What the reader needs from the store."""

    async def log_marks(self, build_ids: Sequence[str]) -> dict[str, tuple[int, int | None]]:
        """Each build's current attempt and the last sequence of its log."""
        ...

    async def logs_of_builds(
        self, wants: Sequence[tuple[str, int, int]], *, limit: int
    ) -> list[list[LogLine]]:
        """Per (build, attempt, after): the first ``limit`` lines of it after ``after``."""
        ...


@dataclass
class LogPeersStatistics:
    heard: int = 0  # notice items of other daemons' commits
    rounds: int = 0  # reads of the database
    builds_read: int = 0  # builds those reads covered
    lines_read: int = 0  # lines they returned


class LogPeers(ActorRef[str]):
    """Tells the other daemons of this daemon's log commits and hands theirs to its
    viewers (start the reader with :meth:`spec`, subscribe with :meth:`subscribe`)."""

    def __init__(
        self,
        streams: LogStreams,
        reads: LogReads,
        notices: Notices,
        *,
        page: int,
        poll_every: float = POLL_EVERY,
        capacity: int = CAPACITY,
    ) -> None:
        super().__init__("log-peers", capacity=capacity)
        self._streams = streams
        self._reads = reads
        self._notices = notices
        self._page = page
        self._poll_every = poll_every
        self.counts = LogPeersStatistics()
        streams.peers = self

    def subscribe(self) -> None:
        self._notices.subscribe(
            LOGS,
            Subscription(
                self.noticed, resync=self.resync, poll=self.poll, poll_every=self._poll_every
            ),
        )

    def spec(self) -> ChildSpec[LogPeers]:
        return actor_spec(self, lambda ref: _Reader(self), restart=Restart.PERMANENT)

    # -- what the streams tell ---------------------------------------------------------

    def committed(self, build_id: str, attempt: int, last: int) -> None:
        self._notices.publish(LOGS, (f"{build_id}:{attempt}:{last}",))

    def behind(self, build_id: str) -> None:
        # A full mailbox leaves the audience behind: the next poll has it read.
        with contextlib.suppress(MailboxFull, ActorStopped):
            self.try_tell(build_id)

    # -- what the other daemons tell ---------------------------------------------------

    async def noticed(self, items: list[str]) -> None:
        latest: dict[str, tuple[int, int]] = {}
        for item in items:
            build_id, _, rest = item.partition(":")
            attempt_text, _, last_text = rest.partition(":")
            try:
                mark = (int(attempt_text), int(last_text))
            except ValueError:
                continue
            known = latest.get(build_id)
            if known is None or mark > known:
                latest[build_id] = mark
        self.counts.heard += len(latest)
        registry = self._streams.registry
        for build_id, mark in latest.items():
            handle = registry.get(build_id)
            if handle is not None:
                handle.audience.told(*mark)

    async def resync(self) -> None:
        """Notices may have been lost: every audience here reads past its cursor."""
        for audience in self._watched():
            self._recheck(audience)

    async def poll(self) -> None:
        """The fallback for a lost notice: builds watched here with no appends here since
        the last poll are read past their cursor (one statement for them all)."""
        for audience in self._watched():
            if audience.behind or not audience.here:
                self._recheck(audience)
            audience.here = False

    def _watched(self) -> list[Audience]:
        return [h.audience for h in list(self._streams.registry.values()) if h.viewers]

    @staticmethod
    def _recheck(audience: Audience) -> None:
        audience.behind = False  # told again, should the reader's mailbox have been full
        audience.fall_behind()

    # -- the reader ----------------------------------------------------------------------

    async def read(self, build_ids: Sequence[str]) -> None:
        """Read what the builds' audiences lack and publish it to them, in order."""
        registry = self._streams.registry
        marks: list[tuple[str, Audience, int]] = []
        lines: list[tuple[str, Audience, tuple[int, int]]] = []
        for build_id in build_ids:
            handle = registry.get(build_id)
            if handle is None:
                continue
            audience = handle.audience
            if not audience.behind:
                continue
            audience.behind = False
            if not audience.viewers:
                continue
            if audience.cursor is None:
                marks.append((build_id, audience, audience.epoch))
            else:
                lines.append((build_id, audience, audience.cursor))
        if not marks and not lines:
            return
        counts = self.counts
        counts.rounds += 1
        counts.builds_read += len(marks) + len(lines)
        try:
            if marks:
                found = await self._reads.log_marks([build_id for build_id, _, _ in marks])
                for build_id, audience, epoch in marks:
                    audience.read(epoch, found.get(build_id))
            if lines:
                wants = [(build_id, attempt, after) for build_id, _, (attempt, after) in lines]
                pages = await self._reads.logs_of_builds(wants, limit=self._page)
                for (_, audience, (attempt, after)), page in zip(lines, pages, strict=True):
                    counts.lines_read += len(page)
                    audience.lines_read(attempt, after, page)
                    if len(page) >= self._page:
                        audience.fall_behind()  # more to read: next round
        except ApiError as exc:
            log.warning("reading other daemons' log lines failed: %s; the poll retries", exc)
            for _, audience, _ in [*marks, *lines]:
                audience.behind = True


class _Reader(Actor[str]):
    def __init__(self, peers: LogPeers) -> None:
        super().__init__(peers)
        self._peers = peers

    async def handle(self, msg: str) -> None:
        build_ids = {msg: None}
        while len(build_ids) < MAX_ROUND and (more := self.take_nowait()) is not None:
            build_ids[more] = None
        await self._peers.read(list(build_ids))
