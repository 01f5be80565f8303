"""The runner operations, performed: each operation of :mod:`oore.protocol.runner` mapped
to the service call that answers it, once, for the HTTP routes and the runner channel.

:func:`perform` takes the request already validated as the operation's type and the
runner already authenticated, and answers the reply's JSON (``{}`` for a claim that found
nothing, as over HTTP).
"""

from __future__ import annotations

from typing import Any

from oore.domain.builds import StepResult
from oore.domain.logs import LogLine
from oore.domain.runners import Runner
from oore.errors import InvalidRequest
from oore.http.body import validate_body
from oore.protocol import runner as protocol
from oore.services.builds import Builds
from oore.services.logs import Logs
from oore.services.runners import Runners


class RunnerOps:
    """The services the runner operations call."""

    def __init__(self, runners: Runners, builds: Builds, logs: Logs) -> None:
        self.runners = runners
        self._builds = builds
        self._logs = logs

    def request(self, op: protocol.Op, fields: Any) -> protocol.Request:
        """``fields`` as ``op``'s request; 400 ``invalid_request`` naming the first fault."""
        return validate_body(op.request, fields)

    async def perform(
        self, runner: Runner, op: protocol.Op, build_id: str | None, body: protocol.Request
    ) -> dict[str, Any]:
        """Answer ``op`` for ``runner``; the reply's JSON."""
        match body:
            case protocol.HeartbeatIn():
                await self.runners.heartbeat(runner, body.status, body.capabilities)
                return {}
            case protocol.ClaimIn():
                job = await self.runners.claim(runner, body.protocol_version, body.wait_seconds)
                return {} if job is None else {"job": job.to_json()}
            case protocol.JobStateIn():
                status = await self._builds.job_state(
                    runner, _build(op, build_id), body.wait_seconds
                )
                return {"status": status.value}
            case protocol.JobStatusIn():
                build, events = await self._builds.report(
                    runner,
                    _build(op, build_id),
                    status=body.status,
                    exit_code=body.exit_code,
                    error_message=body.error_message,
                    steps=None if body.steps is None else [_step(s) for s in body.steps],
                )
                return {"build": build.to_json(), "events": [e.to_json() for e in events]}
            case protocol.LogsIn():
                lines = [
                    LogLine(c.sequence, c.content, c.stream, step=c.step, step_name=c.step_name)
                    for c in body.chunks
                ]
                appended = await self._logs.append(
                    runner, _build(op, build_id), lines, attempt=body.attempt
                )
                return {"appended": appended}
        raise InvalidRequest(details=f"op: unknown operation {op.name!r}")


def _build(op: protocol.Op, build_id: str | None) -> str:
    if build_id is None:
        raise InvalidRequest(details=f"build_id: {op.name} needs one")
    return build_id


def _step(step: protocol.StepIn) -> StepResult:
    return StepResult(
        name=step.name,
        status=step.status,
        started_at=step.started_at,
        finished_at=step.finished_at,
        duration_ms=step.duration_ms,
        exit_code=step.exit_code,
    )
