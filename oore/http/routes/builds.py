"""Builds API and build logs (contract §2.7, §6.2)."""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from quart import Blueprint, Response, jsonify, request
from quart_schema import document_response, security_scheme

from oore.domain.builds import BuildStatus
from oore.domain.logs import window_bounds
from oore.domain.users import Session
from oore.errors import (
    BadGateway,
    Conflict,
    Forbidden,
    InternalError,
    TooManyRequests,
    Unauthorized,
)
from oore.http import shapes
from oore.http.body import Body, json_body
from oore.http.context import AppServices, require_session, services, user_authorization
from oore.http.json_out import answer_part
from oore.http.openapi import errors, raw_response
from oore.http.query import (
    QueryArgs,
    choice,
    current_query,
    direction,
    integer,
    query,
    query_int,
    query_raw,
    text,
)
from oore.services.builds import BuildQuery, TriggerRequest
from oore.services.logs import LogPage, check_window, read_limit

blueprint = Blueprint("builds", __name__)

BUILD_SORTS = ("created_at", "status", "project_name", "pipeline_name", "branch")
_STATUS = "|".join(BuildStatus)
# A comma list of statuses (blanks around and between commas are ignored).
STATUS_LIST = f"^ *({_STATUS})? *(, *({_STATUS})? *)*$"


class TriggerIn(Body):
    pipeline_id: str
    platforms: list[str] | None = None
    branch: str | None = None
    commit_sha: str | None = None
    trigger_ref: str | None = None
    changelog: str | None = None


class BuildOut(BaseModel):
    build: shapes.Build


class BuildDetailOut(BaseModel):
    build: shapes.Build
    events: list[shapes.BuildEvent]


class BuildListOut(BaseModel):
    builds: list[shapes.Build]
    total: int


class LogsOut(BaseModel):
    logs: list[shapes.LogLine]
    total: int
    attempt: int


@blueprint.post("/v1/projects/<project_id>/builds")
@security_scheme([{"bearer": []}])
@json_body(TriggerIn)
@document_response(BuildOut, 201)
@errors(
    Conflict("source_not_configured"),
    Conflict("source_unresolvable"),
    Conflict("source_changed"),
    BadGateway("github_api_error"),
    BadGateway("gitlab_api_error"),
    InternalError("git_error"),
)
async def trigger(project_id: str, body: TriggerIn) -> tuple[Response, int]:
    """Queue a manual build of one of the project's pipelines."""
    session = await require_session()
    build = await services().builds.trigger(
        session,
        project_id,
        TriggerRequest(
            pipeline_id=body.pipeline_id,
            platforms=body.platforms,
            branch=body.branch,
            commit_sha=body.commit_sha,
            trigger_ref=body.trigger_ref,
            changelog=body.changelog,
        ),
    )
    return jsonify({"build": build.to_json()}), 201


@blueprint.get("/v1/builds")
@security_scheme([{"bearer": []}])
@document_response(BuildListOut)
@query(
    text("project_id", "Only this project's builds"),
    text("pipeline_id", "Only this pipeline's builds"),
    text(
        "status",
        "Only builds in one of these statuses: a comma list of at most 9 (400 otherwise)",
        pattern=STATUS_LIST,
    ),
    text("branch", "Only builds of this branch"),
    choice("sort", BUILD_SORTS, "Sort key (default created_at)"),
    direction(),
    integer("limit", "At most this many (default 50; above 200 counts as 200)", minimum=1),
    integer("offset", "Skip this many (default 0)", minimum=0),
)
async def list_builds() -> Response:
    """Builds of the projects the caller may see, newest first unless sorted otherwise."""
    session = await require_session()
    return jsonify(await build_list(services(), session, current_query()))


async def build_list(app: AppServices, session: Session, args: QueryArgs) -> dict[str, Any]:
    """The answer of ``GET /v1/builds`` (also served by the lean listener)."""
    limit = args.number("limit")
    query = BuildQuery(
        project_id=args.text("project_id"),
        pipeline_id=args.text("pipeline_id"),
        status=args.text("status"),
        branch=args.text("branch"),
        sort=args.choice("sort") or "created_at",
        descending=(args.choice("direction") or "desc") == "desc",
        limit=50 if limit is None else limit,
        offset=args.number("offset") or 0,
    )
    builds, total = await app.builds.page(session, query)
    return {"builds": [b.to_json(redact=True, with_context=True) for b in builds], "total": total}


