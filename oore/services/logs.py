"""Build logs: runner ingestion, reads, stream tokens and live SSE streams (contract §6).

Appends and viewers of a build meet in its LogStream actor (``oore/live/logstream.py``);
this service authorizes them, masks secrets before anything is stored, admits viewers
within the configured limits and turns a viewer into the bytes of an SSE response:
backlog from the database, then live batches, catching up from the database whenever the
viewer fell behind, keep-alive comments in silence, and ``event: done`` at the end.

Attempts: a build requeued after its runner was lost starts a new attempt, whose runner
numbers its lines from 0 again. Each attempt keeps its own log. Reads show the current
attempt unless asked for another; the earlier ones stay readable. A stream follows the
current attempt: when the build moves on to a later one while a viewer watches (it was
requeued; the viewer learns it within ``check_every`` seconds, or from the new attempt's
first lines, whichever comes first), the viewer gets the rest of the old attempt's stored
lines, then ``event: attempt`` with ``{"attempt": N}``, then the new attempt's lines from
its first one. A stream opened on an attempt after the first starts with that event too.
Event ids name the attempt (see :func:`oore.domain.logs.event_id`), so ``Last-Event-ID``
resumes within the attempt it came from, or starts the current one afresh if the build
moved on meanwhile.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, replace

import trio

from oore.domain.builds import Build
from oore.domain.logs import (
    KEEP_ALIVE,
    MAX_STEP,
    STREAMS,
    LogLine,
    LogWrite,
    ResumePoint,
    attempt_event,
    done_event,
    log_events,
    mask_secrets,
    resume_point,
    secret_values,
    storable_line,
    storable_step_name,
    truncation_notice,
)
from oore.domain.rbac import ProjectPermission, project_allows
from oore.domain.runners import Runner
from oore.domain.tokens import hash_token, looks_like_token, new_token
from oore.domain.users import Session
from oore.errors import Forbidden, InvalidInput, NotFound, TooManyRequests, Unauthorized
from oore.live.fanout import Audience, GrantEpoch, Send, Viewer
from oore.live.logcommit import LogCommits
from oore.live.logstream import (
    Appended,
    LogState,
    LogStreamHandle,
    LogStreams,
    LogStreamTimings,
)
from oore.scheduling import Scheduling
from oore.scheduling.job import Job
from oore.services.access import Access
from oore.services.builds import Builds
from oore.services.identity import Identity
from oore.services.signing import Signing
from oore.services.variables import Variables
from oore.store.builds import LogPage as LogPage
from oore.store.stream_tokens import StreamToken, TokenLimits

log = logging.getLogger(__name__)

STREAM_TOKEN_TTL = 300
# Unused, unexpired stream tokens at most, counted over every daemon of the database.
TOKEN_LIMITS = TokenLimits(total=256, per_user=16, per_build=32)
MAX_READ_LIMIT = 5000
HOLDERS_KEPT = 4096  # (build, runner, attempt) whose lines need no read of the build
REVOKED = "authorization_ended"


def check_window(before: int | None) -> None:
    """Refuse a window of a log read that cannot be (before any other check)."""
    if before is not None and before < 0:
        raise InvalidInput("invalid_input", "before_sequence must not be negative")


def read_limit(limit: int | None) -> int | None:
    """The lines one read gives at most (None: all)."""
    return None if limit is None else min(limit, MAX_READ_LIMIT)


@dataclass(frozen=True)
class LogConfig:
    """Limits of log storage and streaming; defaults sized for thousands of viewers."""

    lines_per_build: int = 1_000_000  # per attempt: a requeued build's next one starts afresh
    viewers_per_build: int = 10_000
    viewers_per_user: int = 10_000
    viewers_total: int = 50_000
    viewer_buffer_bytes: int = 256 * 1024
    keep_alive: float = 15.0
    check_every: float = 1.0
    stream_seconds: int = 300
    page: int = 500


@dataclass(frozen=True)
class _Held:
    """What a runner's committed append found of the build, for its next appends."""

    build_id: str  # as stored
    attempt: int
    secrets: tuple[str, ...]  # the values to mask, longest first


@dataclass(frozen=True)
class Grant:
    """Why a viewer may watch: a credential, its user, the project, and until when."""

    credential_hash: str
    user_id: str
    project_id: str
    expires_at: int
    via_api_token: bool = False


