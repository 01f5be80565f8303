"""The runner side of the runner protocol (contract §5, §6.1): an HTTP client on httpx.

    RunnerError                     anything a call can fail with
     ├── ConnectionFailed           no answer: refused, reset, timed out (retry later)
     ├── ProtocolError              an answer that is not what the protocol promises (retry)
     └── ServerError(status, code)  the server answered with its error envelope
                                    (retryable when 5xx, 408 or 429)

Every call has a total deadline: ``timeout`` seconds, or a long-poll's wait plus
:data:`LONG_POLL_MARGIN`. A client may be given several URLs of one installation
(:class:`~oore.runner.servers.Servers`): a call that gets no answer moves the client on to
the next, so the caller's retry goes there.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
import trio

from oore.domain.builds import StepResult
from oore.domain.signing import SIGNING_TOKEN_HEADER, AndroidSigningMaterial, parse_android_material
from oore.domain.variables import BuildVariable, parse_build_variables
from oore.protocol import runner as protocol
from oore.protocol.runner import (
    MAX_WAIT_SECONDS,
    PROTOCOL_VERSION,
    ReportStatus,
    RunnerStatus,
    Stream,
)
from oore.runner.servers import Server, Servers

__all__ = ["MAX_WAIT_SECONDS", "PROTOCOL_VERSION", "ReportStatus", "RunnerStatus", "Stream"]

DEFAULT_TIMEOUT = 30.0
LONG_POLL_MARGIN = 10.0
# An upload has no total deadline (it may be large); each step of it has this one.
UPLOAD_STEP_TIMEOUT = 60.0
LOCAL_UPLOAD_PATH = "/v1/artifacts/local-upload/"

T = TypeVar("T")


class RunnerError(Exception):
    """A runner-protocol call failed."""


class ConnectionFailed(RunnerError):
    """The server could not be reached or did not answer in time."""


class ProtocolError(RunnerError):
    """The server answered, but not with what the protocol promises."""


class ServerError(RunnerError):
    """The server answered with an error: HTTP status, machine code, human message, and
    the envelope's ``details`` when it has them."""

    def __init__(self, status: int, code: str, message: str, details: str | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        super().__init__(f"{status} {code}: {message}")

    @property
    def retryable(self) -> bool:
        """A server-side or transient failure that may pass if the call is repeated."""
        return self.status >= 500 or self.status in (408, 429)


def retryable(exc: BaseException) -> bool:
    """Whether repeating the call that raised ``exc`` may succeed."""
    if isinstance(exc, ServerError):
        return exc.retryable
    return isinstance(exc, ConnectionFailed | ProtocolError)


@dataclass(frozen=True)
class RunnerCredentials:
    """Who the runner is: its id and its 64-hex token (shown once, at registration)."""

    runner_id: str
    token: str


@dataclass(frozen=True)
class Registration:
    credentials: RunnerCredentials
    runner: dict[str, Any]


@dataclass(frozen=True)
class Job:
    """A claimed build (contract §5.4)."""

    build_id: str
    project_id: str
    pipeline_id: str
    build_number: int
    config_snapshot: dict[str, Any]
    lease_expires_at: int
    signing_token: str
    commit_sha: str | None = None
    branch: str | None = None
    attempt: int | None = None
    # Server-side variables and secrets, in clear: kept in memory for this build only.
    variables: tuple[BuildVariable, ...] = field(default=(), repr=False)
    # The pipeline has Android signing enabled: fetch it with the signing token.
    android_signing: bool = False

    @classmethod
    def from_json(cls, data: object) -> Job:
        """Read the ``job`` object of a claim answer; ProtocolError when it is malformed."""
        if not isinstance(data, dict):
            raise ProtocolError("claim answer: job is not an object")
        snapshot = data.get("config_snapshot")
        if not isinstance(snapshot, dict):
            raise ProtocolError("claim answer: job.config_snapshot is not an object")
        variables = parse_build_variables(data.get("variables", []))
        if variables is None:
            raise ProtocolError("claim answer: job.variables is malformed")
        signing = data.get("signing") or {}
        if not isinstance(signing, dict):
            raise ProtocolError("claim answer: job.signing is not an object")
        return cls(
            build_id=_field(data, "build_id", str),
            project_id=_field(data, "project_id", str),
            pipeline_id=_field(data, "pipeline_id", str),
            build_number=_field(data, "build_number", int),
            config_snapshot=snapshot,
            lease_expires_at=_field(data, "lease_expires_at", int),
            signing_token=_field(data, "signing_token", str),
            commit_sha=_optional(data, "commit_sha", str),
            branch=_optional(data, "branch", str),
            attempt=_optional(data, "attempt", int),
            variables=variables,
            android_signing=signing.get("android") is True,
        )


def _field(data: Mapping[str, object], key: str, kind: type[T]) -> T:
    value = data.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ProtocolError(f"claim answer: job.{key} is missing or not a {kind.__name__}")
    return value


def _optional(data: Mapping[str, object], key: str, kind: type[T]) -> T | None:
    return None if data.get(key) is None else _field(data, key, kind)


@dataclass(frozen=True)
class LogChunk:
    """One log line of a build; ``sequence`` orders the build's lines (from 0)."""

    sequence: int
    content: str
    stream: Stream
    # The step that printed it (its position among the reported steps, from 0, and its
    # name); None outside any step.
    step: int | None = None
    step_name: str | None = None

    def to_json(self, *, with_step: bool = True) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "sequence": self.sequence,
            "content": self.content,
            "stream": self.stream,
        }
        if with_step and self.step is not None:
            fields["step"] = self.step
            if self.step_name is not None:
                fields["step_name"] = self.step_name
        return fields


