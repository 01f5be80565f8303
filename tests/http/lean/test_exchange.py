"""The bookkeeping of one lean exchange: request id, refusal, access line, closing."""

from __future__ import annotations

import json
import logging

import pytest
import trio

from oore.errors import NotFound
from oore.eventlog import REQUEST_ID, event_of
from oore.http.lean.exchange import Exchange, starts_like
from oore.http.lean.head import RequestHead


def head(request_id: bytes | None = None) -> RequestHead:
    headers = [(b"host", b"localhost")]
    if request_id is not None:
        headers.append((b"x-request-id", request_id))
    return RequestHead("GET", "/v1/builds/b1/logs/stream?token=secret", headers)


async def pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    ours, theirs = trio.socket.socketpair()
    return trio.SocketStream(ours), trio.SocketStream(theirs)


async def read_all(stream: trio.SocketStream) -> bytes:
    received = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some(65536):
            received += chunk
    return received


async def test_a_refusal_is_the_api_error_with_the_request_id_then_the_connection_closes() -> None:
    server, client = await pair()
    async with Exchange(server, head(b"req-12345678"), access_log=False) as exchange:
        assert REQUEST_ID.get() == "req-12345678"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(exchange.refuse, NotFound("not_found", "No such build"))
            answer = await read_all(client)  # the refusal, then our side's end
            await client.aclose()  # the peer closes too: the linger ends
    assert REQUEST_ID.get() is None
    head_part, _, body = answer.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 404 ")
    assert b"X-Request-Id: req-12345678" in head_part and b"Connection: close" in head_part
    assert json.loads(body)["request_id"] == "req-12345678"
    assert json.loads(body)["code"] == "not_found"
    assert exchange.status == 404


async def test_a_dropped_connection_ends_the_exchange_quietly_and_closes_it() -> None:
    server, client = await pair()
    await client.aclose()
    async with Exchange(server, head(), access_log=False) as exchange:
        exchange.status = 200
        with trio.fail_after(5):
            while True:  # the peer is gone: a write fails sooner or later
                await server.send_all(b"x" * 65536)
    with pytest.raises(trio.ClosedResourceError):
        await server.send_all(b"x")


async def test_other_errors_pass_through_and_the_access_line_has_the_status(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, client = await pair()
    caplog.set_level(logging.INFO)
    with pytest.raises(RuntimeError):
        async with Exchange(server, head(), access_log=True) as exchange:
            exchange.status = 200
            raise RuntimeError("boom")
    await client.aclose()
    logged = [event_of(record) for record in caplog.records]
    lines = [found[1] for found in logged if found is not None and found[0] == "http.request"]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("GET", "/v1/builds/b1/logs/stream", 200)  # never the query, where tokens go
    ]


def test_a_route_may_take_a_head_while_its_start_matches() -> None:
    assert starts_like(b"GET /v1/bu", b"GET /v1/builds/")
    assert starts_like(b"GET /v1/builds/abc/logs", b"GET /v1/builds/")
    assert not starts_like(b"POST /v1", b"GET /v1/builds/")
