"""Runners API, runner enrollment tokens, the runner protocol's HTTP routes (contract §2.8, §5)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from quart import Blueprint, Response, jsonify, request
from quart_schema import document_response, security_scheme

from oore.domain.runners import MAX_WAIT_SECONDS
from oore.domain.users import Session
from oore.errors import Conflict, InvalidInput, ServiceUnavailable
from oore.http import shapes
from oore.http.body import Body, json_body
from oore.http.context import AppServices, require_runner, require_session, services
from oore.http.openapi import errors, no_content
from oore.http.query import QueryArgs, current_query, integer, query, query_int, text
from oore.http.runner_ops import RunnerOps
from oore.protocol import runner as protocol
from oore.protocol.runner import (
    AppendedOut,
    ClaimIn,
    HeartbeatIn,
    JobStateIn,
    JobStateOut,
    JobStatusIn,
    LogsIn,
)

blueprint = Blueprint("runners", __name__)

RUNNER_SORTS = ("name", "status", "last_heartbeat_at")


class RegisterIn(Body):
    name: str
    capabilities: Any = None
    labels: list[str] = Field(default_factory=list)
    max_concurrent: int = 1


class RegisterOut(BaseModel):
    runner: shapes.Runner
    token: str


class RunnerOut(BaseModel):
    runner: shapes.Runner


class RunnerListOut(BaseModel):
    runners: list[shapes.Runner]
    total: int
    online_total: int


class RunnerPatchIn(Body):
    name: str | None = None
    labels: list[str] | None = None
    max_concurrent: int | None = None
    draining: bool | None = None


class EnrollmentIn(Body):
    label: str | None = None  # without one, the labels name the token
    labels: list[str] = Field(default_factory=list)
    max_uses: int | None = None
    ttl_seconds: int | None = None


class EnrollmentOut(BaseModel):
    enrollment_token: shapes.EnrollmentToken
    token: str


class EnrollmentListOut(BaseModel):
    tokens: list[shapes.EnrollmentToken]
    total: int


class EnrollmentRevokedOut(BaseModel):
    revoked: Literal[True]
    enrollment_token: shapes.EnrollmentToken


class ClaimAnswer(BaseModel):
    """The claimed job, or ``{}`` when none came."""

    job: shapes.Job | None = None


class JobStatusAnswer(BaseModel):
    build: shapes.Build
    events: list[shapes.BuildEvent]


# -- user side -------------------------------------------------------------------------


@blueprint.post("/v1/runners/register")
@security_scheme([{"bearer": []}])
@json_body(RegisterIn)
@document_response(RegisterOut)
async def register(body: RegisterIn) -> Response:
    """Register a runner with an owner/admin session or an enrollment token; token shown once."""
    registration = await services().runners.register(
        request.headers.get("Authorization"),
        name=body.name,
        capabilities=body.capabilities,
        labels=body.labels,
        max_concurrent=body.max_concurrent,
    )
    return jsonify({"runner": registration.runner.to_json(), "token": registration.token})


@blueprint.get("/v1/runners")
@security_scheme([{"bearer": []}])
@document_response(RunnerListOut)
@query(
    text("q", "Only runners whose name contains this"),
    text("sort", f"Sort key: {', '.join(RUNNER_SORTS)} (anything else: created_at)"),
    text("direction", "asc, or anything else for descending"),
    integer("limit", "At most this many (default 20, counted within 1..100)"),
    integer("offset", "Skip this many (default 0; negative counts as 0)"),
)
async def list_runners() -> Response:
    """Runners, with how many are online or busy."""
    session = await require_session()
    return jsonify(await runner_list(services(), session, current_query()))


async def runner_list(app: AppServices, session: Session, args: QueryArgs) -> dict[str, Any]:
    """The answer of ``GET /v1/runners`` (also served by the lean listener)."""
    limit = args.number("limit")
    page = await app.runners.page(
        session,
        q=args.text("q"),
        sort=sort if (sort := args.text("sort")) in RUNNER_SORTS and sort else "created_at",
        descending=args.text("direction") != "asc",
        limit=20 if limit is None else max(1, min(limit, 100)),
        offset=max(0, args.number("offset") or 0),
    )
    return {
        "runners": [runner.to_json() for runner in page.runners],
        "total": page.total,
        "online_total": page.online_total,
    }


@blueprint.get("/v1/runners/<runner_id>")
@security_scheme([{"bearer": []}])
@document_response(RunnerOut)
async def get_runner(runner_id: str) -> Response:
    """One runner."""
    session = await require_session()
    runner = await services().runners.get(session, runner_id)
    return jsonify({"runner": runner.to_json()})


@blueprint.patch("/v1/runners/<runner_id>")
@security_scheme([{"bearer": []}])
@json_body(RunnerPatchIn)
@document_response(RunnerOut)
@errors(Conflict("managed_runner_locked"))
async def patch_runner(runner_id: str, body: RunnerPatchIn) -> Response:
    """Rename a runner, change its labels or capacity, or drain it."""
    session = await require_session()
    if body.model_dump(exclude_none=True) == {}:
        raise InvalidInput("invalid_input", "Nothing to change: give name, labels, ...")
    runner = await services().runners.update(
        session,
        runner_id,
        name=body.name,
        labels=body.labels,
        max_concurrent=body.max_concurrent,
        draining=body.draining,
    )
    return jsonify({"runner": runner.to_json()})


@blueprint.post("/v1/runners/<runner_id>/drain")
@security_scheme([{"bearer": []}])
@document_response(RunnerOut)
async def drain(runner_id: str) -> Response:
    """Stop giving the runner new builds; it finishes the ones it has."""
    session = await require_session()
    runner = await services().runners.update(
        session, runner_id, name=None, labels=None, max_concurrent=None, draining=True
    )
    return jsonify({"runner": runner.to_json()})


@blueprint.post("/v1/runners/<runner_id>/undrain")
@security_scheme([{"bearer": []}])
@document_response(RunnerOut)
async def undrain(runner_id: str) -> Response:
    """Give the runner new builds again."""
    session = await require_session()
    runner = await services().runners.update(
        session, runner_id, name=None, labels=None, max_concurrent=None, draining=False
    )
    return jsonify({"runner": runner.to_json()})


@blueprint.delete("/v1/runners/<runner_id>")
@security_scheme([{"bearer": []}])
@no_content
@errors(Conflict("runner_has_builds"), Conflict("managed_runner_locked"))
async def delete_runner(runner_id: str) -> None:
    """Delete a runner; 409 ``runner_has_builds`` while it holds builds (drain it first).

    The builds it ran keep its id (``last_runner_id``) and name (``context.runner_name``).
    """
    session = await require_session()
    await services().runners.delete(session, runner_id)


@blueprint.post("/v1/runner-enrollment-tokens")
@security_scheme([{"bearer": []}])
@json_body(EnrollmentIn)
@document_response(EnrollmentOut, 201)
async def create_enrollment_token(body: EnrollmentIn) -> tuple[Response, int]:
    """A token runners can register with (optional TTL, use limit and labels); shown once."""
    session = await require_session()
    created, token = await services().runners.create_enrollment_token(
        session,
        label=body.label,
        labels=body.labels,
        max_uses=body.max_uses,
        ttl_seconds=body.ttl_seconds,
    )
    return jsonify({"enrollment_token": created.to_json(), "token": token}), 201


@blueprint.get("/v1/runner-enrollment-tokens")
@security_scheme([{"bearer": []}])
@document_response(EnrollmentListOut)
async def list_enrollment_tokens() -> Response:
    """Every enrollment token (never the token itself)."""
    session = await require_session()
    tokens = await services().runners.enrollment_tokens(session)
    return jsonify({"tokens": [token.to_json() for token in tokens], "total": len(tokens)})


@blueprint.delete("/v1/runner-enrollment-tokens/<token_id>")
@security_scheme([{"bearer": []}])
@document_response(EnrollmentRevokedOut)
async def revoke_enrollment_token(token_id: str) -> Response:
    """Revoke an enrollment token; runners registered with it keep working."""
    session = await require_session()
    revoked = await services().runners.revoke_enrollment_token(session, token_id)
    return jsonify({"revoked": True, "enrollment_token": revoked.to_json()})


# -- runner side -------------------------------------------------------------------------
#
# The operations, their bodies and replies are those of oore/protocol/runner.py; what each
# does is oore/http/runner_ops.py, shared with the runner channel.


def _ops() -> RunnerOps:
    app = services()
    return RunnerOps(app.runners, app.builds, app.logs)


async def _perform(
    runner_id: str, op: protocol.Op, body: protocol.Request, build_id: str | None = None
) -> dict[str, Any]:
    return await _ops().perform(await require_runner(runner_id), op, build_id, body)


@blueprint.post("/v1/runners/<runner_id>/heartbeat")
@security_scheme([{"bearer": []}])
@json_body(HeartbeatIn)
@no_content
async def heartbeat(runner_id: str, body: HeartbeatIn) -> None:
    """Report the runner's status; renews the leases of its builds."""
    await _perform(runner_id, protocol.HEARTBEAT, body)


