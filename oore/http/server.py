"""The HTTP/1.1 server: Hypercorn's connections behind a cap, a framing check and a send shield.

Hypercorn's trio worker serves without a connection limit, so ``serve`` runs its own accept
loop around Hypercorn's per-connection ``TCPServer`` (subclassed as ``_Connection``); this
module is the only one that reaches below ``hypercorn.trio.serve``.

- ``ConnectionGate`` admits at most ``max_connections`` at once. One over the cap gets a
  503 ``overloaded`` and is closed, so the client learns at once instead of waiting in
  the backlog; an accept that fails for want of descriptors waits for a connection to end.
  Either condition is logged once when it starts and once when it clears. Every so many
  closed connections it runs a full garbage collection (see ``COLLECT_AFTER_CLOSED``).
- ``guard_app`` wraps the ASGI app. Hypercorn finishes a response — starts the next
  keep-alive cycle, arms the idle timer, or closes the connection — inside the app's last
  ``send``, and Quart-Trio cancels that task as soon as it sees ``http.disconnect``, which
  Hypercorn delivers from within that same ``send``. Cut short there, the idle timer would
  not be armed after a request (an idle keep-alive connection would stay open for good),
  and a connection answered before its body arrived would be neither recycled nor closed
  (the next request on it never answered). Every send therefore runs shielded.
- An answer given before the request body has arrived waits (bounded) for a small body
  to come in and be discarded, so the connection stays usable; a large or unsized body
  gets ``Connection: close`` instead.
- Each connection's first request head is looked at first (``oore/http/lean``): a request
  a lean route takes (the runner channel's WebSocket upgrade) is served there, without
  Hypercorn or Quart; every other connection goes to Hypercorn with the bytes already
  read handed to it first, as if it had read them itself.
- A request that frames its body two ways (``Content-Length`` and ``Transfer-Encoding``)
  or names a ``Host`` that is not an RFC 3986 authority is answered 400 and the
  connection closed, before the app sees it.
- A request h11 cannot parse (a head over ``h11_max_incomplete_size``, bytes outside
  HTTP's grammar, a transfer coding but chunked) is answered by Hypercorn itself before
  any app runs; ``_Connection`` gives that answer the API's JSON error body (431
  ``headers_too_large``, 501 ``not_implemented``, else 400 ``invalid_request``).
- A request head is due within the keep-alive timeout: the first from the connection's
  start, however the lean listener and Hypercorn share its reading; a later one from the
  end of the response before it. A head sent a byte at a time is dropped then, unanswered.
"""

from __future__ import annotations

import errno
import gc
import json
import logging
import re
import resource
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import h11
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import RawData
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ASGIFramework
from hypercorn.utils import repr_socket_addr, wrap_app

from oore.errors import (
    ApiError,
    HeadersTooLarge,
    InvalidRequest,
    NotImplementedHere,
    ServiceUnavailable,
)
from oore.http.guard import DEFAULT_POLICY, HARDENING_HEADERS
from oore.http.lean.routes import Handed, LeanRoutes, dispatch
from oore.http.requests import new_request_id, request_id_from

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Descriptors kept free besides the database pool: log files, artifact files, the control
# socket, the accept-and-refuse of connections over the cap.
RESERVED_FILES = 256
# The soft limit asked for when the hard limit is unlimited (macOS, some containers).
UNLIMITED_FILES_TARGET = 65536
# A body this small is read and dropped after an early answer so the connection stays open.
DRAIN_BYTES = 1024 * 1024
DRAIN_SECONDS = 5.0
# Refusing a connection over the cap: at most this many at once, each for at most this long.
REFUSALS_IN_FLIGHT = 128
REFUSAL_SECONDS = 1.0
# How long an accept waits for a descriptor to be freed before trying again.
ACCEPT_RETRY_SECONDS = 0.1
# Connections hold reference cycles (Hypercorn's server, protocol and stream objects, trio
# scopes); an idle one lives long enough to reach the oldest GC generation, which the daemon
# collects rarely. A full collection after this many closes, or as many as are open if more,
# returns their memory at a bounded cost per connection.
COLLECT_AFTER_CLOSED = 1000

_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
# RFC 3986 authority: reg-name or IP literal, then an optional port.
_HOST = re.compile(rb"[A-Za-z0-9\-._~%!$&'()*+,;=:\[\]]*")


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    keepalive_seconds: float
    drain_bytes: int = DRAIN_BYTES
    drain_seconds: float = DRAIN_SECONDS


