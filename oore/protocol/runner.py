"""The runner protocol (contract §5): the operations a runner performs, their request and
reply types, their errors, and the frames of the runner channel.

One definition serves every transport. Over HTTP an operation is a route
(:attr:`Op.method` and :attr:`Op.path` under ``/v1/runners/{runner_id}/``, the request as
the JSON body, or as the query string for a GET); over the runner channel it is one text
frame ``{"id": <int>, "op": <name>, ...request}`` (plus ``build_id`` for the job
operations) answered by ``{"id", "ok": true, ...reply}`` or ``{"id", "ok": false,
"status", "code", "error", "details"?}`` with the status and code HTTP would give.

Request types refuse unknown fields and do not coerce types (as every request body of the
API); reply types accept fields they do not know, so a newer server's answers still read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from oore.errors import ApiError, InvalidRequest

PROTOCOL_VERSION: Final = 4
# A long poll (claim, job state) waits at most this long.
MAX_WAIT_SECONDS: Final = 60

# -- the runner channel -------------------------------------------------------------------

CHANNEL_PATH: Final = "/v1/runners/{runner_id}/channel"
# A bigger frame closes the channel with CLOSE_TOO_BIG (as a JSON body over 2 MiB is 413).
MAX_FRAME: Final = 2 * 1024 * 1024
# Requests of one channel answered at once; beyond that the server stops reading.
MAX_IN_FLIGHT: Final = 64
CLOSE_GOING_AWAY: Final = 1001  # the server is stopping
CLOSE_POLICY_VIOLATION: Final = 1008  # the runner's token is no longer valid
CLOSE_TOO_BIG: Final = 1009  # a frame over MAX_FRAME


class Code(StrEnum):
    """The error codes of the runner operations (with their HTTP status)."""

    INVALID_REQUEST = "invalid_request"  # 400: a body, frame or field that does not fit
    INVALID_STATUS = "invalid_status"  # 400: a heartbeat or report naming no known status
    MISSING_AUTH = "missing_auth"  # 401: no Authorization
    INVALID_TOKEN = "invalid_token"  # 401: not this runner's token (or the runner is gone)
    RUNNER_MISMATCH = "runner_mismatch"  # 403: another runner's path, or a build not held
    NOT_FOUND = "not_found"  # 404: no such build
    RUNNER_PROTOCOL_MISMATCH = "runner_protocol_mismatch"  # 409: claim with another version
    INVALID_TRANSITION = "invalid_transition"  # 409: a report the build cannot take


# -- requests and replies -----------------------------------------------------------------


class Request(BaseModel):
    """Base of the requests: unknown fields are refused, types are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Reply(BaseModel):
    """Base of the replies: fields this side does not know are ignored."""

    model_config = ConfigDict(extra="ignore")


RunnerStatus = Literal["online", "offline", "busy", "draining"]
ReportStatus = Literal["running", "succeeded", "failed"]
Stream = Literal["stdout", "stderr"]


class HeartbeatIn(Request):
    status: str
    capabilities: Any = None


class ClaimIn(Request):
    protocol_version: int
    wait_seconds: float = 0


class ClaimOut(Reply):
    job: dict[str, Any] | None = None


class JobStateIn(Request):
    """The job-state poll's parameters (a query string over HTTP, fields on the channel)."""

    wait_seconds: int = 0


class JobStateOut(Reply):
    status: str


class StepIn(Request):
    name: str
    status: str
    exit_code: int | None = None
    started_at: int
    finished_at: int
    duration_ms: int


class JobStatusIn(Request):
    status: str
    exit_code: int | None = None
    error_message: str | None = None
    steps: list[StepIn] | None = None


class JobStatusOut(Reply):
    build: dict[str, Any]
    events: list[dict[str, Any]]


class ChunkIn(Request):
    sequence: int
    content: str
    stream: str
    # The step that printed the line: its position among the steps the runner reports
    # (from 0) and its name. Optional: oored's runner and older oore runners leave them out.
    step: int | None = None
    step_name: str | None = None


class LogsIn(Request):
    chunks: list[ChunkIn]
    # The attempt the runner was given at its claim; lines of an attempt that is over
    # are refused (403 runner_mismatch). Optional: without it, the attempt it holds.
    attempt: int | None = None


class AppendedOut(Reply):
    appended: int


class NoReply(Reply):
    """An answer without fields (a heartbeat's: 204 over HTTP, ``{"id", "ok"}`` on a channel)."""


# -- the operations -----------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One runner operation: its name on the channel, its HTTP route, its types."""

    name: str
    method: Literal["GET", "POST"]
    path: str  # under /v1/runners/{runner_id}/; {build_id} for the job operations
    request: type[Request]
    reply: type[Reply]
    errors: tuple[Code, ...]

    @property
    def for_a_build(self) -> bool:
        return "{build_id}" in self.path

    def route(self, build_id: str | None = None) -> str:
        """The path under ``/v1/runners/{runner_id}/`` (``build_id`` already quoted)."""
        return self.path if build_id is None else self.path.replace("{build_id}", build_id)


_AUTH = (Code.MISSING_AUTH, Code.INVALID_TOKEN, Code.RUNNER_MISMATCH)
_JOB = (*_AUTH, Code.INVALID_REQUEST, Code.NOT_FOUND)

