"""The local upload route at the ASGI level: the token before the body, the size limit,
streaming in many messages, a client that goes away or stalls (contract §7.1)."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import trio
from quart_trio import QuartTrio

from oore.http.uploads import ASGIApp
from oore.services.artifact_storage import ArtifactsConfig
from oore.store import Store
from tests.http.artifacts_kit import Job, local_path, running_job
from tests.http.builds_kit import Setup, repo, setup

__all__ = ["repo", "setup"]

MiB = 1024 * 1024


@dataclass
class Answer:
    status: int | None
    body: bytes

    @property
    def code(self) -> str | None:
        return json.loads(self.body)["code"] if self.body else None


async def put(
    app: QuartTrio,
    path: str,
    messages: list[dict[str, Any]],
    *,
    declared: int | None = None,
) -> Answer:
    """Drive the app like an ASGI server would; messages after the list never come."""
    headers = [(b"host", b"127.0.0.1:8787")]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8787),
        "extensions": {},
    }
    pending = list(messages)
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    with trio.fail_after(10):
        await cast(ASGIApp, app)(scope, receive, send)
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(status, body)


def chunk(data: bytes, more: bool = True) -> dict[str, Any]:
    return {"type": "http.request", "body": data, "more_body": more}


@pytest.fixture
async def job(setup: Setup) -> Job:
    return await running_job(setup)


async def reservation(job: Job) -> tuple[str, str]:
    reserved = await job.reserve("upload.bin")
    return reserved.body["artifact"]["file_path"], local_path(reserved.body["upload_url"])


def stored(config: ArtifactsConfig, key: str) -> Path:
    assert config.data_dir is not None
    return config.data_dir / "artifacts" / key


async def test_a_body_in_many_messages_is_stored_whole(
    app: QuartTrio, job: Job, artifacts_config: ArtifactsConfig
) -> None:
    key, path = await reservation(job)
    parts = [bytes([n]) * 100_000 for n in range(30)]
    messages = [chunk(p) for p in parts] + [chunk(b"", more=False)]
    answer = await put(app, path, messages, declared=3_000_000)  # over the JSON limit
    assert (answer.status, answer.body) == (200, b"")
    assert stored(artifacts_config, key).read_bytes() == b"".join(parts)
    assert [p.name for p in stored(artifacts_config, key).parent.iterdir()] == ["upload.bin"]


async def test_the_token_is_decided_before_the_size_and_the_body(app: QuartTrio, job: Job) -> None:
    bad = await put(app, "/v1/artifacts/local-upload/" + "f" * 64, [], declared=600 * MiB)
    assert (bad.status, bad.code) == (401, "invalid_upload_token")
    _, path = await reservation(job)
    # No body message is ever sent: the answer cannot have waited for one.
    too_large = await put(app, path, [], declared=512 * MiB + 1)
    assert (too_large.status, too_large.code) == (413, "payload_too_large")
    again = await put(app, path, [chunk(b"x", more=False)])
    assert (again.status, again.code) == (401, "invalid_upload_token")  # the token was used


async def test_a_body_past_the_limit_is_refused_and_removed(
    app: QuartTrio,
    job: Job,
    artifacts_config: ArtifactsConfig,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("oore.http.uploads.MAX_UPLOAD_BYTES", 1000)
    key, path = await reservation(job)
    answer = await put(app, path, [chunk(b"a" * 600), chunk(b"b" * 600), chunk(b"", more=False)])
    assert (answer.status, answer.code) == (413, "payload_too_large")
    folder = stored(artifacts_config, key).parent
    assert not folder.exists() or list(folder.iterdir()) == []


async def test_a_client_that_goes_away_leaves_nothing(
    app: QuartTrio, job: Job, artifacts_config: ArtifactsConfig
) -> None:
    key, path = await reservation(job)
    answer = await put(app, path, [chunk(b"half"), {"type": "http.disconnect"}])
    assert answer.status is None  # nobody left to answer
    folder = stored(artifacts_config, key).parent
    assert not folder.exists() or list(folder.iterdir()) == []


async def test_a_stalled_client_is_given_up_on(
    app: QuartTrio, job: Job, artifacts_config: ArtifactsConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("oore.http.uploads.IDLE_SECONDS", 0.2)
    key, path = await reservation(job)
    answer = await put(app, path, [chunk(b"some")])
    assert (answer.status, answer.code) == (408, "request_timeout")
    folder = stored(artifacts_config, key).parent
    assert not folder.exists() or list(folder.iterdir()) == []


async def test_other_methods_on_the_upload_path_are_routed_as_usual(app: QuartTrio) -> None:
    client = app.test_client()
    response = await client.get("/v1/artifacts/local-upload/" + "f" * 64)
    assert response.status_code == 405
