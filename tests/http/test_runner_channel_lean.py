"""The runner channel on the lean listener: bad input, slow readers and shutdown, and the
other requests on the same port, which Hypercorn and Quart still answer as before.

Driven over loopback on bare sockets (``RawChannel``), so a test decides what is sent and
whether anything is read.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

import httpx
import pytest
import trio
import trio.testing
from quart_trio import QuartTrio
from wsproto.events import CloseConnection, Pong

from oore.http.lean.runner_channel import ChannelLimits
from oore.protocol.runner import MAX_FRAME, MAX_IN_FLIGHT
from tests.http.builds_kit import Setup, repo, setup
from tests.http.channel_kit import RawChannel, serve_app, services_of

__all__ = ["repo", "setup"]

SEND_BUFFER = 64 * 1024


@dataclass
class Served:
    url: str
    stop: trio.Event


@pytest.fixture
async def served(app: QuartTrio) -> AsyncIterator[Served]:
    """The app as the daemon serves it, with a small send buffer per channel."""
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(
                serve_app,
                app,
                services_of(app),
                shutdown_trigger=stop.wait,
                channel=ChannelLimits(send_buffer=SEND_BUFFER),
            )
        )
        yield Served(binds[0], stop)
        stop.set()
        nursery.cancel_scope.deadline = trio.current_time() + 5


async def heartbeat_works(served: Served, runner_id: str, token: str) -> None:
    channel = await RawChannel.open(served.url, runner_id, token)
    try:
        assert channel.status == 101
        await channel.send({"id": 1, "op": "heartbeat", "status": "online"})
        assert await channel.reply() == {"id": 1, "ok": True}
    finally:
        await channel.aclose()


async def test_the_upgrade_is_answered_by_the_lean_listener(served: Served, setup: Setup) -> None:
    runner = await setup.runner()
    channel = await RawChannel.open(served.url, runner.id, runner.token)
    try:
        assert channel.status == 101
        assert "server" not in channel.headers  # Hypercorn names itself; the lean listener not
        assert "sec-websocket-extensions" not in channel.headers  # no permessage-deflate
        assert len(channel.headers["x-request-id"]) > 0
        await channel.send({"id": 1, "op": "heartbeat", "status": "online"})
        assert await channel.reply() == {"id": 1, "ok": True}
    finally:
        await channel.aclose()


async def test_a_refused_upgrade_is_a_json_error_and_frames_sent_with_it_are_not_read(
    served: Served, setup: Setup
) -> None:
    runner = await setup.runner("a")
    other = await setup.runner("b")
    early = b"\x81\x05hello"  # a text frame (unmasked, which a server must refuse anyway)
    cases = [(None, 401, "missing_auth"), ("ab" * 32, 401, "invalid_token")]
    cases.append((other.token, 403, "runner_mismatch"))
    for token, status, code in cases:
        channel = await RawChannel.open(served.url, runner.id, token, after_head=early)
        try:
            assert channel.status == status
            assert channel.headers["content-type"] == "application/json"
            assert channel.headers["connection"] == "close"
            assert channel.headers["x-content-type-options"] == "nosniff"
            body = json.loads(channel.body or await channel.stream.receive_some(65536))
            assert (body["code"], body["request_id"]) == (code, channel.headers["x-request-id"])
            # Nothing more: the frame sent before the refusal was never read as a request.
            with trio.fail_after(5):
                assert await channel.stream.receive_some(65536) == b""
        finally:
            await channel.aclose()
    await heartbeat_works(served, runner.id, runner.token)


async def test_bad_frames_get_their_errors_and_touch_no_other_runner(
    served: Served, setup: Setup
) -> None:
    runner = await setup.runner("a")
    bystander = await setup.runner("b")
    watching = await RawChannel.open(served.url, bystander.id, bystander.token)
    channel = await RawChannel.open(served.url, runner.id, runner.token)
    try:
        await channel.send("{not json")
        assert (await channel.reply())["details"] == "frame is not valid JSON"
        await channel.send({"id": 2, "op": "sing"})
        unknown = await channel.reply()
        assert (unknown["id"], unknown["status"], unknown["code"]) == (2, 400, "invalid_request")
        assert unknown["details"] == "op: unknown operation 'sing'"
        await channel.send({"id": 3, "op": "heartbeat", "status": "online"})
        assert await channel.reply() == {"id": 3, "ok": True}
        await channel.send({"id": 4, "op": "logs", "x": "y" * MAX_FRAME})
        closed = await channel.event()
        assert isinstance(closed, CloseConnection) and closed.code == 1009
        await watching.send({"id": 1, "op": "heartbeat", "status": "busy"})
        assert await watching.reply() == {"id": 1, "ok": True}
    finally:
        await channel.aclose()
        await watching.aclose()


async def test_a_runner_that_stops_reading_is_closed_at_its_send_buffer_limit(
    served: Served, setup: Setup
) -> None:
    runner = await setup.runner("slow")
    bystander = await setup.runner("b")
    # Each request is answered with its 60 KB operation name; the runner reads nothing.
    channel = await RawChannel.open(served.url, runner.id, runner.token, receive_buffer=4096)
    frame = channel.frame({"id": 1, "op": "z" * 60_000})
    sent = 0
    try:
        with trio.fail_after(60), pytest.raises(trio.BrokenResourceError):
            for sent in range(1, 2001):  # noqa: B007 (counted below)
                await channel.stream.send_all(frame)
    finally:
        await channel.aclose()
    # Given up long before everything sent was answered: the server did not keep the
    # replies (2000 of them, 120 MB) waiting for a reader that never came.
    assert sent < 2000
    await heartbeat_works(served, bystander.id, bystander.token)
    await heartbeat_works(served, runner.id, runner.token)  # it may connect again


async def test_at_most_64_requests_are_in_flight_then_reading_stops(
    served: Served, setup: Setup
) -> None:
    runner = await setup.runner()
    channel = await RawChannel.open(served.url, runner.id, runner.token)
    try:
        claim = {"op": "claim", "protocol_version": 4, "wait_seconds": 30}
        for request_id in range(1, MAX_IN_FLIGHT + 1):
            await channel.send({"id": request_id, **claim})
        # The 65th request is not read while 64 claims are parked...
        await channel.send({"id": 65, "op": "heartbeat", "status": "online"})
        await trio.testing.wait_all_tasks_blocked(0.05)
        build = await setup.trigger()
        # ...so it is answered only after a claim ended and freed a place.
        first = await channel.reply()
        assert first["id"] <= MAX_IN_FLIGHT and first["job"]["build_id"] == build["id"]
        assert await channel.reply() == {"id": 65, "ok": True}
    finally:
        await channel.aclose()


async def test_a_ping_is_answered(served: Served, setup: Setup) -> None:
    runner = await setup.runner()
    channel = await RawChannel.open(served.url, runner.id, runner.token)
    try:
        await channel.ping(b"still here")
        pong = await channel.event()
        assert isinstance(pong, Pong) and pong.payload == b"still here"
    finally:
        await channel.aclose()


async def test_other_requests_on_the_port_are_answered_as_before(
    served: Served, setup: Setup
) -> None:
    runner = await setup.runner()
    async with httpx.AsyncClient(base_url=served.url) as client:
        shown = await client.get(
            f"/v1/runners/{runner.id}", headers={"Authorization": f"Bearer {setup.token}"}
        )
        assert shown.status_code == 200 and shown.json()["runner"]["id"] == runner.id
        assert shown.headers["x-content-type-options"] == "nosniff"
        assert shown.headers["x-request-id"]
        # The channel's URL without an upgrade is Quart's to refuse, as before.
        plain = await client.get(f"/v1/runners/{runner.id}/channel")
        assert (plain.status_code, plain.json()["code"]) == (400, "invalid_request")
        page = await client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        # A runner's HTTP call still works beside its channel.
        beat = await client.post(
            f"/v1/runners/{runner.id}/heartbeat",
            json={"status": "online"},
            headers={"Authorization": f"Bearer {runner.token}"},
        )
        assert beat.status_code == 204


async def test_keep_alive_and_split_heads_still_work(served: Served, setup: Setup) -> None:
    runner = await setup.runner()
    host = served.url.removeprefix("http://")
    name, port = host.rsplit(":", 1)
    stream = await trio.open_tcp_stream(name, int(port))
    try:
        # A head that looks like the channel's for its first bytes, sent in pieces.
        head = (
            f"GET /v1/runners/{runner.id} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {setup.token}\r\n\r\n"
        ).encode()
        for piece in (head[:10], head[10:30], head[30:]):
            await stream.send_all(piece)
            await trio.testing.wait_all_tasks_blocked(0.01)
        first = await _response(stream)
        assert first.startswith(b"HTTP/1.1 200"), first[:200]
        # The same connection serves the next request (keep-alive).
        await stream.send_all(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        second = await _response(stream)
        assert second.startswith(b"HTTP/1.1 200"), second[:200]
    finally:
        await stream.aclose()


async def _response(stream: trio.SocketStream) -> bytes:
    """One whole response with a Content-Length body."""
    received = b""
    with trio.fail_after(10):
        while b"\r\n\r\n" not in received:
            chunk = await stream.receive_some(65536)
            assert chunk, received
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            body += await stream.receive_some(65536)
    return received


async def test_stopping_the_server_closes_channels_with_1001(served: Served, setup: Setup) -> None:
    runner = await setup.runner()
    channel = await RawChannel.open(served.url, runner.id, runner.token)
    try:
        await channel.send({"id": 1, "op": "heartbeat", "status": "online"})
        assert await channel.reply() == {"id": 1, "ok": True}
        served.stop.set()
        closed = await channel.event()
        assert isinstance(closed, CloseConnection) and closed.code == 1001
    finally:
        await channel.aclose()
