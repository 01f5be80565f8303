"""The runner channel, ``GET /v1/runners/{runner_id}/channel``: one WebSocket per runner
for its heartbeats, claims, job-state polls, status reports and log batches (the
operations of :mod:`oore.protocol.runner`, performed by :mod:`oore.http.runner_ops`).

Before the upgrade is accepted it passes the checks every request passes: a well-formed
head and Host, the Host/Origin guard (oore/http/guard.py), and the runner's
authentication (401/403); a refusal is a plain HTTP error answer with the usual JSON body
and request id. The connection cap is the server's (it counts this connection like any).

Then each text frame is one request ``{"id": <int>, "op": <op>, ...fields}`` answered by
``{"id", "ok": true, ...}`` or ``{"id", "ok": false, "status", "code", "error",
"details"?}``. Requests run concurrently, at most :data:`~oore.protocol.runner.MAX_IN_FLIGHT`
(beyond that the channel stops reading), so replies may come in any order. Every request
authenticates again (from the runner cache, renewing the runner's lease); a runner deleted
meanwhile gets its 401 and the channel is closed (1008). A WebSocket ping or pong renews the
lease too. A frame over 2 MiB closes the channel (1009); a stopping server answers what is in
flight and closes (1001). A runner that stops reading is disconnected once its replies fill
the send buffer.

:class:`RunnerSession` is the channel once accepted, over any :class:`FrameSocket`: the
lean :class:`~oore.http.lean.websocket.WebSocket` in the daemon, Quart's websocket where
the app is served on its own (oore/http/routes/runner_channel.py).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import orjson
import trio

from oore.domain.json_input import JsonInputError, decode_json
from oore.domain.rate_limit import GuessLimiter
from oore.domain.tokens import missing_auth
from oore.errors import ApiError, InternalError, InvalidRequest, Unauthorized
from oore.http.context import AppServices
from oore.http.guard import check_request
from oore.http.lean.answers import LINGER_SECONDS, linger, switching_protocols
from oore.http.lean.exchange import Exchange, peer_address, starts_like
from oore.http.lean.head import RequestHead
from oore.http.lean.lanes import RUNNERS, RUNNERS_SLOT, Lanes
from oore.http.lean.log_stream import LogStreamRoute
from oore.http.lean.reads import API_WORKER_READS_AT_ONCE, READS_AT_ONCE, ReadRoute
from oore.http.lean.routes import LeanRoutes, Shutdown
from oore.http.lean.websocket import WebSocket
from oore.http.metrics import Metrics
from oore.http.runner_ops import RunnerOps
from oore.http.server import framing_problem
from oore.protocol import runner as protocol
from oore.services.network import Network

log = logging.getLogger(__name__)

# A runner whose replies pile up past this (it stopped reading) is disconnected.
SEND_BUFFER = 1024 * 1024
# Frames up to this many bytes decode on the event loop; larger ones on a worker thread.
INLINE_DECODE_MAX = 64 * 1024

_PATH = re.compile(r"/v1/runners/([^/]+)/channel")
_START = b"GET /v1/runners/"


class FrameSocket(Protocol):
    """What a session needs of its WebSocket."""

    async def receive(self) -> str | bytes | None:
        """The next message; None once the connection is over."""

    async def send_text(self, payload: bytes) -> None:
        """Send a text message (UTF-8)."""

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame."""

    def on_open(self, scope: trio.CancelScope) -> None:
        """The session's scope, to cancel when the connection must end at once (the peer
        stopped reading)."""


@dataclass(frozen=True)
class ChannelLimits:
    max_frame: int = protocol.MAX_FRAME
    max_in_flight: int = protocol.MAX_IN_FLIGHT
    send_buffer: int = SEND_BUFFER


