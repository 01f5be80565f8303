"""The runner channel on the daemon's lean listener on loopback, driven with trio-websocket.

What a runner sends on its channel must be answered exactly as the HTTP runner routes
answer the same call (same JSON, same error status and code), and what it reports must
show through the normal HTTP API.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from quart_trio import QuartTrio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from oore.protocol.runner import MAX_FRAME as MAX_MESSAGE
from tests.http.builds_kit import Runner, Setup, repo, setup
from tests.http.channel_kit import serve_app, services_of

__all__ = ["repo", "setup"]


@pytest.fixture
async def served(app: QuartTrio) -> AsyncIterator[str]:
    """The app served as the daemon serves it, on a loopback port."""
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(serve_app, app, services_of(app), shutdown_trigger=stop.wait)
        )
        yield binds[0].replace("http://", "ws://")
        stop.set()
        nursery.cancel_scope.deadline = trio.current_time() + 5


class Channel:
    """A raw runner channel: numbered requests out, JSON replies in."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def send(self, op: str, **fields: Any) -> int:
        request_id = next(self._ids)
        await self.ws.send_message(json.dumps({"id": request_id, "op": op, **fields}))
        return request_id

    async def reply(self) -> dict[str, Any]:
        with trio.fail_after(10):
            answer: dict[str, Any] = json.loads(await self.ws.get_message())
        return answer

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and read its reply (nothing else may be in flight)."""
        request_id = await self.send(op, **fields)
        answer = await self.reply()
        assert answer["id"] == request_id, answer
        return answer


@asynccontextmanager
async def channel(url: str, runner: Runner, token: str | None = None) -> AsyncIterator[Channel]:
    """An open channel; the socket is closed here (trio-websocket leaves it open when the
    server is the one that closes)."""
    token = runner.token if token is None else token
    address = urlsplit(url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    stream = await trio.open_tcp_stream(host, port)
    try:
        async with trio.open_nursery() as nursery:
            ws = await wrap_client_stream(
                nursery,
                stream,
                f"{host}:{port}",
                f"/v1/runners/{runner.id}/channel",
                extra_headers=[(b"authorization", f"Bearer {token}".encode())],
            )
            yield Channel(ws)
            nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)


async def refusal(url: str, runner_id: str, headers: dict[str, str]) -> httpx.Response:
    """The server's answer to a WebSocket upgrade it refuses, read as the HTTP response it is."""
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }
    async with httpx.AsyncClient(base_url=url.replace("ws://", "http://")) as client:
        return await client.get(f"/v1/runners/{runner_id}/channel", headers={**upgrade, **headers})


async def test_the_upgrade_is_refused_as_the_http_routes_refuse(served: str, setup: Setup) -> None:
    runner = await setup.runner("a")
    other = await setup.runner("b")
    cases: list[tuple[dict[str, str], int, str]] = [
        ({}, 401, "missing_auth"),
        ({"Authorization": "Bearer " + "cd" * 32}, 401, "invalid_token"),
        ({"Authorization": f"Bearer {setup.token}"}, 401, "invalid_token"),
        ({"Authorization": f"Bearer {other.token}"}, 403, "runner_mismatch"),
    ]
    for sent, status, code in cases:
        headers = {**sent, "X-Request-Id": f"refused-{code}"}  # the same id in both answers
        answer = await refusal(served, runner.id, headers)
        assert (answer.status_code, answer.headers["content-type"]) == (status, "application/json")
        assert answer.json()["code"] == code
        assert set(answer.json()) == {"error", "code", "request_id"}
        http = await setup.api.post(
            f"/v1/runners/{runner.id}/heartbeat", json={"status": "online"}, headers=headers
        )
        assert (http.status, http.body) == (answer.status_code, answer.json())
    # The runner's own token is upgraded (101) by the same server.
    async with channel(served, runner) as ch:
        assert await ch.call("heartbeat", status="online") == {"id": 1, "ok": True}


async def test_a_page_elsewhere_cannot_open_a_channel(served: str, setup: Setup) -> None:
    runner = await setup.runner("a")
    auth = {"Authorization": f"Bearer {runner.token}"}
    cases: list[tuple[dict[str, str], int, str]] = [
        ({**auth, "Origin": "http://evil.example"}, 403, "origin_not_allowed"),
        ({**auth, "Host": "evil.example"}, 400, "invalid_host"),
    ]
    for sent, status, code in cases:
        headers = {**sent, "X-Request-Id": f"refused-{code}"}  # the same id in both answers
        answer = await refusal(served, runner.id, headers)
        assert (answer.status_code, answer.json()["code"]) == (status, code)