@blueprint.post("/v1/runners/<runner_id>/claim")
@security_scheme([{"bearer": []}])
@json_body(ClaimIn)
@document_response(ClaimAnswer)
@errors(Conflict("dispatcher_restarting"), Conflict("runner_protocol_mismatch"))
async def claim(runner_id: str, body: ClaimIn) -> Response:
    """The oldest eligible build, or ``{}``; ``wait_seconds`` (≤ 60) long-polls for one."""
    return jsonify(await _perform(runner_id, protocol.CLAIM, body))


@blueprint.get("/v1/runners/<runner_id>/jobs/<build_id>")
@security_scheme([{"bearer": []}])
@document_response(JobStateOut)
@query(
    integer(
        "wait_seconds",
        "Answer as soon as the status changes, waiting at most this long (default 0)",
        minimum=0,
        maximum=MAX_WAIT_SECONDS,
    )
)
async def job_state(runner_id: str, build_id: str) -> Response:
    """The build's status; ``wait_seconds`` (≤ 60) answers as soon as it changes."""
    runner = await require_runner(runner_id)
    body = JobStateIn(wait_seconds=query_int("wait_seconds") or 0)
    return jsonify(await _ops().perform(runner, protocol.JOB_STATE, build_id, body))


@blueprint.post("/v1/runners/<runner_id>/jobs/<build_id>/status")
@security_scheme([{"bearer": []}])
@json_body(JobStatusIn)
@document_response(JobStatusAnswer)
@errors(Conflict("invalid_transition"), Conflict("concurrent_modification"))
async def job_status(runner_id: str, build_id: str, body: JobStatusIn) -> Response:
    """Report running, succeeded or failed, with the exit code and per-step results."""
    return jsonify(await _perform(runner_id, protocol.JOB_STATUS, body, build_id))


@blueprint.post("/v1/runners/<runner_id>/jobs/<build_id>/logs")
@security_scheme([{"bearer": []}])
@json_body(LogsIn)
@document_response(AppendedOut)
@errors(ServiceUnavailable("log_stream_unavailable"), ServiceUnavailable("shutting_down"))
async def job_logs(runner_id: str, build_id: str, body: LogsIn) -> Response:
    """Append log lines; sequences the build already has are ignored."""
    return jsonify(await _perform(runner_id, protocol.LOGS, body, build_id))