def raise_open_files_limit() -> int:
    """Raise this process's open-files limit to its hard limit; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_FILES_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %d to %d: %s", soft, target, exc)
    return open_files_limit()


def open_files_limit() -> int:
    """This process's soft limit on open files."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return UNLIMITED_FILES_TARGET if soft == resource.RLIM_INFINITY else soft


def connection_cap(requested: int | None, open_files: int, reserved: int) -> int:
    """At most ``requested`` connections, and always fewer than the descriptors left over."""
    room = max(1, open_files - reserved)
    if requested is None:
        return room
    if requested > room:
        log.warning(
            "OORED_MAX_CONNECTIONS=%d does not fit the open-files limit %d; serving at most %d",
            requested,
            open_files,
            room,
        )
        return room
    return requested


def _error_response(
    error: ApiError, request_id: str, *headers: tuple[bytes, bytes]
) -> tuple[Message, Message]:
    envelope = {**error.to_json(), "request_id": request_id}
    body = json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode() + b"\n"
    start: Message = {
        "type": "http.response.start",
        "status": error.status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()),
            *headers,
        ],
    }
    return start, {"type": "http.response.body", "body": body, "more_body": False}


def framing_problem(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Why a request's head must be refused, or None. Header names arrive lower-cased."""
    hosts = [value for name, value in headers if name == b"host"]
    if len(hosts) > 1:
        return "more than one Host header"
    if hosts and not _HOST.fullmatch(hosts[0]):
        return "Host is not a valid host name"
    names = {name for name, _ in headers}
    if b"content-length" in names and b"transfer-encoding" in names:
        return "Content-Length and Transfer-Encoding together"
    return None


class _RequestBody:
    """Watches the body go by on its way to the app; ``complete`` once it has all arrived."""

    def __init__(self, headers: list[tuple[bytes, bytes]], receive: Receive) -> None:
        self._receive = receive
        self.complete = trio.Event()
        self.length: int | None = None
        chunked = False
        for name, value in headers:
            if name == b"content-length" and value.strip().isdigit():
                self.length = int(value)
            elif name == b"transfer-encoding":
                chunked = True
        if not chunked and not self.length:
            self.complete.set()

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.complete.set()
        return message


def guard_app(framework: ASGIFramework, limits: ConnectionLimits) -> ASGIFramework:
    """``framework`` behind the framing check, the early-answer handling and the send shield."""
    app = cast(ASGIApp, framework)

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        problem = framing_problem(scope["headers"])
        if problem is not None:
            error = InvalidRequest("invalid_request", "Malformed HTTP request", details=problem)
            try:
                request_id = request_id_from(scope["headers"])
                for message in _error_response(error, request_id, (b"connection", b"close")):
                    await _shielded(send, message)
            except (trio.BusyResourceError, trio.ClosedResourceError, trio.BrokenResourceError):
                # Data sent after such a request makes Hypercorn close the connection under
                # the answer; the request is refused either way.
                pass
            return
        body = _RequestBody(scope["headers"], receive)
        await app(scope, body.receive, partial(_send, send, body, limits))

    return cast(ASGIFramework, guarded)


async def _send(send: Send, body: _RequestBody, limits: ConnectionLimits, message: Message) -> None:
    if not body.complete.is_set():
        if message["type"] == "http.response.start":
            if body.length is None or body.length > limits.drain_bytes:
                # Answered before a body too big to wait for: this connection ends here.
                headers = [*message.get("headers", ()), (b"connection", b"close")]
                message = {**message, "headers": headers}
                body.complete.set()
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            # The answer goes out now; its end waits (bounded) for the request body, which
            # the app keeps receiving and dropping until its task ends. Hypercorn reuses the
            # connection only if the whole body is in when the answer ends, else closes it.
            if message.get("body"):
                await _shielded(send, {**message, "more_body": True})
            with trio.move_on_after(limits.drain_seconds):
                await body.complete.wait()
            message = {"type": "http.response.body", "body": b"", "more_body": False}
    await _shielded(send, message)


async def _shielded(send: Send, message: Message) -> None:
    # Hypercorn's own socket writes are shielded already; this extends the shield over the
    # connection bookkeeping that follows a response's last message.
    with trio.CancelScope(shield=True):
        await send(message)


class ConnectionGate:
    """Admits connections up to a cap; refuses the rest promptly; logs each condition once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0
        self._refusing = 0
        self._full_reason: str | None = None
        self._closed = trio.Event()
        self._closed_since_collect = 0

    async def serve(
        self,
        listener: trio.SocketListener,
        handler: Callable[[trio.SocketStream], Awaitable[None]],
        connections: trio.Nursery,
    ) -> None:
        """Accept from ``listener`` until cancelled, running ``handler`` in ``connections``."""
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in _CAPACITY_ERRNOS:
                        raise
                    self._became_full(f"out of descriptors: {exc.strerror}; new ones wait")
                    with trio.move_on_after(ACCEPT_RETRY_SECONDS):
                        await self._closed.wait()
                    continue
                self.admit(stream, handler, connections)

    def admit(
        self,
        stream: trio.SocketStream,
        handler: Callable[[trio.SocketStream], Awaitable[None]],
        connections: trio.Nursery,
    ) -> None:
        """Run ``handler`` on a new connection in ``connections``, or refuse it at the cap."""
        if self.open >= self.limit:
            self._became_full(f"{self.open} open, the cap; the excess gets 503")
            self.refused += 1
            connections.start_soon(self._refuse, stream)
            return
        self._has_room()
        self.open += 1
        connections.start_soon(self._run, handler, stream)

    async def _run(
        self, handler: Callable[[trio.SocketStream], Awaitable[None]], stream: trio.SocketStream
    ) -> None:
        try:
            await handler(stream)
        finally:
            self.open -= 1
            self._closed.set()
            self._closed = trio.Event()
            self._closed_since_collect += 1
            if self._closed_since_collect >= max(COLLECT_AFTER_CLOSED, self.open):
                self._closed_since_collect = 0
                gc.collect()

    async def _refuse(self, stream: trio.SocketStream) -> None:
        """Answer 503 and close, reading what the client sent so the close does not reset
        the connection under the answer (for as many at once as the reserve allows)."""
        lingering = self._refusing < REFUSALS_IN_FLIGHT
        self._refusing += lingering
        try:
            with trio.move_on_after(REFUSAL_SECONDS if lingering else 0.1):
                await stream.send_all(_refusal())  # a new socket's buffer takes it at once
                await stream.send_eof()
                received = 0
                while lingering and received < DRAIN_BYTES:
                    chunk = await stream.receive_some()
                    if not chunk:
                        break
                    received += len(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._refusing -= lingering
            await stream.aclose()

    def _became_full(self, reason: str) -> None:
        if self._full_reason is None:
            self._full_reason = reason
            log.warning("refusing connections (%s)", reason)

    def _has_room(self) -> None:
        # Nine tenths of the cap before saying so, so a daemon at its cap logs rarely.
        if self._full_reason is not None and self.open < self.limit * 9 // 10:
            log.warning(
                "accepting connections again (%d were refused since %s)",
                self.refused,
                self._full_reason,
            )
            self._full_reason = None
            self.refused = 0


def _refusal() -> bytes:
    """The 503 for a connection over the cap, sent before its request is read. It is not
    logged one by one: the gate logs when refusing starts and when it ends."""
    start, end = _error_response(
        ServiceUnavailable("overloaded", "Too many open connections; retry shortly"),
        new_request_id(),
        (b"connection", b"close"),
        (b"retry-after", b"1"),
    )
    head = b"".join(name + b": " + value + b"\r\n" for name, value in start["headers"])
    body: bytes = end["body"]
    return b"HTTP/1.1 503 Service Unavailable\r\n" + head + b"\r\n" + body


def protocol_error(status: int, head_limit: int) -> ApiError:
    """The API error for a request h11 refused with ``status`` before any app saw it
    (``head_limit``: the bytes an incomplete head may take)."""
    if status == 431:
        return HeadersTooLarge(
            details=f"the request line and headers are over {head_limit // 1024} KiB"
        )
    if status == 501:
        return NotImplementedHere(details="Transfer-Encoding other than chunked")
    return InvalidRequest(
        "invalid_request",
        "Malformed HTTP request",
        details="the request is not well-formed HTTP/1.1",
    )


async def _send_protocol_error(protocol: H11Protocol, status: int) -> None:
    """Hypercorn's answer to a request h11 refused, with the API's JSON error as its body
    (Hypercorn's own has none) and ``Connection: close``."""
    request_id = new_request_id()
    error = protocol_error(status, protocol.config.h11_max_incomplete_size)
    envelope = {**error.to_json(), "request_id": request_id}
    body = json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body) + 1).encode()),
        (b"x-request-id", request_id.encode()),
        *((name.lower().encode(), value.encode()) for name, value in HARDENING_HEADERS),
        (b"content-security-policy", DEFAULT_POLICY.encode()),
        (b"connection", b"close"),
        *protocol.config.response_headers("h11"),
    ]
    await protocol._send_h11_event(h11.Response(status_code=error.status, headers=headers))
    await protocol._send_h11_event(h11.Data(data=body + b"\n"))
    await protocol._send_h11_event(h11.EndOfMessage())


