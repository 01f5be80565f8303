"""The lean routing table and the dispatch of each new connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import trio

from oore.http.lean.head import TIMED_OUT, RequestHead, parse_head, read_head
from oore.http.lean.lanes import API, Lanes


class LeanRoute(Protocol):
    """A kind of request served by the lean listener."""

    # Where a connection whose first request this route takes is served, with
    # ``oored --workers N`` (see :mod:`.lanes`).
    lane: str

    def may_take(self, start: bytes) -> bool:
        """Whether a head beginning with ``start`` (possibly only its first bytes) may be
        one this route takes: while True, the dispatch reads on."""

    def takes(self, head: RequestHead) -> bool:
        """Whether this route serves ``head``."""

    async def serve(
        self, stream: trio.SocketStream, head: RequestHead, received: bytes
    ) -> bytes | None:
        """Serve the request (``received``: bytes read after the head). None: the route
        owned ``stream`` and closed it. Bytes: the request was answered and the connection
        stays open (keep-alive); the bytes are what was read after the request, and the
        dispatch reads the next request from there. A long-lived connection drops ``head``
        once it has read it, so it is not kept for its whole life."""


class Shutdown:
    """Tells lean connections the server is stopping: each registers the cancel scope of
    what must end then (a runner channel's reading; it then answers what is in flight and
    closes with 1001), and :meth:`stop` cancels them all."""

    def __init__(self) -> None:
        self._scopes: set[trio.CancelScope] = set()
        self.stopping = False

    def add(self, scope: trio.CancelScope) -> None:
        if self.stopping:
            scope.cancel()
        self._scopes.add(scope)

    def discard(self, scope: trio.CancelScope) -> None:
        self._scopes.discard(scope)

    def stop(self) -> None:
        self.stopping = True
        for scope in self._scopes:
            scope.cancel()


class LeanRoutes:
    """The lean routes, tried in order, how they learn the server is stopping, and this
    worker's lanes (``oored --workers N``)."""

    def __init__(
        self,
        routes: Sequence[LeanRoute] = (),
        shutdown: Shutdown | None = None,
        lanes: Lanes | None = None,
    ) -> None:
        self.routes = tuple(routes)
        self.shutdown = shutdown or Shutdown()
        self.lanes = lanes

    def may_take(self, start: bytes) -> bool:
        return any(route.may_take(start) for route in self.routes)

    def route(self, head: RequestHead) -> LeanRoute | None:
        for route in self.routes:
            if route.takes(head):
                return route
        return None


@dataclass(frozen=True)
class Handed:
    """A connection another worker accepted and handed to this one: the bytes it read, and
    the time by which the first head must be whole."""

    received: bytes
    head_by: float


async def dispatch(
    stream: trio.SocketStream,
    routes: LeanRoutes,
    fallback: Callable[[trio.SocketStream, bytes, float], Awaitable[None]],
    *,
    idle_seconds: float,
    handed: Handed | None = None,
) -> None:
    """Serve ``stream`` by the lean route each request head asks for, else by
    ``fallback`` (Hypercorn), which gets the bytes already read to handle first and the
    time by which its first head must be whole.

    A lean route may keep the connection open after its answer (HTTP/1.1 keep-alive):
    the next request is dispatched the same way, so a connection goes to Hypercorn at its
    first request no lean route takes, and stays there.

    A connection that sends no whole head within ``idle_seconds`` (from its start, or from
    the end of the answer before) is closed, as Hypercorn closes one that sends none
    within its keep-alive timeout (the same time): handing a slow head on would give it
    that time again.

    With lanes, a new connection whose first request belongs to another worker's lane is
    handed to that worker once its head is read (or known not to be a lean route's);
    ``handed``: this worker got the connection so, and serves it.
    """
    head_by = trio.current_time() + idle_seconds if handed is None else handed.head_by
    received = b"" if handed is None else handed.received
    if not routes.routes:
        await fallback(stream, received, head_by)
        return
    lanes = routes.lanes if handed is None else None
    kept_alive = False
    while True:
        # Between requests a kept-alive connection is idle: a stopping server closes it
        # at once, as Hypercorn closes its idle ones.
        with trio.CancelScope() as idle:
            if kept_alive:
                routes.shutdown.add(idle)
            try:
                received, end = await read_head(stream, routes.may_take, idle_seconds, received)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                received, end = b"", 0
            except BaseException:  # cancelled (the server stops): the socket is ours to close
                await trio.aclose_forcefully(stream)
                raise
            finally:
                routes.shutdown.discard(idle)
        if idle.cancelled_caught:
            await trio.aclose_forcefully(stream)
            return
        if not received or end == TIMED_OUT:
            await trio.aclose_forcefully(stream)
            return
        head: RequestHead | None = None
        route: LeanRoute | None = None
        if end and routes.may_take(received):
            head = parse_head(received[:end])
            route = None if head is None else routes.route(head)
        if lanes is not None:
            lane = API if route is None else route.lane
            if await lanes.hand_over(lane, stream, received, head_by):
                await trio.aclose_forcefully(stream)
                return
            lanes = None  # later requests stay where the connection is
        if head is not None and route is not None:
            serving = route.serve(stream, head, received[end:])
            del received, head  # the route keeps what it needs, for as long as it needs it
            left = await serving
            if left is None:
                return
            received = left
            head_by = trio.current_time() + idle_seconds
            kept_alive = True
            continue
        await fallback(stream, received, head_by)
        return
