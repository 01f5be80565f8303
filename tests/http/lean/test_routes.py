"""The dispatch of a new connection: to a lean route, to Hypercorn, or closed."""

from __future__ import annotations

import trio

from oore.http.lean.exchange import starts_like
from oore.http.lean.head import RequestHead
from oore.http.lean.routes import LeanRoutes, dispatch
from tests.http.lean.test_exchange import pair, read_all

PREFIX = b"GET /v1/runners/"
IDLE_SECONDS = 0.5


class Runners:
    """A lean route for heads under ``/v1/runners/`` that records what it served."""

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
