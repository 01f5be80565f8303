"""The connection layer: the cap arithmetic, the request-head checks, the head timeout."""

from __future__ import annotations

from functools import partial
from typing import Any, cast

import pytest
import trio
from hypercorn.typing import ASGIFramework

from oore.http.lean.routes import LeanRoutes
from oore.http.server import (
    ConnectionLimits,
    connection_cap,
    framing_problem,
    protocol_error,
    serve,
)
from tests.http.channel_kit import server_config
from tests.http.lean.test_routes import Runners


def test_cap_leaves_the_reserve_free_and_never_exceeds_what_fits() -> None:
    assert connection_cap(None, open_files=1024, reserved=266) == 758
    assert connection_cap(100, open_files=1024, reserved=266) == 100
    assert connection_cap(5000, open_files=1024, reserved=266) == 758
    assert connection_cap(None, open_files=100, reserved=266) == 1


@pytest.mark.parametrize(
    "host", [b"localhost", b"localhost:8787", b"[::1]:8787", b"10.0.0.1", b"ci.example.org"]
)
def test_host_names_and_addresses_pass(host: bytes) -> None:
    assert framing_problem([(b"host", host)]) is None


@pytest.mark.parametrize("host", [b"a\xffb", b"a b", b"a\x00b", b"a/b", b"a@b", b"\xc3\xa9.org"])
def test_host_outside_an_authority_is_a_problem(host: bytes) -> None:
    assert framing_problem([(b"host", host)]) == "Host is not a valid host name"


def test_two_body_framings_are_a_problem() -> None:
    headers = [(b"host", b"x"), (b"content-length", b"5"), (b"transfer-encoding", b"chunked")]
    assert framing_problem(headers) == "Content-Length and Transfer-Encoding together"
    assert framing_problem(headers[:2]) is None
    assert framing_problem([headers[0], headers[2]]) is None


KEEPALIVE = 2.0


async def _answer_ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_a_slow_head_gets_the_keep_alive_time_once_across_lean_and_hypercorn() -> None:
    """A head sent a byte at a time that looks like a lean route's for most of the
    keep-alive time, then turns out not to be, is closed at the keep-alive timeout from
    the connection's start: Hypercorn does not start that time over."""
    config = server_config()
    config.keep_alive_timeout = KEEPALIVE
    limits = ConnectionLimits(max_connections=10, keepalive_seconds=KEEPALIVE)
    stop = trio.Event()
    head = b"GET /v1/runners/" + b"x" * 40
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(
                serve,
                cast(ASGIFramework, _answer_ok),
                config,
                limits,
                shutdown_trigger=stop.wait,
                lean=LeanRoutes([Runners()]),
            )
        )
        host, port = binds[0].removeprefix("http://").rsplit(":", 1)
        async with await trio.open_tcp_stream(host, int(port)) as client:
            connected = trio.current_time()
            # The lean listener reads these, as the runner channel's path, for 0.9 of the
            # keep-alive time; the next byte makes it Hypercorn's.
            await client.send_all(b"GET /v1/runners"[:-1])
            await trio.sleep(KEEPALIVE * 0.9)
            await client.send_all(b"X")
            closed = False
            with trio.move_on_after(KEEPALIVE * 3):
                for byte in head:
                    try:
                        await client.send_all(bytes([byte]))
                    except trio.BrokenResourceError:
                        closed = True
                        break
                    await trio.sleep(0.05)
            lasted = trio.current_time() - connected
        stop.set()
    assert closed, "the slow head was never dropped"
    assert lasted < KEEPALIVE * 1.5, f"dropped after {lasted:.1f}s, not at the keep-alive timeout"


def test_a_request_h11_refuses_gets_the_apis_error() -> None:
    assert (protocol_error(431, 16384).status, protocol_error(431, 16384).code) == (
        431,
        "headers_too_large",
    )
    assert protocol_error(431, 16384).details == "the request line and headers are over 16 KiB"
    assert (protocol_error(501, 16384).status, protocol_error(501, 16384).code) == (
        501,
        "not_implemented",
    )
    assert (protocol_error(400, 16384).status, protocol_error(400, 16384).code) == (
        400,
        "invalid_request",
    )