async def test_heartbeat_shows_the_runner_online(served: str, setup: Setup) -> None:
    runner = await setup.runner()
    async with channel(served, runner) as ch:
        answer = await ch.call("heartbeat", status="busy", capabilities={"os": "linux"})
        assert answer == {"id": 1, "ok": True}
    shown = await setup.api.get(f"/v1/runners/{runner.id}", token=setup.token)
    assert shown.body["runner"]["status"] == "busy"
    assert shown.body["runner"]["capabilities"] == {"os": "linux"}


async def test_claim_answers_the_same_job_as_http(served: str, setup: Setup) -> None:
    runner = await setup.runner("on-channel")
    by_http = await setup.runner("on-http")
    async with channel(served, runner) as ch:
        assert await ch.call("claim", protocol_version=4, wait_seconds=0) == {"id": 1, "ok": True}
        first = await setup.trigger()
        answer = await ch.call("claim", protocol_version=4, wait_seconds=0)
    assert set(answer) == {"id", "ok", "job"} and answer["ok"] is True
    job = answer["job"]
    assert job["build_id"] == first["id"]
    second = await setup.trigger()
    over_http = await by_http.claim()
    assert over_http is not None and over_http["build_id"] == second["id"]
    # Same shape and content, apart from what differs between two builds of one pipeline.
    differs = {"build_id", "build_number", "signing_token", "lease_expires_at"}
    assert set(job) == set(over_http)
    assert {k: v for k, v in job.items() if k not in differs} == {
        k: v for k, v in over_http.items() if k not in differs
    }
    assert (await setup.build(first["id"]))["build"]["status"] == "assigned"


async def test_a_parked_claim_does_not_hold_up_a_heartbeat(served: str, setup: Setup) -> None:
    runner = await setup.runner()
    async with channel(served, runner) as ch:
        parked = await ch.send("claim", protocol_version=4, wait_seconds=20)
        beat = await ch.send("heartbeat", status="online")
        assert await ch.reply() == {"id": beat, "ok": True}
        build = await setup.trigger()
        answer = await ch.reply()
    assert answer["id"] == parked and answer["job"]["build_id"] == build["id"]


async def test_a_build_reported_on_the_channel_shows_through_http(
    served: str, setup: Setup
) -> None:
    runner = await setup.runner()
    build = await setup.trigger()
    async with channel(served, runner) as ch:
        claimed = await ch.call("claim", protocol_version=4, wait_seconds=0)
        assert claimed["job"]["build_id"] == build["id"]
        running = await ch.call("job_status", build_id=build["id"], status="running")
        assert running["ok"] is True and running["build"]["status"] == "running"
        assert [e["to_status"] for e in running["events"]][-1] == "running"
        state = await ch.call("job_state", build_id=build["id"], wait_seconds=0)
        assert state == {"id": 3, "ok": True, "status": "running"}
        chunks = [
            {"sequence": 0, "content": "hello", "stream": "stdout"},
            {"sequence": 1, "content": "careful", "stream": "stderr"},
        ]
        assert (await ch.call("logs", build_id=build["id"], chunks=chunks))["appended"] == 2
        again = await ch.call("logs", build_id=build["id"], chunks=chunks[1:])
        assert again == {"id": 5, "ok": True, "appended": 0}
        done = await ch.call("job_status", build_id=build["id"], status="succeeded", exit_code=0)
        assert done["build"]["status"] == "succeeded"
    shown = await setup.build(build["id"])
    assert shown["build"]["status"] == "succeeded"
    logs = await setup.api.get(f"/v1/builds/{build['id']}/logs", token=setup.token)
    assert logs.status == 200, logs.body
    assert [(line["stream"], line["content"]) for line in logs.body["logs"]] == [
        ("stdout", "hello"),
        ("stderr", "careful"),
    ]