def _prepared(lines: Sequence[LogLine], secrets: Sequence[str]) -> list[LogLine]:
    """Lines as they are stored: cut to size, NUL made visible, ``secrets`` (longest
    first) masked."""
    cut = []
    for line in lines:
        content = storable_line(line.content)
        step_name = storable_step_name(line.step_name)
        if content != line.content or step_name != line.step_name:
            line = replace(line, content=content, step_name=step_name)
        cut.append(line)
    return mask_secrets(cut, list(secrets))


class _Records:
    """The LogStream actors' view of the store and of authorization."""

    def __init__(self, logs: Logs) -> None:
        self._logs = logs

    async def commit(self, build_id: str, writes: Sequence[LogWrite]) -> Appended:
        return await self._logs.commits.commit(build_id, writes)

    async def commit_groups(self, groups: list[tuple[str, tuple[LogWrite, ...]]]) -> list[Appended]:
        """The appends of several builds in one transaction (the shared committer's)."""
        logs = self._logs
        cap = logs.config.lines_per_build
        stored = await logs.store.builds.append_logs_of_builds(
            groups, cap=cap, notice=truncation_notice(cap), now=logs.clock.now()
        )
        answers = []
        for one in stored:
            logs.metrics.logs_stored(one.lines)
            answers.append(Appended(one.counts, one.lines, one.attempt))
        return answers

    async def state(self, build_id: str) -> LogState | None:
        state = await self._logs.store.builds.log_state(build_id)
        return None if state is None else LogState(state.status.terminal, state.attempt)

    async def still_allowed(self, build_id: str, grants: set[Hashable]) -> set[Hashable]:
        allowed: set[Hashable] = set()
        for grant in grants:
            if isinstance(grant, Grant) and await self._logs.grant_holds(grant):
                allowed.add(grant)
        return allowed


_Access = tuple[str, bool, str, str]  # credential hash, via API token, user, project


class _AccessChecks:
    """The answers of recent credential and role lookups, shared by every build's stream.

    A viewer's grant is its credential's access to a project plus its own time box; only
    the access needs the database. Every build re-checks its viewers each interval, so
    one user watching many builds (or one build many times) would cost a lookup per
    grant; here each distinct access is looked up at most once per ``fresh`` seconds,
    whatever the number of viewers and builds. ``fresh`` is a quarter of the interval, so
    a revoked credential or a demotion still ends its streams within about one interval.
    An answer learnt before the :class:`GrantEpoch` last moved is not used: a change
    that may take access away is looked up again at once, and once for all the viewers
    with that access (those asking while the lookup is in flight wait for its answer).
    """

    def __init__(self, fresh: float, grants: GrantEpoch) -> None:
        self._fresh = fresh
        self._grants = grants
        self._answers: dict[_Access, tuple[float, int, bool]] = {}
        self._asking: dict[_Access, tuple[int, trio.Event]] = {}  # lookups in flight
        self._pruned = 0.0
        self.lookups = 0  # accesses looked up in the database

    def known(self, access: _Access) -> bool | None:
        """The recent answer for ``access``, None when there is none fresh enough."""
        now = trio.current_time()
        if now - self._pruned > self._fresh:
            self._answers = {k: v for k, v in self._answers.items() if now - v[0] < self._fresh}
            self._pruned = now
        found = self._answers.get(access)
        if found is None or now - found[0] >= self._fresh or found[1] != self._grants.value:
            return None
        return found[2]

    def learn(self, access: _Access, holds: bool, asked_at: float, epoch: int) -> None:
        """The answer of a lookup begun at ``asked_at``, at the grant epoch ``epoch``."""
        self.lookups += 1
        self._answers[access] = (asked_at, epoch, holds)

    def in_flight(self, access: _Access) -> trio.Event | None:
        """Set when the lookup of ``access`` begun at the current epoch ends; None if none."""
        found = self._asking.get(access)
        return None if found is None or found[0] != self._grants.value else found[1]

    def begin(self, access: _Access, epoch: int) -> trio.Event:
        done = trio.Event()
        self._asking[access] = (epoch, done)
        return done

    def end(self, access: _Access, done: trio.Event) -> None:
        if self._asking.get(access, (0, None))[1] is done:
            del self._asking[access]
        done.set()


