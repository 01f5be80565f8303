"""The runner channel: one WebSocket per runner for its heartbeats, claims, job-state polls,
status reports and log batches, without an HTTP request each (the HTTP routes stay).

``GET /v1/runners/<runner_id>/channel`` authenticates the upgrade like the HTTP runner
routes; a refusal is answered as a plain HTTP error before the upgrade is accepted.
Then each text frame is one request ``{"id": <int>, "op": <op>, ...fields}`` where the
fields are those of the matching HTTP body (plus ``build_id`` for the job ops), and each
reply is ``{"id", "ok": true, ...answer}`` or ``{"id", "ok": false, "status", "code",
"error", "details"?}`` with the status and code the HTTP call would get. Requests run
concurrently (at most :data:`MAX_IN_FLIGHT`; beyond that the channel stops reading), so
replies may come in any order. Every request authenticates again (from the runner cache);
a runner deleted meanwhile gets its 401 and the channel is closed (1008).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import trio
from quart import Blueprint, websocket

from oore.domain.runners import Runner
from oore.errors import ApiError, InternalError, InvalidRequest, Unauthorized
from oore.http.body import decode_untrusted, validate_body
from oore.http.context import services
from oore.http.routes.runners import (
    ClaimIn,
    HeartbeatIn,
    JobStateIn,
    JobStatusIn,
    LogsIn,
    claim_reply,
    heartbeat_reply,
    job_state_reply,
    job_status_reply,
    logs_reply,
)
from oore.services.runners import Runners

log = logging.getLogger(__name__)

blueprint = Blueprint("runner_channel", __name__)

# Hypercorn closes the channel (1009) on a bigger frame; the daemon configures it so.
MAX_MESSAGE = 2 * 1024 * 1024
MAX_IN_FLIGHT = 64
CLOSE_POLICY_VIOLATION = 1008
CLOSE_GOING_AWAY = 1001


@blueprint.websocket("/v1/runners/<runner_id>/channel")
async def channel(runner_id: str) -> None:
    """Authenticate the upgrade (401/403 as HTTP answers), then serve the runner's frames."""
    authorization = websocket.headers.get("Authorization")
    runners = services().runners
    await runners.authenticate(authorization, runner_id)
    await websocket.accept()
    await RunnerChannel(runners, runner_id, authorization).serve()


class RunnerChannel:
    """One accepted channel: reads frames and answers each in a task of its own nursery."""

    def __init__(self, runners: Runners, runner_id: str, authorization: str | None) -> None:
        self._runners = runners
        self._runner_id = runner_id
        self._authorization = authorization
        self._slots = trio.Semaphore(MAX_IN_FLIGHT)
        self._closed = False

    async def serve(self) -> None:
        """Until the runner disconnects or is refused; never more than MAX_IN_FLIGHT at once."""
        async with trio.open_nursery() as nursery:
            # Reading ends when the daemon begins to stop; the requests in flight then
            # answer at once (their long polls are cut short too).
            with self._runners.long_poll():
                while not self._closed:
                    await self._slots.acquire()
                    try:
                        frame = await websocket.receive()
                    except BaseException:
                        self._slots.release()
                        raise
                    nursery.start_soon(self._answer, frame, nursery.cancel_scope)
        if not self._closed:
            self._closed = True
            await websocket.close(CLOSE_GOING_AWAY, "the server is stopping")

    async def _answer(self, frame: str | bytes, scope: trio.CancelScope) -> None:
        request_id: int | None = None
        try:
            fields = await _fields(frame)
            request_id = _request_id(fields)
            reply = await self._dispatch(fields.pop("op", None), fields)
            await self._send({"id": request_id, "ok": True, **reply})
        except Unauthorized as error:
            # The runner's token is gone (deleted runner): say so, then end the channel.
            await self._send(_error_reply(request_id, error))
            await self._close(scope)
        except ApiError as error:
            await self._send(_error_reply(request_id, error))
        except Exception:
            log.exception("runner channel request failed (runner %s)", self._runner_id)
            await self._send(_error_reply(request_id, InternalError()))
        finally:
            self._slots.release()

    async def _dispatch(self, op: object, fields: dict[str, Any]) -> dict[str, Any]:
        """Decode the fields as the HTTP route would, authenticate, then answer."""
        match op:
            case "heartbeat":
                heartbeat = validate_body(HeartbeatIn, fields)
                return await heartbeat_reply(await self._runner(), heartbeat)
            case "claim":
                claim = validate_body(ClaimIn, fields)
                return await claim_reply(await self._runner(), claim)
            case "job_state":
                build_id = _build_id(fields)
                state = validate_body(JobStateIn, fields)
                return await job_state_reply(await self._runner(), build_id, state)
            case "job_status":
                build_id = _build_id(fields)
                status = validate_body(JobStatusIn, fields)
                return await job_status_reply(await self._runner(), build_id, status)
            case "logs":
                build_id = _build_id(fields)
                logs = validate_body(LogsIn, fields)
                return await logs_reply(await self._runner(), build_id, logs)
            case str():
                raise InvalidRequest(details=f"op: unknown operation {op!r}")
            case _:
                raise InvalidRequest(details="op: a string is required")

    async def _runner(self) -> Runner:
        """Authenticate again (served from the runner cache; renews the runner's lease)."""
        return await self._runners.authenticate(self._authorization, self._runner_id)

    async def _send(self, reply: dict[str, Any]) -> None:
        if not self._closed:
            await websocket.send(json.dumps(reply, separators=(",", ":")))

    async def _close(self, scope: trio.CancelScope) -> None:
        if not self._closed:
            self._closed = True
            await websocket.close(CLOSE_POLICY_VIOLATION, "runner token no longer valid")
        scope.cancel()


async def _fields(frame: str | bytes) -> dict[str, Any]:
    """The frame's JSON object; 400 ``invalid_request`` when it is not one."""
    data = await decode_untrusted(frame, what="frame")
    if not isinstance(data, dict):
        raise InvalidRequest(details="frame is not a JSON object")
    return data


def _request_id(fields: dict[str, Any]) -> int:
    request_id = fields.pop("id", None)
    if not isinstance(request_id, int) or isinstance(request_id, bool):
        raise InvalidRequest(details="id: an integer is required")
    return request_id


def _build_id(fields: dict[str, Any]) -> str:
    build_id = fields.pop("build_id", None)
    if not isinstance(build_id, str) or not build_id:
        raise InvalidRequest(details="build_id: a string is required")
    return build_id


def _error_reply(request_id: int | None, error: ApiError) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "status": error.status, **error.to_json()}
