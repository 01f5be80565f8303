"""The dispatch of a new connection: to a lean route, to Hypercorn, or closed."""

from __future__ import annotations

import trio
import trio.testing

from oore.http.lean.exchange import starts_like
from oore.http.lean.head import RequestHead
from oore.http.lean.lanes import RUNNERS
from oore.http.lean.routes import LeanRoutes, dispatch
from tests.http.lean.test_exchange import pair, read_all

PREFIX = b"GET /v1/runners/"
IDLE_SECONDS = 0.5


class Runners:
    """A lean route for heads under ``/v1/runners/`` that records what it served."""

    lane = RUNNERS

    def __init__(self) -> None:
        self.served: list[str] = []

    def may_take(self, start: bytes) -> bool:
        return starts_like(start, PREFIX)

    def takes(self, head: RequestHead) -> bool:
        return head.target.startswith("/v1/runners/")

    async def serve(self, stream: trio.SocketStream, head: RequestHead, received: bytes) -> None:
        self.served.append(head.target)
        await stream.aclose()


async def _dispatch_trickled(head: bytes, every: float) -> tuple[Runners, list[bytes], bytes]:
    """``head`` sent a few bytes at a time to a dispatch; the route, what the fallback got
    and what the client received before the connection closed."""
    route = Runners()
    handed: list[bytes] = []

    async def fallback(stream: trio.SocketStream, received: bytes, head_by: float) -> None:
        handed.append(received)
        await stream.aclose()

    server, client = await pair()
    answer = b""
    async with client, trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: dispatch(server, LeanRoutes([route]), fallback, idle_seconds=IDLE_SECONDS)
        )

        async def trickle() -> None:
            try:
                for at in range(0, len(head), 4):
                    await client.send_all(head[at : at + 4])
                    await trio.sleep(every)
            except trio.BrokenResourceError:
                pass  # closed by the server under the head

        nursery.start_soon(trickle)
        answer = await read_all(client)
        nursery.cancel_scope.cancel()
    return route, handed, answer


async def test_a_head_sent_too_slowly_is_closed_at_the_idle_time_not_handed_on() -> None:
    """A slow head on a lean route's path is dropped when the idle time is up, rather
    than handed to Hypercorn, which would give it its whole keep-alive time again."""
    head = (
        PREFIX
        + b"r1/channel HTTP/1.1\r\nHost: localhost\r\n"
        + b"X-Pad: "
        + b"a" * 60
        + b"\r\n\r\n"
    )
    started = trio.current_time()
    route, handed, answer = await _dispatch_trickled(head, every=0.05)
    assert trio.current_time() - started < len(head) / 4 * 0.05, "the whole head was read"
    assert (route.served, handed, answer) == ([], [], b"")


async def test_a_head_in_time_is_served_by_its_route_or_handed_on() -> None:
    lean = PREFIX + b"r1/channel HTTP/1.1\r\nHost: localhost\r\n\r\n"
    route, handed, _ = await _dispatch_trickled(lean, every=0.001)
    assert (route.served, handed) == (["/v1/runners/r1/channel"], [])
    other = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    route, handed, _ = await _dispatch_trickled(other, every=0.001)
    assert route.served == [] and len(handed) == 1 and other.startswith(handed[0])


class KeptAlive:
    """A lean route that answers ``ok`` and keeps the connection open."""

    lane = RUNNERS

    def __init__(self) -> None:
        self.served: list[str] = []

    def may_take(self, start: bytes) -> bool:
        return starts_like(start, PREFIX)

    def takes(self, head: RequestHead) -> bool:
        return head.target.startswith("/v1/runners/")

    async def serve(self, stream: trio.SocketStream, head: RequestHead, received: bytes) -> bytes:
        self.served.append(head.target)
        await stream.send_all(b"ok\n")
        return received


async def test_a_kept_alive_connection_is_served_on_then_handed_on_with_what_it_sent() -> None:
    route = KeptAlive()
    handed: list[bytes] = []

    async def fallback(stream: trio.SocketStream, received: bytes, head_by: float) -> None:
        handed.append(received)
        await stream.aclose()

    server, client = await pair()
    two = b"".join(PREFIX + b"r%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % n for n in (1, 2))
    other = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    async with client, trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: dispatch(server, LeanRoutes([route]), fallback, idle_seconds=IDLE_SECONDS)
        )
        await client.send_all(two + other)  # pipelined: the second head arrives with the first
        assert await read_all(client) == b"ok\nok\n"
    assert route.served == ["/v1/runners/r1", "/v1/runners/r2"]
    assert handed == [other]


async def test_a_kept_alive_connection_closes_when_the_server_stops() -> None:
    route = KeptAlive()
    routes = LeanRoutes([route])
    handed: list[bytes] = []

    async def fallback(stream: trio.SocketStream, received: bytes, head_by: float) -> None:
        handed.append(received)

    server, client = await pair()
    async with client, trio.open_nursery() as nursery:
        nursery.start_soon(lambda: dispatch(server, routes, fallback, idle_seconds=60))
        await client.send_all(PREFIX + b"r1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        with trio.fail_after(5):
            assert await client.receive_some(10) == b"ok\n"
        await trio.testing.wait_all_tasks_blocked()
        routes.shutdown.stop()
        assert await read_all(client) == b""
    assert handed == []
