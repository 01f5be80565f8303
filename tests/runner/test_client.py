"""What the client sends and how it reads answers and failures."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from oore.domain.builds import StepResult
from oore.runner.client import (
    ConnectionFailed,
    LogChunk,
    ProtocolError,
    RunnerClient,
    RunnerCredentials,
    ServerError,
    retryable,
)

CREDENTIALS = RunnerCredentials("r1", "t" * 64)


def answering(
    status: int, body: object = None, seen: list[httpx.Request] | None = None
) -> RunnerClient:
    async def handle(request: httpx.Request) -> httpx.Response:
        await request.aread()
        if seen is not None:
            seen.append(request)
        if body is None:
            return httpx.Response(status)
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    return RunnerClient(
        "http://oore.test/", credentials=CREDENTIALS, transport=httpx.MockTransport(handle)
    )


async def test_calls_carry_the_runner_token_and_the_protocol_shapes() -> None:
    seen: list[httpx.Request] = []
    async with answering(200, {"status": "running"}, seen) as client:
        assert await client.claim(30) is None
        assert await client.job_state("b/1", 20) == "running"
        await client.report(
            "b1",
            "failed",
            exit_code=2,
            error_message="boom",
            steps=[StepResult("s", "failed", 10, 11, 1000, 2)],
        )
    claim, state, report = seen
    assert claim.headers["Authorization"] == f"Bearer {CREDENTIALS.token}"
    assert claim.url.path == "/v1/runners/r1/claim"
    assert json.loads(claim.content) == {"protocol_version": 4, "wait_seconds": 30}
    assert state.url.raw_path == b"/v1/runners/r1/jobs/b%2F1?wait_seconds=20"
    assert json.loads(report.content) == {
        "status": "failed",
        "exit_code": 2,
        "error_message": "boom",
        "steps": [
            {
                "name": "s",
                "status": "failed",
                "exit_code": 2,
                "started_at": 10,
                "finished_at": 11,
                "duration_ms": 1000,
            }
        ],
    }


async def test_register_uses_the_given_credential_and_adopts_the_runner_token() -> None:
    seen: list[httpx.Request] = []
    answer = {"runner": {"id": "r9", "name": "mac"}, "token": "k" * 64}
    client = answering(200, answer, seen)
    client.credentials = None
    async with client:
        registration = await client.register("mac", ["a"], 3, {"os": "linux"}, "enroll")
    assert registration.credentials == RunnerCredentials("r9", "k" * 64)
    assert client.credentials == registration.credentials
    [request] = seen
    assert request.headers["Authorization"] == "Bearer enroll"
    assert json.loads(request.content) == {
        "name": "mac",
        "capabilities": {"os": "linux"},
        "labels": ["a"],
        "max_concurrent": 3,
    }


async def test_a_claimed_job_is_read_into_a_typed_result() -> None:
    job = {
        "build_id": "b1",
        "project_id": "p1",
        "pipeline_id": "l1",
        "build_number": 12,
        "config_snapshot": {"repo_url": "/src"},
        "lease_expires_at": 99,
        "signing_token": "s" * 64,
        "attempt": 2,
    }
    async with answering(200, {"job": job}) as client:
        claimed = await client.claim()
    assert claimed is not None
    assert (claimed.build_number, claimed.attempt, claimed.commit_sha) == (12, 2, None)
    async with answering(200, {"job": {**job, "build_number": "12"}}) as client:
        with pytest.raises(ProtocolError, match="build_number"):
            await client.claim()


async def test_error_envelopes_become_server_errors() -> None:
    async with answering(403, {"error": "not yours", "code": "runner_mismatch"}) as client:
        with pytest.raises(ServerError) as caught:
            await client.job_state("b1")
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        403,
        "runner_mismatch",
        "not yours",
    )
    assert not retryable(caught.value)
    async with answering(502, "Bad Gateway from a proxy") as client:
        with pytest.raises(ServerError) as caught:
            await client.append_logs("b1", [LogChunk(0, "x", "stdout")])
    assert (caught.value.code, caught.value.message) == ("http_502", "Bad Gateway from a proxy")
    assert retryable(caught.value)


async def test_an_unreachable_server_is_a_retryable_connection_failure() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        async with RunnerClient(f"http://127.0.0.1:{port}", credentials=CREDENTIALS) as client:
            with pytest.raises(ConnectionFailed) as caught:
                await client.heartbeat("online")
    assert retryable(caught.value)
    assert f"127.0.0.1:{port}" in str(caught.value)