class _Connection(TCPServer):
    """Hypercorn's connection, which lets go of its socket as soon as the peer has gone,
    and answers a request h11 refuses with a JSON error (:func:`protocol_error`).

    Hypercorn closes the socket once every task of the connection has ended, the idle
    timer included; after the peer closes, that timer would hold the descriptor (and a
    place under the cap) for the whole keep-alive time. No request can follow an end of
    stream, so the timer stops there.

    The first request's head must be whole by ``first_head_by`` (trio time): the
    connection's start plus the keep-alive timeout, the time the lean listener spent
    reading its first bytes included, so a head sent a byte at a time is not given the
    keep-alive time twice. Later heads get the keep-alive timeout from the end of the
    response before them, as in Hypercorn.
    """

    def __init__(self, *args: Any, received: bytes = b"", first_head_by: float) -> None:
        super().__init__(*args)
        self._received = received
        self._first_head_by: float | None = first_head_by

    async def _idle_timeout(self) -> None:
        if self._first_head_by is None:
            await super()._idle_timeout()
            return
        deadline, self._first_head_by = self._first_head_by, None
        with trio.move_on_at(deadline):
            await self.context.terminated.wait()
        with trio.CancelScope(shield=True):
            await self._initiate_server_close()

    async def _read_data(self) -> None:
        inner = self.protocol.protocol
        if isinstance(inner, H11Protocol):  # the protocol exists once reading starts
            inner._send_error_response = partial(_send_protocol_error, inner)  # type: ignore[method-assign]
        if self._received:  # what the lean listener read before handing the connection on
            received, self._received = self._received, b""
            await self.protocol.handle(RawData(received))
        await super()._read_data()
        await self.idle_task.stop()