class Logs:
    """Use cases of build logs; owns the LogStream actors (``streams``)."""

    def __init__(
        self,
        scheduling: Scheduling,
        builds: Builds,
        access: Access,
        identity: Identity,
        config: LogConfig,
        variables: Variables,
        signing: Signing | None = None,
        grants: GrantEpoch | None = None,
    ) -> None:
        self.store = scheduling.store
        self.clock = scheduling.clock
        self.config = config
        self.metrics = scheduling.metrics
        self._scheduling = scheduling
        self._builds = builds
        self._access = access
        self._identity = identity
        self._variables = variables
        self._signing = signing
        records = _Records(self)
        self.commits = LogCommits(records.commit_groups)
        self.grants = grants or GrantEpoch()
        self.streams = LogStreams(
            records,
            LogStreamTimings(check_every=config.check_every),
            children=[self.commits.spec()],
            grants=self.grants,
        )
        self._per_build: Counter[str] = Counter()
        self._per_user: Counter[str] = Counter()
        self._open = 0
        self.catch_ups = 0  # times a viewer fell behind and read the database to catch up
        self.access_checks = _AccessChecks(config.check_every / 4, self.grants)
        # (build id as asked, runner, attempt named or None) -> (build id, attempt, secrets
        # to mask) of appends that committed: that runner's next lines need no read of the
        # build (the commit checks the holder and attempt itself).
        self._holding: dict[tuple[str, str, int | None], _Held] = {}

    @property
    def open_streams(self) -> int:
        return self._open

    # -- runner side ----------------------------------------------------------------------

    async def append(
        self,
        runner: Runner,
        build_id: str,
        lines: Sequence[LogLine],
        *,
        attempt: int | None = None,
    ) -> int:
        """Store a runner's lines (§6.1) in the log of the attempt it holds: NUL made
        visible, cut to 4096 bytes, secrets masked, duplicates ignored, capped per attempt;
        answered once durable, never waiting for viewers.

        403 ``runner_mismatch`` unless the runner holds the build when the lines commit,
        and, if it names an ``attempt`` (ours does), holds it at that attempt: the lines
        of an attempt that was requeued (the runner was lost) are refused, even when the
        same runner claimed the build again.

        The first append of an attempt to a build that this daemon handed the runner
        starts from the build as claimed, without reading it again (a build changed
        meanwhile by another daemon is refused by the commit, then read and answered as it
        now is). Once one of its appends committed, the runner's next ones are a single
        store call:
        the build, attempt and secrets found for the first are reused, and the commit
        checks, under the build's row lock, that the runner still holds that attempt. A
        refusal is then made precise from the build, or, for a runner that names no
        attempt and took the build again, its lines go to the attempt it holds now.
        """
        for line in lines:
            if line.stream not in STREAMS:
                raise InvalidInput("invalid_input", "stream must be stdout or stderr")
            if line.step is not None and not 0 <= line.step <= MAX_STEP:
                raise InvalidInput("invalid_input", f"step must be from 0 to {MAX_STEP}")
        held = (build_id, runner.id, attempt)
        known = self._holding.get(held) if lines else None
        if known is not None:
            try:
                return await self.streams.append(
                    known.build_id, runner.id, known.attempt, _prepared(lines, known.secrets)
                )
            except Forbidden as refused:
                self._holding.pop(held, None)
                if attempt is not None:
                    build = await self._builds.bound(runner, build_id)
                    if attempt != build.attempt:
                        raise Forbidden(
                            "runner_mismatch", "This attempt of the build is over"
                        ) from None
                    raise refused
                # No attempt named: the runner may hold a later attempt now (it took the
                # build again); the lines go to whichever it holds, as below.
        claimed = self._scheduling.held(build_id, runner.id) if lines else None
        if claimed is not None and attempt in (None, claimed.attempt):
            job = self._scheduling.job_of(build_id, runner.id)
            try:  # as this daemon knows it from the claim: no read first
                return await self._first_append(runner, claimed, lines, held, job)
            except Forbidden:
                pass  # changed meanwhile (by another daemon): answered from the build as stored
        build = await self._builds.bound(runner, build_id)
        if attempt is not None and attempt != build.attempt:
            raise Forbidden("runner_mismatch", "This attempt of the build is over")
        if not lines:
            return 0
        return await self._first_append(runner, build, lines, held)

    async def _first_append(
        self,
        runner: Runner,
        build: Build,
        lines: Sequence[LogLine],
        held: tuple[str, str, int | None],
        job: Job | None = None,
    ) -> int:
        """The first append of ``runner`` to this attempt of ``build``: its secrets found
        (from the ``job`` this daemon handed over, else read), its lines committed (the
        commit checks the holder and attempt), the rest kept for the runner's next
        appends."""
        given = None if job is None else job.variables
        found = secret_values(build.config_snapshot)
        found += await self._variables.secrets_to_mask(build, given)
        if self._signing is not None:
            # A runner told to fetch signing material gets the passwords as they are when
            # it fetches: those are read now, not taken from the claim.
            sealed = None
            if job is not None and not (job.android_signing or job.ios_signing):
                sealed = job.sealed_passwords
            found += await self._signing.secrets_to_mask(build, sealed)
        secrets = tuple(sorted(set(found), key=len, reverse=True))
        count = await self.streams.append(
            build.id, runner.id, build.attempt, _prepared(lines, secrets)
        )
        self._holding[held] = _Held(build.id, build.attempt, secrets)
        if len(self._holding) > HOLDERS_KEPT:
            del self._holding[next(iter(self._holding))]
        return count

    # -- reads ----------------------------------------------------------------------------

    async def lines(
        self,
        session: Session,
        build_id: str,
        *,
        after: int,
        limit: int | None,
        attempt: int | None = None,
        before: int | None = None,
        whole_up_to: int | None = None,
    ) -> LogPage:
        """Stored lines after a sequence (§6.2) of one attempt, the current one unless
        named, with how many lines that attempt has and its number. With ``before``, the
        last ``limit`` lines before that sequence (and after ``after``): the page above
        the lines a reader already has. With ``whole_up_to``, a finished attempt of at
        most that many lines comes whole instead (``LogPage.whole``), for a cache to
        slice pages from."""
        check_window(before)
        limit = read_limit(limit)
        found = await self.store.builds.get_with_logs(
            build_id,
            attempt=attempt,
            after=after,
            limit=limit,
            before=before,
            whole_up_to=whole_up_to,
        )
        build, page = (None, None) if found is None else found
        await self._builds.readable(session, build)  # 404 before any other answer
        if attempt is not None and attempt < 1:
            raise InvalidInput("invalid_input", "attempt must be at least 1")
        if page is None:
            raise NotFound("not_found", f"This build has no attempt {attempt}")
        return page

    # -- stream tokens --------------------------------------------------------------------

    async def mint_stream_token(self, session: Session, build_id: str) -> tuple[str, int]:
        """A single-use token for one stream of this build (§6.3), kept in the database so
        any daemon redeems it; it replaces the user's unused token for the build."""
        build = await self._builds.visible(session, build_id)
        now = self.clock.now()
        secret = new_token()
        expires_at = session.capped(now + STREAM_TOKEN_TTL)
        token = StreamToken(
            build.id, session.user.id, session.token_hash, session.via_api_token, expires_at
        )
        if not await self.store.stream_tokens.mint(hash_token(secret), token, TOKEN_LIMITS, now):
            raise TooManyRequests("stream_token_limit", "Too many unused stream tokens")
        return secret, expires_at

    # -- streams --------------------------------------------------------------------------

    async def open_stream(
        self,
        build_id: str,
        *,
        query_token: str | None,
        authorization: str | None,
        last_event_id: str | None,
        tail: int | None = None,
        send: Send | None = None,
        wait: Callable[[], Awaitable[None]] = trio.sleep_forever,
    ) -> AsyncGenerator[bytes, None]:
        """Authorize and admit a viewer (§6.4), then the SSE bytes of its stream.

        ``tail``: without a ``Last-Event-ID`` to resume from, start with only the last
        ``tail`` stored lines of the attempt (0: live lines only), not all of them.
        ``send``: the connection's socket, written to without waiting (see
        ``oore/live/fanout.py``): live lines then reach the viewer with no work by the
        stream's own task. ``wait``: what the stream's task does while there is nothing to
        send (returns or raises when the client is gone). Every refusal is raised here,
        before the response starts.
        """
        if tail is not None and tail < 0:
            raise InvalidInput("invalid_input", "tail must not be negative")
        epoch = self.grants.value  # a change from here on is checked again before a line
        now = self.clock.now()
        if query_token is not None:
            session, expires_at = await self._redeem(query_token, build_id, now)
        else:
            session = await self._identity.authenticate_session(authorization)
            expires_at = session.capped(now + self.config.stream_seconds)
        build = await self._builds.visible(session, build_id)
        resume = resume_point(last_event_id)
        grant = Grant(
            session.token_hash,
            session.user.id,
            build.project_id,
            expires_at,
            session.via_api_token,
        )
        self._admit(build.id, session.user.id)
        try:
            handle = await self.streams.stream(build.id)
            viewer = Viewer(grant, self.config.viewer_buffer_bytes, send)
            viewer.following = build.attempt
            viewer.written_at = trio.current_time()
            viewer.checked = epoch
            handle.watch(viewer)
        except BaseException:
            self._leave(build.id, session.user.id)
            raise
        return self._events(handle, viewer, build.id, resume, build.status.terminal, tail, wait)

    async def _redeem(self, token: str, build_id: str, now: int) -> tuple[Session, int]:
        stored = None
        if looks_like_token(token):
            stored = await self.store.stream_tokens.redeem(hash_token(token))
        if stored is None or stored.expires_at <= now:
            raise Unauthorized("invalid_stream_token", "Stream token is invalid or used")
        if stored.build_id != build_id:
            raise Forbidden("stream_token_build_mismatch", "The token is for another build")
        session = await self._identity.recheck(
            stored.credential_hash, via_api_token=stored.via_api_token
        )
        if session is None:
            raise Unauthorized("invalid_stream_token", "Stream token is invalid or used")
        return session, stored.expires_at

    def _admit(self, build_id: str, user_id: str) -> None:
        config = self.config
        if (
            self._open >= config.viewers_total
            or self._per_build[build_id] >= config.viewers_per_build
            or self._per_user[user_id] >= config.viewers_per_user
        ):
            raise TooManyRequests("stream_limit", "Too many open log streams")
        self._open += 1
        self._per_build[build_id] += 1
        self._per_user[user_id] += 1

    def _leave(self, build_id: str, user_id: str) -> None:
        self._open -= 1
        for counter, key in ((self._per_build, build_id), (self._per_user, user_id)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]

    async def grant_holds(self, grant: Grant) -> bool:
        """Is the grant still good: in its time box, credential live (session, or API token
        with an active creator, at the current effective role), project readable?"""
        if grant.expires_at <= self.clock.now():
            return False
        access = (grant.credential_hash, grant.via_api_token, grant.user_id, grant.project_id)
        checks = self.access_checks
        holds = checks.known(access)
        while holds is None and (flight := checks.in_flight(access)) is not None:
            await flight.wait()  # another viewer with this access is asking
            holds = checks.known(access)
        if holds is None:
            asked_at, epoch = trio.current_time(), self.grants.value
            done = checks.begin(access, epoch)
            try:
                holds = await self._access_holds(grant)
                checks.learn(access, holds, asked_at, epoch)
            finally:
                checks.end(access, done)
        return holds

    async def _granted(self, viewer: Viewer) -> bool:
        """Whether the viewer may be written more lines: its grant is looked up again only
        when something that may take access away changed since it was last found to hold
        (else it is revoked: the stream ends with ``authorization_ended``)."""
        epoch = self.grants.value
        if viewer.checked == epoch:
            return viewer.ended != REVOKED
        grant = viewer.grant
        if not isinstance(grant, Grant) or not await self.grant_holds(grant):
            viewer.revoke()
            return False
        viewer.checked = epoch
        return True

    async def _access_holds(self, grant: Grant) -> bool:
        session = await self._identity.recheck(
            grant.credential_hash, via_api_token=grant.via_api_token
        )
        if session is None or session.user.id != grant.user_id:
            return False
        role = await self._access.role_on(session, grant.project_id)
        return project_allows(role, ProjectPermission.READ)

    async def _backlog(self, build_id: str, viewer: Viewer) -> AsyncIterator[bytes]:
        """Stored lines of the viewer's attempt after its last one, a page at a time (none
        once its grant no longer holds)."""
        while await self._granted(viewer):
            lines, _ = await self.store.builds.logs(
                build_id, attempt=viewer.following, after=viewer.last, limit=self.config.page
            )
            if lines:
                viewer.last = lines[-1].sequence
                yield log_events(lines, viewer.following)
            if len(lines) < self.config.page:
                return

    async def _catch_up(
        self, build_id: str, viewer: Viewer, audience: Audience | None = None
    ) -> AsyncIterator[bytes]:
        """The rest of the followed attempt; then, if the build has moved on, ``event:
        attempt`` and the new attempt's lines from its first (the viewer follows it)."""
        async for chunk in self._backlog(build_id, viewer):
            yield chunk
        state = await self.store.builds.log_state(build_id)
        current = max(viewer.latest, state.attempt if state is not None else 0)
        if current > viewer.following:
            viewer.following, viewer.last = current, -1
            yield attempt_event(current)
            async for chunk in self._backlog(build_id, viewer):
                yield chunk
        if audience is not None:
            audience.caught_up(viewer)  # lines after this come through the audience

    async def _events(
        self,
        handle: LogStreamHandle,
        viewer: Viewer,
        build_id: str,
        resume: ResumePoint | None,
        finished_at_start: bool,
        tail: int | None,
        wait: Callable[[], Awaitable[None]],
    ) -> AsyncGenerator[bytes, None]:
        grant = viewer.grant
        assert isinstance(grant, Grant)
        keep_alive = self.config.keep_alive
        try:
            if resume is not None and resume.attempt == viewer.following:
                viewer.last = resume.sequence
            else:
                if viewer.following > 1:
                    yield attempt_event(viewer.following)  # not resuming within it: say which
                if resume is None and tail is not None:
                    start = await self.store.builds.tail_start(
                        build_id, attempt=viewer.following, count=tail
                    )
                    if start is not None:
                        viewer.last = start
            async for chunk in self._catch_up(build_id, viewer, handle.audience):
                yield chunk
            if finished_at_start:
                yield done_event("build_finished" if await self._granted(viewer) else REVOKED)
                return
            while True:
                now = trio.current_time()
                if viewer.unsent:  # the rest of what the fan-out wrote to the socket
                    chunk, viewer.unsent = viewer.unsent, b""
                    viewer.written_at = now
                    yield chunk
                    continue
                await self._granted(viewer)  # no line after a change that ended access
                if viewer.ended is not None and viewer.ended != "build_finished":
                    yield done_event(viewer.ended)  # nothing newer once access has ended
                    return
                if viewer.lagging or viewer.moved_on:
                    if viewer.lagging:
                        self.catch_ups += 1
                    viewer.resync()
                    async for chunk in self._catch_up(build_id, viewer, handle.audience):
                        viewer.written_at = trio.current_time()
                        yield chunk
                    continue
                parts: list[bytes] = []
                while (batch := viewer.take()) is not None:
                    if batch.attempt != viewer.following:
                        # An earlier attempt's batch is stale; a later one is caught up on
                        # from the database at the top of the loop (``moved_on``).
                        continue
                    if batch.last > viewer.last:
                        parts.append(batch.after(viewer.last))
                        viewer.last = batch.last
                if parts:
                    viewer.written_at = now
                    yield b"".join(parts)  # several events, one write
                    continue
                if viewer.moved_on:
                    continue
                if viewer.ended == "build_finished":
                    async for chunk in self._catch_up(build_id, viewer, handle.audience):
                        yield chunk
                    if await self._granted(viewer):
                        yield done_event("build_finished")
                        return
                    continue  # its access ended meanwhile: said at the top of the loop
                poll = self._scheduling.long_poll(viewer.written_at + keep_alive)
                await viewer.idle(wait, poll)
                if self._scheduling.ending:
                    return  # the daemon is stopping; the client resumes with Last-Event-ID
                now = trio.current_time()
                if not viewer.has_work and now >= viewer.written_at + keep_alive:
                    viewer.written_at = now
                    yield KEEP_ALIVE
        finally:
            handle.unwatch(viewer)
            self._leave(build_id, grant.user_id)