HEARTBEAT = Op(
    "heartbeat", "POST", "heartbeat", HeartbeatIn, NoReply,
    (*_AUTH, Code.INVALID_REQUEST, Code.INVALID_STATUS),
)  # fmt: skip
CLAIM = Op(
    "claim", "POST", "claim", ClaimIn, ClaimOut,
    (*_AUTH, Code.INVALID_REQUEST, Code.RUNNER_PROTOCOL_MISMATCH),
)  # fmt: skip
JOB_STATE = Op("job_state", "GET", "jobs/{build_id}", JobStateIn, JobStateOut, _JOB)
JOB_STATUS = Op(
    "job_status", "POST", "jobs/{build_id}/status", JobStatusIn, JobStatusOut,
    (*_JOB, Code.INVALID_STATUS, Code.INVALID_TRANSITION),
)  # fmt: skip
LOGS = Op("logs", "POST", "jobs/{build_id}/logs", LogsIn, AppendedOut, _JOB)

OPS: Final[dict[str, Op]] = {op.name: op for op in (HEARTBEAT, CLAIM, JOB_STATE, JOB_STATUS, LOGS)}


# -- what a runner sends: the requests' JSON, as every transport carries it ---------------


def heartbeat_fields(status: RunnerStatus, capabilities: dict[str, Any] | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"status": status}
    if capabilities:
        fields["capabilities"] = capabilities
    return fields


def claim_fields(wait_seconds: int) -> dict[str, Any]:
    return {"protocol_version": PROTOCOL_VERSION, "wait_seconds": wait_seconds}


def job_state_fields(wait_seconds: int) -> dict[str, Any]:
    return {"wait_seconds": wait_seconds}


def job_status_fields(
    status: ReportStatus,
    exit_code: int | None,
    error_message: str | None,
    steps: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """A status report; fields without a value are left out, as are empty steps."""
    fields: dict[str, Any] = {"status": status}
    if exit_code is not None:
        fields["exit_code"] = exit_code
    if error_message is not None:
        fields["error_message"] = error_message
    if steps:
        fields["steps"] = steps
    return fields


def logs_fields(chunks: list[dict[str, Any]], attempt: int | None) -> dict[str, Any]:
    """A log batch; ``attempt`` only when known (a server may not take it)."""
    fields: dict[str, Any] = {"chunks": chunks}
    if attempt is not None:
        fields["attempt"] = attempt
    return fields


# -- channel frames -----------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """A channel request, decoded: its id, operation, build (job operations) and fields."""

    id: int
    op: Op
    build_id: str | None
    fields: dict[str, Any]


def request_id_of(data: Any) -> int | None:
    """The frame's ``id`` when it has a valid one (what an error reply should echo)."""
    if isinstance(data, dict):
        value = data.get("id")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def parse_frame(data: Any) -> Frame:
    """A decoded frame as a request; 400 ``invalid_request`` naming what is wrong.

    The fields are left to :meth:`Op.request` (validated where the operation runs).
    """
    if not isinstance(data, dict):
        raise InvalidRequest(details="frame is not a JSON object")
    fields = dict(data)
    request_id = fields.pop("id", None)
    if not isinstance(request_id, int) or isinstance(request_id, bool):
        raise InvalidRequest(details="id: an integer is required")
    name = fields.pop("op", None)
    if not isinstance(name, str):
        raise InvalidRequest(details="op: a string is required")
    op = OPS.get(name)
    if op is None:
        raise InvalidRequest(details=f"op: unknown operation {name!r}")
    build_id = None
    if op.for_a_build:
        build_id = fields.pop("build_id", None)
        if not isinstance(build_id, str) or not build_id:
            raise InvalidRequest(details="build_id: a string is required")
    return Frame(request_id, op, build_id, fields)


def request_frame(
    request_id: int, op: Op, fields: dict[str, Any], build_id: str | None
) -> dict[str, Any]:
    """The frame a runner sends for ``op`` (``fields``: the request's JSON)."""
    frame: dict[str, Any] = {"id": request_id, "op": op.name}
    if build_id is not None:
        frame["build_id"] = build_id
    frame.update(fields)
    return frame


def ok_reply(request_id: int, answer: dict[str, Any]) -> dict[str, Any]:
    return {"id": request_id, "ok": True, **answer}


def error_reply(request_id: int | None, error: ApiError) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "status": error.status, **error.to_json()}


@dataclass(frozen=True)
class Refusal:
    """An error reply as a runner reads it."""

    status: int
    code: str
    error: str
    details: str | None


def refusal_of(reply: dict[str, Any]) -> Refusal | None:
    """The refusal an error reply carries; None for an ok reply. ValueError when the reply
    is neither."""
    if reply.get("ok") is True:
        return None
    status, code, message = reply.get("status"), reply.get("code"), reply.get("error")
    if not isinstance(status, int) or not isinstance(code, str):
        raise ValueError("the reply is neither ok nor an error")
    details = reply.get("details")
    return Refusal(
        status,
        code,
        message if isinstance(message, str) else code,
        details if isinstance(details, str) else None,
    )