@blueprint.get("/v1/builds/<build_id>")
@security_scheme([{"bearer": []}])
@document_response(BuildDetailOut)
async def get_build(build_id: str) -> Response:
    """One build with its events, oldest first."""
    session = await require_session()
    return jsonify(await build_detail(services(), session, build_id))


async def build_detail(app: AppServices, session: Session, build_id: str) -> dict[str, Any]:
    """The answer of ``GET /v1/builds/{build_id}`` (also served by the lean listener)."""
    build, events = await app.builds.detail(session, build_id)
    return {
        "build": build.to_json(redact=True, with_context=True),
        "events": [event.to_json() for event in events],
    }


@blueprint.post("/v1/builds/<build_id>/cancel")
@security_scheme([{"bearer": []}])
@document_response(BuildOut)
@errors(Conflict("invalid_transition"), Conflict("concurrent_modification"))
async def cancel(build_id: str) -> Response:
    """Cancel a build that has not finished; its runner hears of it at once."""
    session = await require_session()
    build = await services().builds.cancel(session, build_id)
    return jsonify({"build": build.to_json()})


@blueprint.post("/v1/builds/<build_id>/rerun")
@security_scheme([{"bearer": []}])
@document_response(BuildOut, 201)
@errors(
    Conflict("build_not_terminal"),
    Conflict("source_not_configured"),
    Conflict("source_changed"),
)
async def rerun(build_id: str) -> tuple[Response, int]:
    """Queue a new build with a finished build's config snapshot."""
    session = await require_session()
    build = await services().builds.rerun(session, build_id)
    return jsonify({"build": build.to_json()}), 201


@blueprint.get("/v1/builds/<build_id>/logs")
@security_scheme([{"bearer": []}])
@document_response(LogsOut)
@query(
    choice("timestamps", ("true", "false"), "true: each line carries ``at``"),
    integer("after_sequence", "Only lines after this sequence (default: all)"),
    integer("before_sequence", "The last ``limit`` lines before this sequence", minimum=0),
    integer("limit", "At most this many lines (default 1000; above 5000: 5000; negative: all)"),
    integer("attempt", "This attempt's lines (default the build's current one)", minimum=1),
)
async def logs(build_id: str) -> Response:
    """Stored log lines after ``after_sequence`` (default all), at most ``limit`` (≤ 5000),
    of one attempt: the build's current one, or ``attempt`` (1 up to the build's ``attempt``;
    a requeued build keeps each attempt's log apart). ``total`` counts that attempt's lines.
    ``before_sequence`` pages backwards: the last ``limit`` lines before it (and after
    ``after_sequence`` if given), still in ascending order. ``timestamps=true`` adds ``at``
    to each line: when the server stored it (Unix seconds). A line the runner said a step
    printed carries ``step`` (its position among the build's steps, from 0) and
    ``step_name``."""
    session = await require_session()
    return jsonify(await log_page(services(), session, current_query(), build_id))


@dataclass(frozen=True)
class LogWindow:
    """Which lines of which attempt a log read asks for, and how they are shown."""

    timestamps: bool
    after: int
    before: int | None
    limit: int | None  # None: all
    attempt: int | None  # None: the build's current one


def log_window(args: QueryArgs) -> LogWindow:
    """The window of ``GET /v1/builds/{build_id}/logs`` read from its query."""
    before = args.number("before_sequence")
    check_window(before)
    after = args.number("after_sequence")
    limit = args.number("limit")
    if limit is None:
        limit = 1000
    return LogWindow(
        timestamps=args.choice("timestamps") == "true",
        after=-1 if after is None else after,
        before=before,
        limit=None if limit < 0 else limit,
        attempt=args.number("attempt"),
    )


async def log_page(
    app: AppServices, session: Session, args: QueryArgs, build_id: str
) -> dict[str, Any]:
    """The answer of ``GET /v1/builds/{build_id}/logs``."""
    window = log_window(args)
    return log_answer(window, await read_window(app, session, build_id, window))


async def read_window(
    app: AppServices,
    session: Session,
    build_id: str,
    window: LogWindow,
    *,
    whole_up_to: int | None = None,
) -> LogPage:
    """The lines of ``window`` (or, with ``whole_up_to``, a finished attempt whole)."""
    return await app.logs.lines(
        session,
        build_id,
        after=window.after,
        limit=window.limit,
        attempt=window.attempt,
        before=window.before,
        whole_up_to=whole_up_to,
    )


def log_answer(window: LogWindow, page: LogPage) -> dict[str, Any]:
    """The answer of a log read from the page read for it."""
    stamped = window.timestamps
    return {
        "logs": [line.fields() | ({"at": line.at} if stamped else {}) for line in page.lines],
        "total": page.total,
        "attempt": page.attempt,
    }