class RunnerSession:
    """One accepted channel: reads frames and answers each in a task of its own nursery."""

    __slots__ = (
        "_authorization",
        "_closed",
        "_cpu",
        "_in_flight",
        "_max_in_flight",
        "_ops",
        "_room",
        "_runner_id",
        "_shutdown",
        "_socket",
    )

    def __init__(
        self,
        ops: RunnerOps,
        runner_id: str,
        authorization: str | None,
        socket: FrameSocket,
        *,
        cpu: trio.CapacityLimiter,
        max_in_flight: int = protocol.MAX_IN_FLIGHT,
        shutdown: Shutdown | None = None,
    ) -> None:
        self._ops = ops
        self._runner_id = runner_id
        self._authorization = authorization
        self._socket = socket
        self._cpu = cpu
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._room: trio.Event | None = None  # while reading waits for a request to end
        self._shutdown = shutdown or Shutdown()
        self._closed = False

    async def serve(self) -> None:
        """Until the runner disconnects or is refused, or the server stops (then close 1001)."""
        async with trio.open_nursery() as nursery:
            self._socket.on_open(nursery.cancel_scope)
            # Reading ends when the server begins to stop; the requests in flight then
            # answer at once (their long polls are cut short too).
            with self._ops.runners.long_poll() as reading:
                self._shutdown.add(reading)
                try:
                    await self._read(nursery)
                finally:
                    self._shutdown.discard(reading)
        if not self._closed:
            self._closed = True
            await self._socket.close(protocol.CLOSE_GOING_AWAY, "the server is stopping")

    async def _read(self, nursery: trio.Nursery) -> None:
        while not self._closed:
            while self._in_flight >= self._max_in_flight:
                self._room = trio.Event()
                await self._room.wait()
            self._room = None
            frame = await self._socket.receive()
            if frame is None:  # the runner went away: nothing left to answer
                self._closed = True
                nursery.cancel_scope.cancel()
                return
            self._in_flight += 1
            nursery.start_soon(self._answer, frame, nursery.cancel_scope)

    async def _answer(self, frame: str | bytes, scope: trio.CancelScope) -> None:
        request_id: int | None = None
        try:
            data = await self._decode(frame)
            request_id = protocol.request_id_of(data)
            parsed = protocol.parse_frame(data)
            body = self._ops.request(parsed.op, parsed.fields)
            runner = await self._ops.runners.authenticate(self._authorization, self._runner_id)
            reply = await self._ops.perform(runner, parsed.op, parsed.build_id, body)
            await self._send(protocol.ok_reply(parsed.id, reply))
        except Unauthorized as error:
            # The runner's token is gone (deleted runner): say so, then end the channel.
            await self._send(protocol.error_reply(request_id, error))
            await self._close(scope)
        except ApiError as error:
            await self._send(protocol.error_reply(request_id, error))
        except Exception:
            log.exception("runner channel request failed (runner %s)", self._runner_id)
            await self._send(protocol.error_reply(request_id, InternalError()))
        finally:
            self._in_flight -= 1
            if self._room is not None:
                self._room.set()

    async def _decode(self, frame: str | bytes) -> Any:
        """The frame's JSON within the bounds of :mod:`oore.domain.json_input`."""
        try:
            if len(frame) <= INLINE_DECODE_MAX:
                return decode_json(frame)
            return await trio.to_thread.run_sync(decode_json, frame, limiter=self._cpu)
        except JsonInputError as exc:
            raise InvalidRequest(details=f"frame {exc}") from None

    async def _send(self, reply: dict[str, Any]) -> None:
        if not self._closed:
            await self._socket.send_text(encode(reply))

    async def _close(self, scope: trio.CancelScope) -> None:
        if not self._closed:
            self._closed = True
            await self._socket.close(
                protocol.CLOSE_POLICY_VIOLATION, "runner token no longer valid"
            )
        scope.cancel()


def encode(reply: dict[str, Any]) -> bytes:
    """Compact JSON, as UTF-8."""
    try:
        return orjson.dumps(reply)
    except (orjson.JSONEncodeError, TypeError):  # what orjson refuses (lone surrogates)
        return json.dumps(reply, separators=(",", ":")).encode()