@dataclass(frozen=True)
class Reservation:
    """An artifact reservation (contract §6.5): where to PUT the bytes.

    ``upload_url`` is empty when the server already has the bytes (``state`` is
    ``available``) or keeps no artifacts (``state`` is ``pending``).
    """

    artifact_id: str
    state: str
    upload_url: str


class RunnerOperations:
    """The runner-loop calls of :mod:`oore.protocol.runner`, written once over
    :meth:`_perform`, which a transport provides (HTTP here, the runner channel in
    oore/runner/channel.py)."""

    async def _perform(
        self,
        op: protocol.Op,
        fields: dict[str, Any],
        *,
        build_id: str | None = None,
        limit: float | None = None,
    ) -> dict[str, Any]:
        """Send ``op`` with ``fields``; the reply's JSON object. ``limit``: its deadline."""
        raise NotImplementedError

    async def heartbeat(
        self, status: RunnerStatus, capabilities: Mapping[str, Any] | None = None
    ) -> None:
        caps = dict(capabilities) if capabilities else None
        await self._perform(protocol.HEARTBEAT, protocol.heartbeat_fields(status, caps))

    async def claim(self, wait_seconds: int = 0) -> Job | None:
        """The next build for this runner, or None after ``wait_seconds`` (0..60) without one."""
        wait = check_wait(wait_seconds)
        fields = protocol.claim_fields(wait)
        return job_of(await self._perform(protocol.CLAIM, fields, limit=wait + LONG_POLL_MARGIN))

    async def job_state(self, build_id: str, wait_seconds: int = 0) -> str:
        """The build's status, answered as soon as it changes or after ``wait_seconds``.

        A 403 ``runner_mismatch`` (raised as :class:`ServerError`) means the build is no
        longer this runner's: it was canceled, timed out or requeued. When it ended while
        this runner held it, the error's ``details`` is the status it ended in.
        """
        wait = check_wait(wait_seconds)
        answer = await self._perform(
            protocol.JOB_STATE,
            protocol.job_state_fields(wait),
            build_id=build_id,
            limit=wait + LONG_POLL_MARGIN,
        )
        return status_of(answer)

    async def report(
        self,
        build_id: str,
        status: ReportStatus,
        exit_code: int | None = None,
        error_message: str | None = None,
        steps: Sequence[StepResult] | None = None,
    ) -> dict[str, Any]:
        """Report ``running``, ``succeeded`` or ``failed``; answers the build as stored."""
        step_fields = [step.to_json() for step in steps] if steps else None
        fields = protocol.job_status_fields(status, exit_code, error_message, step_fields)
        return build_of(await self._perform(protocol.JOB_STATUS, fields, build_id=build_id))

    async def append_logs(
        self, build_id: str, chunks: Sequence[LogChunk], attempt: int | None = None
    ) -> int:
        """Append log lines; answers how many were new (the server ignores known sequences).

        ``attempt`` (from the claim, when the server gave one) lets the server refuse the
        lines once this attempt of the build is over, even if this runner holds it again.
        """
        # A server that names attempts at the claim is an oore one, which takes each
        # line's step too; oored's would refuse a field it does not know.
        with_step = attempt is not None
        fields = protocol.logs_fields(
            [chunk.to_json(with_step=with_step) for chunk in chunks], attempt
        )
        return appended_of(await self._perform(protocol.LOGS, fields, build_id=build_id))

    def keep_alive(self, every: float) -> None:
        """How often a held connection should show the server this runner is alive (a
        transport without one has nothing to do)."""

    @property
    def holds_a_connection(self) -> bool:
        """Whether an open connection keeps this runner's lease (then heartbeats need only
        carry status changes)."""
        return False


