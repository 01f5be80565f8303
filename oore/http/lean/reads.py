"""The hottest API reads served on the lean listener: ``GET /v1/projects``,
``GET /v1/builds``, ``GET /v1/builds/{build_id}``, a page of a build's log
(``GET /v1/builds/{build_id}/logs``) and ``GET /v1/runners``.

Under Hypercorn and Quart a read cost the daemon 2.7 to 4.1 ms of CPU, most of it the
general HTTP stack (Hypercorn, Quart's request and response objects, its hooks), against
0.3 to 1.1 ms in PostgreSQL. Here a read is its head, parsed once, and one write.

The answers are Quart's, byte for byte in what matters (status, body, content type, cache
and security headers, CORS, request id, ``Retry-After``), because each step is the one
the Quart route takes, from the same code:

- the Host guard of oore/http/guard.py (a head the framing check of oore/http/server.py
  refuses is left to Hypercorn, which refuses it);
- the guess limiter (oore/http/guesses.py): a locked client presenting a credential is
  refused, a 401 counts as a failed guess;
- the session from the Bearer header or the session cookie (``Identity.authenticate``);
- the view's own answer function (``project_list``, ``build_list``, ``build_detail``,
  ``log_page``, ``runner_list`` in oore/http/routes), which validates the query from
  the view's ``@query`` declarations (:class:`~oore.http.query.QueryArgs`) and calls
  the services;
- the JSON encoding of oore/http/json_out.py, the error envelope of oore/http/errors.py,
  the ``http.request`` access line, the ``http.error`` line of a 5xx, and
  ``http_requests_total`` / ``http_request_duration_seconds`` under the route's template.

An answer is kept in memory until what it shows changes (oore/http/lean/cache.py), and
given again from there: the guard, the guess limiter and the session come first every
time, and the answer is kept per viewer. Only the reads that reach the database take a
turn from the limiter of :data:`READS_AT_ONCE`.

The connection is kept open after an answer (HTTP/1.1 keep-alive) unless the client asked
to close it; the dispatch reads the next request and hands the connection to Hypercorn
at the first one no lean route takes. What the lean side leaves to Hypercorn: HTTP/1.0,
``HEAD``, a request with a body or ``Upgrade``, any path not listed here (a trailing
slash included).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import orjson
import trio

from oore.domain.builds import BuildStatus
from oore.domain.changes import (
    BUILDS,
    EVERY,
    RUNNERS,
    build_mark,
    came_mark,
    list_scope,
    moved_mark,
)
from oore.domain.logs import page_of
from oore.domain.users import Session
from oore.errors import ApiError, InternalError, retry_after
from oore.eventlog import REQUEST_ID
from oore.http.context import SESSION_COOKIE, AppServices
from oore.http.cors import cors_headers
from oore.http.guard import DEFAULT_CACHE, DEFAULT_POLICY, HARDENING_HEADERS, check_request
from oore.http.guesses import SIGNING_TOKEN_HEADER, presented_credentials
from oore.http.json_out import answer_body
from oore.http.lean.answers import LINGER_SECONDS, linger
from oore.http.lean.cache import KEPT_LINES, QUEUED_SECONDS
from oore.http.lean.exchange import BROKEN, peer_address, starts_like
from oore.http.lean.head import RequestHead
from oore.http.lean.lanes import API
from oore.http.metrics import Metrics, method_label
from oore.http.query import Param, QueryArgs, declarations
from oore.http.requests import (
    Failure,
    access_line,
    error_line,
    loggable_path,
    request_id_from,
)
from oore.http.routes import builds, projects, runners
from oore.http.server import framing_problem
from oore.services.logs import LogPage, read_limit

log = logging.getLogger(__name__)

_START = b"GET /v1/"
# Reads that reach the database (no kept answer) at once; the others wait their turn
# before any work is done for them. Unbounded, 200 readers filled the event loop's queue
# and the database pool, and the runners' claims and log appends waited behind them for
# seconds. With answers kept, what misses comes in bursts (200 readers starting on an
# empty memory, a change that drops what many read): 8, 4, 2 and 1 at once were measured,
# and fewer made the runners' p99 under readers 2 to 3 times better, with reads no worse
# (README, "Readers under load"); 2 leaves room for a database farther away than loopback.
READS_AT_ONCE = 2
# The same bound in a worker that serves only the API (``oored --workers N``): the runners
# are in another process, at a higher priority, with a pool of their own, and 200 readers
# starting at once on an empty memory waited for each other at 2 at a time. 6 made that
# start shorter with the runners no worse (README, "Readers under load"), and leaves most
# of the worker's pool of 10 to the API's writes.
API_WORKER_READS_AT_ONCE = 6
# Rough size of a kept answer beyond its body, in bytes.
ENTRY_BYTES = 200

# The answer of one read: the services, the caller's session, the query read against the
# view's declarations, and the path's parameters.
ReadAnswer = Callable[[AppServices, Session, QueryArgs, Sequence[str]], Awaitable[dict[str, Any]]]
# What a read's answer depends on (oore/domain/changes.py), and for how long at most it
# may be kept (None: until one of those changes), from the answer and the read's query.
Keeping = tuple[frozenset[str], float | None]
Keep = Callable[[dict[str, Any], QueryArgs], Keeping]


@dataclass(frozen=True)
class Read:
    """One read the lean listener serves: its path, its route template (the metrics label,
    as Quart's rule gives it), the query its Quart view declares, its answer, and what
    the answer depends on while kept (oore/http/lean/cache.py)."""

    path: re.Pattern[str]
    template: str
    endpoint: str
    params: Mapping[str, Param]
    # Both None: a page of a build's log, cut from its finished attempt's kept lines
    # (:meth:`ReadRoute._log_page`).
    answer: ReadAnswer | None
    keep: Keep | None


def _queued(builds: Sequence[dict[str, Any]]) -> bool:
    return any(build["status"] == BuildStatus.QUEUED.value for build in builds)


def _waiting(marks: frozenset[str], builds: Sequence[dict[str, Any]]) -> Keeping:
    """Why a queued build waits depends on the runners and on the time since each was
    last heard from: an answer showing one is kept a short while, and not past a
    runner's change."""
    if _queued(builds):
        return marks | {RUNNERS}, QUEUED_SECONDS
    return marks, None


def _projects_keep(_: dict[str, Any], __: QueryArgs) -> Keeping:
    return frozenset(), None  # projects, members, repositories: any change is ``world``


def _uuid_or_none(value: str | None) -> str | None:
    """An id as PostgreSQL writes it, or None when it is none."""
    try:
        return None if value is None else str(uuid.UUID(value))
    except ValueError:
        return None


def _builds_keep(answer: dict[str, Any], args: QueryArgs) -> Keeping:
    """A list of builds changes when a build it shows does, when a build comes or goes in
    the scope it is narrowed to, and, filtered or sorted by status, when a build's status
    changes there (oore/domain/changes.py). A project or pipeline that is not an id
    narrows to nothing known: every build's scope."""
    scope = list_scope(
        _uuid_or_none(args.text("project_id")), _uuid_or_none(args.text("pipeline_id"))
    )
    marks = {BUILDS, came_mark(scope), *(build_mark(build["id"]) for build in answer["builds"])}
    if args.text("status") is not None or args.choice("sort") == "status":
        marks.add(moved_mark(scope))
    return _waiting(frozenset(marks), answer["builds"])


def _build_keep(answer: dict[str, Any], _: QueryArgs) -> Keeping:
    build = answer["build"]
    return _waiting(frozenset({build_mark(build["id"])}), [build])


def _runners_keep(_: dict[str, Any], __: QueryArgs) -> Keeping:
    # a runner shows its current builds: a build's runner changes with its status
    return frozenset({RUNNERS, BUILDS, came_mark(EVERY), moved_mark(EVERY)}), None


async def _projects(
    app: AppServices, session: Session, args: QueryArgs, _: Sequence[str]
) -> dict[str, Any]:
    return await projects.project_list(app, session, args)


async def _builds(
    app: AppServices, session: Session, args: QueryArgs, _: Sequence[str]
) -> dict[str, Any]:
    return await builds.build_list(app, session, args)


async def _runners(
    app: AppServices, session: Session, args: QueryArgs, _: Sequence[str]
) -> dict[str, Any]:
    return await runners.runner_list(app, session, args)


async def _build(
    app: AppServices, session: Session, _: QueryArgs, path: Sequence[str]
) -> dict[str, Any]:
    return await builds.build_detail(app, session, path[0])


def hot_reads() -> tuple[Read, ...]:
    """The reads served lean, each with its Quart view's query declarations."""
    return (
        Read(
            re.compile(r"/v1/projects"),
            "/v1/projects",
            "projects.list_projects",
            declarations(projects.list_projects),
            _projects,
            _projects_keep,
        ),
        Read(
            re.compile(r"/v1/builds"),
            "/v1/builds",
            "builds.list_builds",
            declarations(builds.list_builds),
            _builds,
            _builds_keep,
        ),
        Read(
            re.compile(r"/v1/builds/([^/]+)"),
            "/v1/builds/{build_id}",
            "builds.get_build",
            declarations(builds.get_build),
            _build,
            _build_keep,
        ),
        Read(
            re.compile(r"/v1/builds/([^/]+)/logs"),
            "/v1/builds/{build_id}/logs",
            "builds.logs",
            declarations(builds.logs),
            None,
            None,
        ),
        Read(
            re.compile(r"/v1/runners"),
            "/v1/runners",
            "runners.list_runners",
            declarations(runners.list_runners),
            _runners,
            _runners_keep,
        ),
    )


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def json_answer(
    status: int,
    body: bytes,
    request_id: str,
    extra: Sequence[tuple[str, str]] = (),
    *,
    close: bool = False,
) -> bytes:
    """A JSON answer with the headers Quart's carry (the hardening ones, the cache policy,
    the request id, and ``extra``: CORS, ``Retry-After``)."""
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Date", formatdate(usegmt=True)),
        ("X-Request-Id", request_id),
        *HARDENING_HEADERS,
        ("Content-Security-Policy", DEFAULT_POLICY),
        ("Cache-Control", DEFAULT_CACHE),
        *extra,
        *([("Connection", "close")] if close else []),
    ]
    return _head(status, headers) + body