class KeptLog:
    """A finished attempt's lines as the lean listener keeps them, so that the answer of
    any window is one slice (byte for byte :func:`log_answer`'s): each line encoded once,
    without and with ``at``, the lines of each form joined by commas into one text, with
    where each line starts in it and the lines' sequences. Five objects per attempt,
    none of which the garbage collector walks.

    Kept one by one, the encoded lines cost far more than their text: orjson gives each
    in a buffer of about 4 KB whatever its length, so 500 lines of 100 bytes held 2 MB
    (the kept answers' memory bound counted about a tenth of that), and a miss spent a
    page fault on each line. Joined, the encodings are let go at once."""

    __slots__ = (
        "_plain",
        "_plain_starts",
        "_stamped",
        "_stamped_starts",
        "attempt",
        "sequences",
        "size",
        "total",
    )

    def __init__(self, page: LogPage) -> None:
        """Raises ``orjson.JSONEncodeError`` for a line the compact encoding refuses."""
        self.attempt = page.attempt
        self.total = page.total
        self.sequences = array("q", (line.sequence for line in page.lines))
        plain = [answer_part(line.fields()) for line in page.lines]
        # "at" sorts before every other key of a line: it opens the object
        stamped = [
            b'{"at":' + answer_part(line.at) + b"," + text[1:]
            for line, text in zip(page.lines, plain, strict=True)
        ]
        self._plain, self._plain_starts = _joined(plain)
        self._stamped, self._stamped_starts = _joined(stamped)
        self.size = len(self._plain) + len(self._stamped) + 2 * sys.getsizeof(b"")
        self.size += 8 * (len(self.sequences) + len(plain) + len(stamped) + 2)

    def answer(self, window: LogWindow) -> bytes:
        """The body of the answer of ``window``."""
        start, end = window_bounds(
            self.sequences, window.after, window.before, read_limit(window.limit)
        )
        if window.timestamps:
            text, starts = self._stamped, self._stamped_starts
        else:
            text, starts = self._plain, self._plain_starts
        # the lines from start to end, without the comma after the last
        lines = text[starts[start] : starts[end] - 1] if end > start else b""
        return b'{"attempt":%d,"logs":[%b],"total":%d}\n' % (self.attempt, lines, self.total)


def _joined(parts: list[bytes]) -> tuple[bytes, array[int]]:
    """``parts`` joined by commas, and where each starts, then where one more would."""
    starts = array("q", [0])
    at = 0
    for part in parts:
        at += len(part) + 1
        starts.append(at)
    return b",".join(parts), starts


class StreamTokenOut(BaseModel):
    token: str
    expires_at: int


@blueprint.post("/v1/builds/<build_id>/stream-token")
@security_scheme([{"bearer": []}])
@document_response(StreamTokenOut)
@errors(TooManyRequests("stream_token_limit"))
async def stream_token(build_id: str) -> Response:
    """A single-use token (5 minutes) to open this build's log stream without a header."""
    session = await require_session()
    token, expires_at = await services().logs.mint_stream_token(session, build_id)
    return jsonify({"token": token, "expires_at": expires_at})


@blueprint.get("/v1/builds/<build_id>/logs/stream")
@security_scheme([{"bearer": []}])
@raw_response(200, "Server-sent events: log, done", "text/event-stream")
@query(
    text("token", "A stream token (instead of a session)"),
    integer("tail", "Start with only the last N stored lines (0: live lines only)", minimum=0),
)
@errors(
    Unauthorized("invalid_stream_token"),
    Forbidden("stream_token_build_mismatch"),
    TooManyRequests("stream_limit"),
)
async def log_stream(build_id: str) -> Response:
    """Server-sent events of the current attempt: stored lines, then live ones (``event:
    log``, ``id`` = sequence, ``<attempt>:<sequence>`` after the first attempt), then
    ``event: done``. ``event: attempt`` says the lines that follow are a new attempt's
    (the build was requeued). ``?token=`` (a stream token), a session header or the
    session cookie; resumes after ``Last-Event-ID``. Without one, ``?tail=N`` starts with
    only the last N stored lines (0: live lines only)."""
    events = await services().logs.open_stream(
        build_id,
        query_token=query_raw("token"),
        authorization=user_authorization(),
        last_event_id=request.headers.get("Last-Event-ID"),
        tail=query_int("tail"),
    )
    response = Response(
        events,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.timeout = None  # open as long as the build writes (and the grant lasts)
    return response