async def test_bad_requests_get_the_status_and_code_http_gives(served: str, setup: Setup) -> None:
    runner = await setup.runner()
    unknown_build = "0" * 32
    async with channel(served, runner) as ch:
        await ch.ws.send_message("{not json")
        assert await ch.reply() == {
            "id": None,
            "ok": False,
            "status": 400,
            "code": "invalid_request",
            "error": "Request parameters or body are invalid",
            "details": "frame is not valid JSON",
        }
        for frame in ("[1, 2]", '{"op": "heartbeat", "status": "online"}', '{"id": "7"}'):
            await ch.ws.send_message(frame)
            answer = await ch.reply()
            assert (answer["id"], answer["status"], answer["code"]) == (
                None,
                400,
                "invalid_request",
            ), frame
        unknown = await ch.call("sing", status="online")
        assert (unknown["ok"], unknown["status"]) == (False, 400)
        assert unknown["code"] == "invalid_request"
        assert "sing" in unknown["details"]
        cases: list[tuple[dict[str, Any], str, str, dict[str, Any] | None]] = [
            ({"op": "heartbeat", "status": "online", "extra": 1}, "POST", "heartbeat", None),
            ({"op": "heartbeat", "status": "sleeping"}, "POST", "heartbeat", None),
            ({"op": "claim", "protocol_version": 3}, "POST", "claim", None),
            ({"op": "claim", "protocol_version": "4"}, "POST", "claim", None),
            ({"op": "claim", "protocol_version": 4, "wait_seconds": 99}, "POST", "claim", None),
            (
                {"op": "job_status", "build_id": unknown_build, "status": "running"},
                "POST",
                f"jobs/{unknown_build}/status",
                {"status": "running"},
            ),
            (
                {"op": "logs", "build_id": unknown_build, "chunks": []},
                "POST",
                f"jobs/{unknown_build}/logs",
                {"chunks": []},
            ),
            ({"op": "job_state", "build_id": unknown_build}, "GET", f"jobs/{unknown_build}", None),
        ]
        for fields, method, action, body in cases:
            op = fields.pop("op")
            answer = await ch.call(op, **fields)
            http = await setup.api.call(
                method,
                f"/v1/runners/{runner.id}/{action}",
                json=(fields if body is None else body) if method == "POST" else None,
                token=runner.token,
            )
            assert answer["ok"] is False, (op, fields)
            assert (answer["status"], answer["code"], answer["error"]) == (
                http.status,
                http.body["code"],
                http.body["error"],
            ), (op, fields)
        mismatch = await ch.call("claim", protocol_version=3)
        assert (mismatch["status"], mismatch["code"]) == (409, "runner_protocol_mismatch")
        missing = await ch.call("job_status", build_id=unknown_build, status="running")
        assert (missing["status"], missing["code"]) == (404, "not_found")
        no_build = await ch.call("job_status", status="running")
        assert (no_build["status"], no_build["code"]) == (400, "invalid_request")
        # The channel is still open and serving after all of that.
        still = await ch.call("heartbeat", status="online")
        assert still["ok"] is True and set(still) == {"id", "ok"}


async def test_a_deleted_runner_gets_401_and_its_channel_is_closed(
    served: str, setup: Setup
) -> None:
    runner = await setup.runner()
    async with channel(served, runner) as ch:
        assert (await ch.call("heartbeat", status="online"))["ok"] is True
        deleted = await setup.api.call("DELETE", f"/v1/runners/{runner.id}", token=setup.token)
        assert deleted.status == 204, deleted.body
        answer = await ch.call("heartbeat", status="online")
        assert (answer["status"], answer["code"]) == (401, "invalid_token")
        with pytest.raises(ConnectionClosed) as closed:
            await ch.reply()
        assert closed.value.reason is not None and closed.value.reason.code == 1008


async def test_a_frame_over_2_mib_closes_the_channel(served: str, setup: Setup) -> None:
    runner = await setup.runner()
    async with channel(served, runner) as ch:
        await ch.ws.send_message(json.dumps({"id": 1, "op": "logs", "x": "y" * MAX_MESSAGE}))
        with pytest.raises(ConnectionClosed) as closed:
            await ch.reply()
        assert closed.value.reason is not None and closed.value.reason.code == 1009


async def test_a_claim_waiting_on_the_channel_obeys_the_runner_pause(
    served: str, setup: Setup
) -> None:
    runner = await setup.runner("mac", capabilities={"os": "darwin"})

    async def pause(paused: bool) -> None:
        reply = await setup.api.call(
            "PUT",
            "/v1/settings/preferences",
            json={"key_storage_mode": "file", "direct_macos_runner_paused": paused},
            token=setup.token,
        )
        assert reply.status == 200, reply.body

    await pause(True)
    async with channel(served, runner) as ch:
        parked = await ch.send("claim", protocol_version=4, wait_seconds=20)
        build = await setup.trigger()
        beat = await ch.send("heartbeat", status="online")
        assert await ch.reply() == {"id": beat, "ok": True}  # the claim is still waiting
        assert (await setup.build(build["id"]))["build"]["status"] == "queued"
        await pause(False)
        answer = await ch.reply()
    assert answer["id"] == parked and answer["job"]["build_id"] == build["id"]