def _credential(head: RequestHead) -> tuple[str | None, str | None]:
    """The Authorization header, and the session cookie's token (when there is no header)."""
    header = head.header(b"authorization")
    if header is not None:
        return header, None
    return None, head.cookie(SESSION_COOKIE) or None


class ReadRoute:
    """The lean route of the hot reads (see the module's docstring)."""

    lane = API

    def __init__(
        self,
        services: AppServices,
        *,
        metrics: Metrics | None = None,
        access_log: bool = False,
        reads: Sequence[Read] | None = None,
        at_once: int = READS_AT_ONCE,
    ) -> None:
        self._services = services
        self._metrics = metrics
        self._access_log = access_log
        self._reads = tuple(hot_reads() if reads is None else reads)
        self._answers = services.answers
        self.in_flight = trio.CapacityLimiter(at_once)

    async def _log_page(
        self, session: Session, viewer: Hashable, args: QueryArgs, build_id: str
    ) -> bytes:
        """A page of a build's log: cut from its attempt's lines when they are kept (a
        finished attempt), else read, and the attempt's lines kept when they came whole."""
        window = builds.log_window(args)
        key = ("logs", build_id, window.attempt, viewer)
        kept = self._answers.get(key)
        if isinstance(kept, builds.KeptLog):
            return kept.answer(window)

        async def read(since: int) -> builds.KeptLog | LogPage:
            async with self.in_flight:
                page = await builds.read_window(
                    self._services, session, build_id, window, whole_up_to=KEPT_LINES
                )
            if not page.whole:
                return page
            try:
                whole = builds.KeptLog(page)
            except orjson.JSONEncodeError:  # answered by the standard encoder instead
                cut = page_of(page.lines, window.after, window.before, read_limit(window.limit))
                return replace(page, whole=False, lines=cut)
            mark = build_mark(str(uuid.UUID(build_id)))
            self._answers.put(key, whole, (mark,), since=since, size=ENTRY_BYTES + whole.size)
            return whole

        # another reader's result serves this one only when it is the whole attempt
        found = await self._answers.read_once(
            key, read, lambda found: isinstance(found, builds.KeptLog)
        )
        if isinstance(found, builds.KeptLog):
            return found.answer(window)
        return answer_body(builds.log_answer(window, found))

    def may_take(self, start: bytes) -> bool:
        return starts_like(start, _START)

    def _match(self, path: str) -> tuple[Read, Sequence[str]] | None:
        for read in self._reads:
            found = read.path.fullmatch(path)
            if found is not None:
                return read, found.groups()
        return None

    def takes(self, head: RequestHead) -> bool:
        return (
            head.method == "GET"
            and head.version == "HTTP/1.1"
            and head.header(b"content-length") is None
            and head.header(b"transfer-encoding") is None
            and head.header(b"host") is not None
            and framing_problem(head.headers) is None
            and not head.tokens(b"upgrade")
            and self._match(head.path) is not None
        )

    async def serve(
        self, stream: trio.SocketStream, head: RequestHead, received: bytes
    ) -> bytes | None:
        try:
            return await self._serve(stream, head, received)
        except BROKEN:  # the client left under its answer
            await trio.aclose_forcefully(stream)
            return None
        except BaseException:  # cancelled (the server stops): the socket is ours to close
            await trio.aclose_forcefully(stream)
            raise

    async def _serve(
        self, stream: trio.SocketStream, head: RequestHead, received: bytes
    ) -> bytes | None:
        matched = self._match(head.path)
        assert matched is not None
        read, groups = matched
        request_id = request_id_from(head.headers)
        token = REQUEST_ID.set(request_id)
        started = trio.current_time()
        status: int | None = None
        close = "close" in head.tokens(b"connection")
        try:
            cors = cors_headers(
                head.header(b"origin"), head.path, self._services.network.allowed_origins
            )
            failure = Failure()
            try:
                body = await self._answer(stream, head, read, groups)
                status = 200
                answer = json_answer(200, body, request_id, cors, close=close)
            except Exception as exc:
                error = exc if isinstance(exc, ApiError) else InternalError()
                if not isinstance(exc, ApiError):
                    failure = Failure(error.code, error.message, exc)
                status = error.status
                wait = retry_after(error)
                extra = [*cors, *([] if wait is None else [("Retry-After", str(wait))])]
                body = answer_body({**error.to_json(), "request_id": request_id})
                answer = json_answer(status, body, request_id, extra, close=close)
            await stream.send_all(answer)
            if status >= 500:
                error_line(head.method, loggable_path(head.path), status, failure)
        finally:
            if self._metrics is not None and status is not None:
                labels = (method_label(head.method), read.template, str(status))
                self._metrics.requests.labels(*labels).inc()
                self._metrics.duration.labels(*labels).observe(trio.current_time() - started)
            if self._access_log:
                access_line(head.method, loggable_path(head.path), status, started)
            REQUEST_ID.reset(token)
        if close:
            with trio.move_on_after(LINGER_SECONDS):
                await linger(stream)
            await trio.aclose_forcefully(stream)
            return None
        return received

    async def _answer(
        self, stream: trio.SocketStream, head: RequestHead, read: Read, groups: Sequence[str]
    ) -> bytes:
        """What the Quart route answers, in the order it decides it."""
        authorization, cookie_token = _credential(head)
        check_request(
            self._services.network,
            raw_host=head.header(b"host"),
            origin=head.header(b"origin"),
            path=head.path,
            scheme="http",
            changes_state=False,
            by_cookie=cookie_token is not None,
        )
        _, _, query = head.target.partition("?")
        # As Quart reads a query (invalid bytes stay percent-encoded); the first value wins.
        pairs = parse_qsl(query, keep_blank_values=True, errors="werkzeug.url_quote")
        args = dict(reversed(pairs))
        presented = presented_credentials(
            authorization=authorization,
            cookie_token=cookie_token,
            query_token=args.get("token") if "token=" in query else None,
            path_token=None,
            signing_token=head.header(SIGNING_TOKEN_HEADER.lower().encode()),
        )
        guesses = self._services.guesses

        def client() -> str | None:  # asked for only when a guess limit is concerned
            return head.client_ip(peer_address(stream))

        if presented and guesses.anyone_locked:
            refusal = guesses.refusal(client(), presented)
            if refusal is not None:
                raise refusal
        credential = authorization or (None if cookie_token is None else f"Bearer {cookie_token}")
        try:
            session = await self._services.identity.authenticate(credential)
            found = QueryArgs(read.params, args, read.endpoint)
            viewer = (session.user.id, session.user.role, session.via_api_token)
            if read.answer is None or read.keep is None:
                return await self._log_page(session, viewer, found, groups[0])
            answer_of = read.answer
            key = (read.template, tuple(groups), query, viewer)
            kept = self._answers.get(key)
            if isinstance(kept, bytes):
                return kept
            keep = read.keep

            async def answered(since: int) -> bytes:
                async with self.in_flight:
                    answer = await answer_of(self._services, session, found, groups)
                body = answer_body(answer)
                marks, seconds = keep(answer, found)
                self._answers.put(
                    key, body, marks, since=since, size=len(body) + ENTRY_BYTES, seconds=seconds
                )
                return body

            return await self._answers.read_once(key, answered)
        except ApiError as error:
            if presented and error.status == 401:
                guesses.failed(client())
            raise