class RunnerClient(RunnerOperations):
    """The calls a runner makes, each bounded by a deadline, mapped to typed results.

    Use as ``async with RunnerClient(url) as client``. Calls other than :meth:`register`
    need credentials: pass them here, set :attr:`credentials`, or register. Given
    :class:`~oore.runner.servers.Servers`, each call goes to the one in use.
    """

    def __init__(
        self,
        server: str | Servers,
        *,
        credentials: RunnerCredentials | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.servers = server if isinstance(server, Servers) else Servers([server])
        self.credentials = credentials
        self._timeout = timeout
        self._http = httpx.AsyncClient(transport=transport)

    @property
    def server_url(self) -> str:
        """The URL calls go to now."""
        return self.servers.current.url

    async def __aenter__(self) -> RunnerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- calls ------------------------------------------------------------------------------

    async def register(
        self,
        name: str,
        labels: Sequence[str],
        max_concurrent: int,
        capabilities: Mapping[str, Any],
        credential: str,
    ) -> Registration:
        """Register with a user session/API token or an enrollment token; adopt the result."""
        body = {
            "name": name,
            "capabilities": dict(capabilities),
            "labels": list(labels),
            "max_concurrent": max_concurrent,
        }
        answer = _object(await self._call("POST", "/v1/runners/register", credential, json=body))
        runner = answer.get("runner")
        token = answer.get("token")
        if not isinstance(runner, dict) or not isinstance(runner.get("id"), str):
            raise ProtocolError("register answer lacks runner.id")
        if not isinstance(token, str) or not token:
            raise ProtocolError("register answer lacks the runner token")
        self.credentials = RunnerCredentials(runner["id"], token)
        return Registration(self.credentials, runner)

    async def reserve_artifact(
        self,
        build_id: str,
        *,
        name: str,
        artifact_type: str,
        file_size: int,
        checksum: str,
        metadata: Mapping[str, Any] | None = None,
    ) -> Reservation:
        """Reserve an upload of one artifact of the build."""
        body: dict[str, Any] = {
            "name": name,
            "artifact_type": artifact_type,
            "file_size": file_size,
            "checksum": checksum,
        }
        if metadata is not None:
            body["metadata"] = dict(metadata)
        answer = _object(
            await self._runner_call("POST", f"jobs/{quote(build_id, safe='')}/artifacts", json=body)
        )
        artifact = answer.get("artifact")
        url = answer.get("upload_url")
        if not isinstance(artifact, dict) or not isinstance(artifact.get("id"), str):
            raise ProtocolError("reservation answer lacks artifact.id")
        if not isinstance(url, str):
            raise ProtocolError("reservation answer lacks upload_url")
        return Reservation(artifact["id"], str(artifact.get("state", "")), url)

    async def complete_artifact(self, build_id: str, artifact_id: str) -> None:
        """The bytes are uploaded: the artifact becomes available."""
        await self._runner_call(
            "POST",
            f"jobs/{quote(build_id, safe='')}/artifacts/{quote(artifact_id, safe='')}/complete",
            json={},
        )

    async def abort_artifact(self, build_id: str, artifact_id: str, error_message: str) -> None:
        """The upload failed; the server marks the artifact failed with ``error_message``."""
        await self._runner_call(
            "POST",
            f"jobs/{quote(build_id, safe='')}/artifacts/{quote(artifact_id, safe='')}/abort",
            json={"error_message": error_message},
        )

    async def android_signing(
        self, build_id: str, signing_token: str
    ) -> list[AndroidSigningMaterial]:
        """The enabled Android signing profiles of a build this runner holds, in clear."""
        response = await self._runner_call(
            "GET",
            f"jobs/{quote(build_id, safe='')}/android-signing",
            headers={SIGNING_TOKEN_HEADER: signing_token},
        )
        found = parse_android_material(_object(response))
        if found is None:
            raise ProtocolError("android-signing answer is malformed")
        return found

    def upload_target(self, upload_url: str) -> str:
        """Where to PUT: a local-storage URL goes to this runner's own server (the one it
        reaches), whatever base the server wrote into it; other URLs are used as given."""
        return self._upload_target(upload_url, self.servers.current)[0]

    def _upload_target(self, upload_url: str, server: Server) -> tuple[str, bool]:
        """The URL to PUT to, and whether it is ``server``'s."""
        parts = urlsplit(upload_url)
        if parts.path.startswith(LOCAL_UPLOAD_PATH):
            return f"{server.url}{parts.path}", True
        return upload_url, False

    async def upload(self, upload_url: str, body: AsyncIterable[bytes], size: int) -> None:
        """PUT ``size`` bytes from ``body`` to an upload URL, streamed, with Content-Length.

        No Authorization header: the URL itself is the credential (a local upload token
        or a presigned S3 URL). Each network step is bounded, the whole upload is not.
        """
        server = self.servers.current
        url, ours = self._upload_target(upload_url, server)
        try:
            response = await self._http.request(
                "PUT",
                url,
                content=body,
                headers={
                    "Content-Length": str(size),
                    "Content-Type": "application/octet-stream",
                },
                timeout=httpx.Timeout(UPLOAD_STEP_TIMEOUT),
            )
        except httpx.TransportError as exc:
            detail = str(exc) or "no answer in time"
            failed = ConnectionFailed(f"PUT {urlsplit(url).path}: {type(exc).__name__}: {detail}")
            if ours:
                self.servers.unreachable(server, failed)
            raise failed from exc
        if response.status_code >= 400:
            raise _server_error(response)

    # -- transport --------------------------------------------------------------------------

    async def _perform(
        self,
        op: protocol.Op,
        fields: dict[str, Any],
        *,
        build_id: str | None = None,
        limit: float | None = None,
    ) -> dict[str, Any]:
        """``op`` as its HTTP route: the fields as the JSON body, or the query of a GET."""
        action = op.route(None if build_id is None else quote(build_id, safe=""))
        if op.method == "GET":
            response = await self._runner_call(op.method, action, params=fields, limit=limit)
        else:
            response = await self._runner_call(op.method, action, json=fields, limit=limit)
        return _object(response)

    async def _runner_call(
        self,
        method: str,
        action: str,
        *,
        json: object = None,
        params: Mapping[str, Any] | None = None,
        limit: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        if self.credentials is None:
            raise RuntimeError("RunnerClient has no runner credentials; register first")
        runner = quote(self.credentials.runner_id, safe="")
        return await self._call(
            method,
            f"/v1/runners/{runner}/{action}",
            self.credentials.token,
            json=json,
            params=params,
            limit=limit,
            headers=headers,
        )

    async def _call(
        self,
        method: str,
        path: str,
        bearer: str,
        *,
        json: object = None,
        params: Mapping[str, Any] | None = None,
        limit: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        seconds = self._timeout if limit is None else limit
        server = self.servers.current
        try:
            with trio.fail_after(seconds):
                response = await self._http.request(
                    method,
                    f"{server.url}{path}",
                    json=json,
                    params=params,
                    headers={**(headers or {}), "Authorization": f"Bearer {bearer}"},
                    timeout=seconds,
                )
        except (httpx.TransportError, trio.TooSlowError) as exc:
            detail = str(exc) or "no answer in time"
            failed = ConnectionFailed(
                f"{method} {server.url}{path}: {type(exc).__name__}: {detail}"
            )
            self.servers.unreachable(server, failed)
            raise failed from exc
        if response.status_code >= 400:
            raise _server_error(response)
        return response


# -- answers of the runner-loop calls ----------------------------------------------------------


def check_wait(wait_seconds: int) -> int:
    """A long-poll's ``wait_seconds``; ValueError outside 0..60."""
    if not 0 <= wait_seconds <= MAX_WAIT_SECONDS:
        raise ValueError(f"wait_seconds must be 0..{MAX_WAIT_SECONDS}, got {wait_seconds}")
    return wait_seconds


def job_of(answer: Mapping[str, Any]) -> Job | None:
    """The job of a claim answer, None for ``{}``."""
    job = answer.get("job")
    return None if job is None else Job.from_json(job)


def status_of(answer: Mapping[str, Any]) -> str:
    status = answer.get("status")
    if not isinstance(status, str):
        raise ProtocolError("job state answer lacks status")
    return status


def build_of(answer: Mapping[str, Any]) -> dict[str, Any]:
    build = answer.get("build")
    return build if isinstance(build, dict) else {}


def appended_of(answer: Mapping[str, Any]) -> int:
    appended = answer.get("appended")
    if not isinstance(appended, int):
        raise ProtocolError("log append answer lacks appended")
    return appended


def _object(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a 2xx answer (``{}`` for an empty body)."""
    if not response.content:
        return {}
    try:
        data = response.json()
    except ValueError as exc:
        raise ProtocolError(f"{response.status_code} answer is not JSON") from exc
    if not isinstance(data, dict):
        raise ProtocolError(f"{response.status_code} answer is not a JSON object")
    return data


def _server_error(response: httpx.Response) -> ServerError:
    code, message = f"http_{response.status_code}", response.reason_phrase or "error"
    details = None
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        if isinstance(data.get("code"), str):
            code = data["code"]
        if isinstance(data.get("error"), str):
            message = data["error"]
        if isinstance(data.get("details"), str):
            details = data["details"]
    elif response.text.strip():
        message = response.text.strip()[:200]
    return ServerError(response.status_code, code, message, details)