async def serve(
    app: ASGIFramework,
    config: HypercornConfig,
    limits: ConnectionLimits,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    lean: LeanRoutes | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``config.bind`` (plain HTTP) until ``shutdown_trigger`` returns;
    requests the ``lean`` routes take are theirs (see oore/http/lean).

    Ordering as in Hypercorn's own worker: the app's lifespan starts before the first
    accept and ends after the last connection; on shutdown, accepting stops, idle
    connections close, and requests in flight get ``config.graceful_timeout``.
    """
    if config.ssl_enabled:
        raise ValueError("oored serves plain HTTP; TLS belongs to a proxy in front")
    config.keep_alive_timeout = limits.keepalive_seconds
    asgi = wrap_app(guard_app(app, limits), config.wsgi_max_body_size, "asgi")
    state: dict[str, Any] = {}
    lifespan = Lifespan(asgi, config, state)
    context = WorkerContext(None)
    gate = ConnectionGate(limits.max_connections)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        listeners: list[trio.SocketListener] = []
        binds: list[str] = []
        for sock in config.create_sockets().insecure_sockets:
            sock.listen(config.backlog)
            listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
            binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")

        lean_routes = lean or LeanRoutes()

        async def hypercorn(
            stream: trio.SocketStream, received: bytes, first_head_by: float
        ) -> None:
            # Hypercorn types the stream as TLS; a plain one is what it gets without TLS.
            plain: Any = stream
            try:
                await _Connection(
                    asgi,
                    config,
                    context,
                    state.copy(),
                    plain,
                    received=received,
                    first_head_by=first_head_by,
                )
            finally:
                # Cancelled while closing (the server stops), Hypercorn leaves it open.
                await trio.aclose_forcefully(stream)

        def connection(stream: trio.SocketStream, handed: Handed | None = None) -> Awaitable[None]:
            return dispatch(
                stream,
                lean_routes,
                hypercorn,
                idle_seconds=config.keep_alive_timeout,
                handed=handed,
            )

        async with trio.open_nursery() as connections:

            def handed(stream: trio.SocketStream, received: bytes, head_by: float) -> None:
                handler = partial(connection, handed=Handed(received, head_by))
                gate.admit(stream, handler, connections)

            async with trio.open_nursery() as acceptors:
                if lean_routes.lanes is not None:
                    await acceptors.start(lean_routes.lanes.take, handed)
                for listener in listeners:
                    acceptors.start_soon(gate.serve, listener, connection, connections)
                task_status.started(binds)
                await shutdown_trigger()
                acceptors.cancel_scope.cancel()
            lean_routes.shutdown.stop()
            await context.terminated.set()
            connections.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
