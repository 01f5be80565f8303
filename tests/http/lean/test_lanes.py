"""Lanes: connections handed between workers over Unix sockets, for real, in one process."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from oore.http.lean.exchange import starts_like
from oore.http.lean.head import RequestHead
from oore.http.lean.lanes import API, RUNNERS, Lanes
from oore.http.lean.routes import Handed, LeanRoutes, dispatch
from tests.http.lean.test_exchange import read_all

CHANNEL = b"GET /v1/runners/r1/channel HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"
IDLE_SECONDS = 5.0


def prefix() -> str:
    return f"oore-test-lanes-{secrets.token_hex(6)}"


@asynccontextmanager
async def tcp_pair() -> AsyncIterator[tuple[trio.SocketStream, trio.SocketStream]]:
    """A server-side and a client-side stream of one real loopback TCP connection."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listeners[0] as listener:
        port = listener.socket.getsockname()[1]
        client = await trio.open_tcp_stream("127.0.0.1", port)
        server = await listener.accept()
    async with client, server:
        yield server, client


class Taken:
    """What a worker's :meth:`Lanes.take` admitted."""

    def __init__(self) -> None:
        self.connections: list[tuple[trio.SocketStream, bytes, float]] = []
        self.arrived = trio.Event()

    def admit(self, stream: trio.SocketStream, received: bytes, head_by: float) -> None:
        self.connections.append((stream, received, head_by))
        self.arrived.set()

    async def next(self) -> tuple[trio.SocketStream, bytes, float]:
        with trio.fail_after(5):
            await self.arrived.wait()
        self.arrived = trio.Event()
        return self.connections[-1]


async def test_a_connection_handed_over_is_the_same_connection_in_the_other_worker() -> None:
    name = prefix()
    runners, api = Lanes(name, 0, 2), Lanes(name, 1, 2)
    taken = Taken()
    async with trio.open_nursery() as nursery:
        await nursery.start(runners.take, taken.admit)
        async with tcp_pair() as (server, client):
            head_by = trio.current_time() + IDLE_SECONDS
            assert await api.hand_over(RUNNERS, server, CHANNEL, head_by)
            peer = server.socket.getpeername()
            await server.aclose()  # what dispatch does with its copy
            stream, received, deadline = await taken.next()
            async with stream:
                assert received == CHANNEL
                assert 0 < deadline - trio.current_time() <= IDLE_SECONDS  # the time left
                assert stream.socket.getpeername() == peer
                await client.send_all(b"ping")
                assert await stream.receive_some(4) == b"ping"
                await stream.send_all(b"pong")
            assert await read_all(client) == b"pong"
        assert (api.handed, runners.taken, api.kept) == (1, 1, 0)
        nursery.cancel_scope.cancel()
    api.close()


def test_the_runners_go_to_slot_0_and_the_api_to_the_others_in_turn() -> None:
    name = prefix()
    first, second, third = (Lanes(name, slot, 3) for slot in range(3))
    assert [first.home(API) for _ in range(4)] == [1, 2, 1, 2]
    assert (second.home(API), third.home(API)) == (1, 2)
    assert {lanes.home(RUNNERS) for lanes in (first, second, third)} == {0}


async def test_a_connection_whose_worker_is_away_stays_and_a_worker_back_is_reached() -> None:
    name = prefix()
    api = Lanes(name, 1, 2, retry_seconds=0)
    async with tcp_pair() as (server, _client):
        head_by = trio.current_time() + IDLE_SECONDS
        assert not await api.hand_over(RUNNERS, server, CHANNEL, head_by)
        assert api.kept == 1
        for _ in range(2):  # the second time, the worker restarted since the last hand-over
            runners, taken = Lanes(name, 0, 2), Taken()
            async with trio.open_nursery() as nursery:
                await nursery.start(runners.take, taken.admit)
                assert await api.hand_over(RUNNERS, server, CHANNEL, head_by)
                stream, _, _ = await taken.next()
                await stream.aclose()
                nursery.cancel_scope.cancel()
        assert (api.handed, api.kept) == (2, 1)
    api.close()


async def test_a_connection_that_read_too_much_is_served_where_it_is() -> None:
    api = Lanes(prefix(), 1, 2)
    async with tcp_pair() as (server, _client):
        big = CHANNEL + b"x" * 100_000
        assert not await api.hand_over(RUNNERS, server, big, trio.current_time() + IDLE_SECONDS)
    assert (api.handed, api.kept) == (0, 0)


class Recorder:
    """A lean route of the runners' lane that says which worker served it."""

    lane = RUNNERS

    def __init__(self, worker: str, served: list[tuple[str, str]]) -> None:
        self._worker = worker
        self._served = served

    def may_take(self, start: bytes) -> bool:
        return starts_like(start, b"GET /v1/runners/")

    def takes(self, head: RequestHead) -> bool:
        return head.path.endswith("/channel")

    async def serve(self, stream: trio.SocketStream, head: RequestHead, received: bytes) -> None:
        self._served.append((self._worker, head.target))
        await stream.send_all(self._worker.encode())
        await stream.aclose()


class Worker:
    """One worker's dispatch: its routes with its lanes, and a fallback that says which
    worker served."""

    def __init__(
        self, name: str, lanes: Lanes, served: list[tuple[str, str]], nursery: trio.Nursery
    ) -> None:
        self.name = name
        self.routes = LeanRoutes([Recorder(name, served)], lanes=lanes)
        self._served = served
        self._nursery = nursery

    async def fallback(self, stream: trio.SocketStream, received: bytes, head_by: float) -> None:
        self._served.append((self.name, received.decode()))
        await stream.send_all(self.name.encode())
        await stream.aclose()

    async def dispatch(self, stream: trio.SocketStream, handed: Handed | None = None) -> None:
        await dispatch(stream, self.routes, self.fallback, idle_seconds=IDLE_SECONDS, handed=handed)

    def admit(self, stream: trio.SocketStream, received: bytes, head_by: float) -> None:
        self._nursery.start_soon(self.dispatch, stream, Handed(received, head_by))


async def test_dispatch_hands_each_connection_to_the_worker_of_its_lane() -> None:
    """A runner's channel accepted by an API worker is served by the runners' worker, and
    any other request accepted by the runners' worker by an API worker, with the bytes
    the first read."""
    name = prefix()
    served: list[tuple[str, str]] = []
    workers: dict[str, Worker] = {}
    async with trio.open_nursery() as nursery:
        for slot, worker in enumerate(("runners", "api")):
            lanes = Lanes(name, slot, 2)
            workers[worker] = Worker(worker, lanes, served, nursery)
            await nursery.start(lanes.take, workers[worker].admit)

        async def request(accepted_by: str, sent: bytes) -> bytes:
            async with tcp_pair() as (server, client):
                await client.send_all(sent)
                nursery.start_soon(workers[accepted_by].dispatch, server)
                return await read_all(client)

        post = b"POST /v1/projects HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
        assert await request("api", CHANNEL) == b"runners"
        assert await request("runners", CHANNEL) == b"runners"
        assert await request("runners", post) == b"api"
        assert await request("api", post) == b"api"
        nursery.cancel_scope.cancel()
    assert served == [
        ("runners", "/v1/runners/r1/channel"),
        ("runners", "/v1/runners/r1/channel"),
        ("api", post.decode()),
        ("api", post.decode()),
    ]
    for each in workers.values():
        assert each.routes.lanes is not None
        each.routes.lanes.close()