class RunnerChannelRoute:
    """The lean route of the runner channel's upgrade."""

    lane = RUNNERS

    def __init__(
        self,
        ops: RunnerOps,
        network: Network,
        *,
        cpu: trio.CapacityLimiter,
        shutdown: Shutdown,
        limits: ChannelLimits = ChannelLimits(),
        access_log: bool = False,
        guesses: GuessLimiter,
    ) -> None:
        self._ops = ops
        self._network = network
        self._guesses = guesses
        self._cpu = cpu
        self._shutdown = shutdown
        self._limits = limits
        self._access_log = access_log

    def may_take(self, start: bytes) -> bool:
        return starts_like(start, _START)

    def takes(self, head: RequestHead) -> bool:
        return (
            head.method == "GET"
            and "websocket" in head.tokens(b"upgrade")
            and _PATH.fullmatch(head.path) is not None
        )

    async def serve(self, stream: trio.SocketStream, head: RequestHead, received: bytes) -> None:
        authorization = head.header(b"authorization")
        async with Exchange(stream, head, access_log=self._access_log) as exchange:
            try:
                runner_id, key = await self._upgrade(stream, head)
            except ApiError as error:
                await exchange.refuse(error)
                return
            del head  # read: not kept for the channel's life
            await stream.send_all(switching_protocols(key, exchange.request_id))
            exchange.status = 101
            ws = WebSocket(
                stream,
                max_message=self._limits.max_frame,
                send_limit=self._limits.send_buffer,
                received=received,
                on_alive=partial(self._ops.runners.seen, runner_id),
            )
            del key, received
            session = RunnerSession(
                self._ops,
                runner_id,
                authorization,
                ws,
                cpu=self._cpu,
                max_in_flight=self._limits.max_in_flight,
                shutdown=self._shutdown,
            )
            await session.serve()
            if ws.close_code is not None and not ws.overflowed:  # a close frame went out
                with trio.move_on_after(LINGER_SECONDS):
                    await linger(stream)

    async def _upgrade(self, stream: trio.SocketStream, head: RequestHead) -> tuple[str, str]:
        """The runner id and the WebSocket key, once the upgrade passed every check."""
        problem = framing_problem(head.headers)
        if problem is not None:
            raise InvalidRequest("invalid_request", "Malformed HTTP request", details=problem)
        check_request(
            self._network,
            raw_host=head.header(b"host"),
            origin=head.header(b"origin"),
            path=head.path,
            scheme="ws",
            changes_state=True,
        )
        key = head.header(b"sec-websocket-key")
        if key is None or head.header(b"sec-websocket-version") != "13":
            raise InvalidRequest(details="not a WebSocket version 13 upgrade")
        if "upgrade" not in head.tokens(b"connection"):
            raise InvalidRequest(details="Connection: Upgrade is required")
        match = _PATH.fullmatch(head.path)
        runner_id = match.group(1) if match else ""
        authorization = head.header(b"authorization")
        if authorization is None:
            raise missing_auth()
        client = head.client_ip(peer_address(stream))
        if self._guesses.anyone_locked:
            refusal = self._guesses.refusal(client, (authorization,))
            if refusal is not None:
                raise refusal
        try:
            await self._ops.runners.authenticate(authorization, runner_id)
        except Unauthorized:
            self._guesses.failed(client)
            raise
        return runner_id, key


def lean_routes(
    services: AppServices,
    *,
    access_log: bool = False,
    limits: ChannelLimits = ChannelLimits(),
    metrics: Metrics | None = None,
    lanes: Lanes | None = None,
) -> LeanRoutes:
    """The daemon's lean routes: the runner channel, the build log stream and the hot
    reads (``metrics``: the app's, which count the reads as Quart's requests); ``lanes``:
    this worker's, with ``oored --workers N``."""
    shutdown = Shutdown()
    channel = RunnerChannelRoute(
        RunnerOps(services.runners, services.builds, services.logs),
        services.network,
        cpu=services.cpu,
        shutdown=shutdown,
        limits=limits,
        access_log=access_log,
        guesses=services.guesses,
    )
    log_stream = LogStreamRoute(services, shutdown=shutdown, access_log=access_log)
    api_only = lanes is not None and lanes.slot != RUNNERS_SLOT
    reads = ReadRoute(
        services,
        metrics=metrics,
        access_log=access_log,
        at_once=API_WORKER_READS_AT_ONCE if api_only else READS_AT_ONCE,
    )
    return LeanRoutes([channel, log_stream, reads], shutdown, lanes)
