"""The runner side of the runner channel: one WebSocket to ``/v1/runners/<id>/channel``
carrying the runner loop's calls (heartbeat, claim, job state, status report, log batch).

:class:`RunnerChannel` has the same calls, signatures and errors as
:class:`~oore.runner.client.RunnerClient` (both are
:class:`~oore.runner.client.RunnerOperations`, the operations of
:mod:`oore.protocol.runner` over a transport): a refusal is :class:`ServerError` with the HTTP
status and code the server put in its reply, a dropped or unreachable connection is
:class:`ConnectionFailed` (retryable: the next call connects again). An upgrade answered
404 raises :class:`ChannelNotOffered`: the server has no channel (an older or
contract-only server). :class:`ChannelRunnerClient` is the RunnerClient the agent uses:
those five calls over the channel while the server offers it, plain HTTP otherwise.

The connection belongs to :meth:`RunnerChannel.run`, a task the caller starts in its own
nursery: it connects when a call needs a connection, reads the replies and hands each to
the call waiting for its ``id``, and drops the connection (failing the calls still
waiting) when it breaks. While connected it pings the server every
:attr:`RunnerChannel.ping_every` seconds (:meth:`~RunnerChannel.keep_alive`): the server
renews the runner's lease on every frame, ping and pong, so heartbeats over a channel
need only carry status changes (see oore/runner/agent.py).

Given several URLs (:class:`~oore.runner.servers.Servers`), a connection goes to the one in
use when it is made. A connection that cannot be made, or that closes with calls waiting
for replies, or a call with no answer in time, moves the runner on to the next URL; a
connection to a URL the runner has moved on from is dropped before the next call, which
connects to the one in use.
"""

from __future__ import annotations

import itertools
import json
import ssl
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

from oore.protocol import runner as protocol
from oore.runner.client import (
    DEFAULT_TIMEOUT,
    ConnectionFailed,
    ProtocolError,
    RunnerClient,
    RunnerCredentials,
    RunnerError,
    RunnerOperations,
    ServerError,
)
from oore.runner.servers import Server, Servers

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0
# WebSocket pings renew the runner's lease; this often until the agent learns the lease.
PING_EVERY = 10.0
# Replies carry a job's config snapshot or a build with its events: allow them room.
MAX_REPLY = 16 * 1024 * 1024


class ChannelNotOffered(RunnerError):
    """The server answered the upgrade 404: it serves no runner channel."""


class _Pending:
    """One call waiting for its reply."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.reply: dict[str, Any] | None = None
        self.error: RunnerError | None = None

    def answer(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        self.done.set()

    def fail(self, error: RunnerError) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


class _Attempt:
    """A connection asked for by the calls, to ``server``: the open WebSocket, or why there
    is none. ``scope`` holds it; ``dropped`` once the runner moved on to another server."""

    def __init__(self, server: Server, runner_id: str) -> None:
        self.server = server
        self.url = channel_url(server.url, runner_id)
        self.done = trio.Event()
        self.ws: WebSocketConnection | None = None
        self.error: RunnerError | None = None
        self.scope = trio.CancelScope()
        self.dropped = False


class RunnerChannel(RunnerOperations):
    """The runner-loop calls over one WebSocket, connected (again) when a call needs it.

    Start :meth:`run` in a nursery before making calls; the calls need credentials.
    """

    def __init__(
        self,
        server: str | Servers,
        *,
        credentials: RunnerCredentials | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        ping_every: float = PING_EVERY,
    ) -> None:
        self.servers = server if isinstance(server, Servers) else Servers([server])
        self.credentials = credentials
        self._timeout = timeout
        self._ids = itertools.count(1)
        self._waiting: dict[int, _Pending] = {}
        self._ws: WebSocketConnection | None = None
        self._attempt: _Attempt | None = None
        self._wanted = trio.Event()
        self._running = False
        self.ping_every = ping_every
        self._ping_changed = trio.Event()

    @property
    def server_url(self) -> str:
        """The URL the next connection goes to."""
        return self.servers.current.url

    # -- the calls (oore/runner/client.py RunnerOperations), as frames ---------------------

    async def _perform(
        self,
        op: protocol.Op,
        fields: dict[str, Any],
        *,
        build_id: str | None = None,
        limit: float | None = None,
    ) -> dict[str, Any]:
        return await self._call(op, fields, build_id, limit=limit)

    def keep_alive(self, every: float) -> None:
        """Ping the server every ``every`` seconds while connected (renews the lease)."""
        if every != self.ping_every:
            self.ping_every = every
            self._ping_changed.set()

    @property
    def holds_a_connection(self) -> bool:
        return self._ws is not None and self._ws.closed is None

    # -- the connection ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the connection: open it when a call asks, read its replies until it breaks."""
        self._running = True
        task_status.started()
        try:
            while True:
                await self._wanted.wait()
                self._wanted = trio.Event()
                attempt = self._attempt or self._new_attempt()
                closed = ConnectionFailed(f"{attempt.url}: the channel closed")
                try:
                    with attempt.scope:
                        await self._connect_and_read(attempt)
                finally:
                    self._ws = None
                    if not attempt.done.is_set():
                        attempt.error = attempt.error or ConnectionFailed(
                            f"{attempt.url}: the channel closed while connecting"
                        )
                        attempt.done.set()
                    if self._attempt is attempt:
                        self._attempt = None
                    unanswered = self._fail_waiting(closed)
                if attempt.dropped:
                    continue
                if attempt.ws is None and isinstance(attempt.error, ConnectionFailed):
                    self.servers.unreachable(attempt.server, attempt.error)
                elif unanswered:
                    self.servers.unreachable(attempt.server, closed)
        finally:
            self._running = False

    def _new_attempt(self) -> _Attempt:
        return _Attempt(self.servers.current, self._credentials().runner_id)

    def _drop(self, attempt: _Attempt) -> None:
        """Close a connection to a server the runner has moved on from."""
        attempt.dropped = True
        attempt.scope.cancel()
        if self._attempt is attempt:
            self._attempt = None
            self._ws = None

    async def _connect_and_read(self, attempt: _Attempt) -> None:
        url = urlsplit(attempt.url)
        secure = url.scheme == "wss"
        host = url.hostname or "localhost"
        port = url.port or (443 if secure else 80)
        resource = url.path
        stream: trio.abc.Stream
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                if secure:
                    stream = await trio.open_ssl_over_tcp_stream(
                        host, port, ssl_context=ssl.create_default_context(), https_compatible=True
                    )
                else:
                    stream = await trio.open_tcp_stream(host, port)
        except (OSError, trio.TooSlowError) as exc:
            attempt.error = ConnectionFailed(f"{attempt.url}: {type(exc).__name__}: {exc}")
            return
        handshake = trio.CancelScope()
        stream = _Watched(stream, handshake.cancel)
        try:
            async with trio.open_nursery() as nursery:
                with trio.fail_after(CONNECT_TIMEOUT), handshake:
                    # Typed for socket streams, it takes any: only its endpoint
                    # properties look for a socket, and fall back to the stream's repr.
                    ws = await wrap_client_stream(
                        nursery,
                        stream,  # type: ignore[arg-type]
                        host if port in (80, 443) else f"{host}:{port}",
                        resource,
                        extra_headers=[(b"authorization", f"Bearer {self._token()}".encode())],
                        max_message_size=MAX_REPLY,
                    )
                if handshake.cancelled_caught:
                    attempt.error = ConnectionFailed(
                        f"{attempt.url}: the connection closed during the handshake"
                    )
                    nursery.cancel_scope.cancel()
                    return
                self._ws = attempt.ws = ws
                attempt.done.set()
                nursery.start_soon(self._ping, ws)
                await self._read(ws)
                nursery.cancel_scope.cancel()
        except* ConnectionRejected as group:
            attempt.error = _refusal(attempt.url, _first(group))
        except* (OSError, HandshakeError, trio.BrokenResourceError, trio.TooSlowError) as group:
            error = _first(group)
            attempt.error = ConnectionFailed(f"{attempt.url}: {type(error).__name__}: {error}")
        finally:
            await trio.aclose_forcefully(stream)

    async def _ping(self, ws: WebSocketConnection) -> None:
        """Ping every :attr:`ping_every` seconds: an open channel keeps the lease without
        heartbeats (a pong that does not come in time is the reader's concern)."""
        while True:
            with trio.move_on_after(self.ping_every):
                await self._ping_changed.wait()
                self._ping_changed = trio.Event()
                continue
            try:
                with trio.move_on_after(self._timeout):
                    await ws.ping()
            except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                return

    async def _read(self, ws: WebSocketConnection) -> None:
        """Hand each reply to the call waiting for it, until the connection closes."""
        while True:
            try:
                frame = await ws.get_message()
            except ConnectionClosed:
                return
            try:
                reply = json.loads(frame)
            except ValueError:
                reply = None
            if not isinstance(reply, dict):
                self._fail_waiting(ProtocolError("the channel sent a frame that is not an object"))
                return
            request_id = reply.get("id")
            pending = self._waiting.get(request_id) if isinstance(request_id, int) else None
            if pending is not None:
                pending.answer(reply)

    async def _connection(self) -> tuple[_Attempt, WebSocketConnection]:
        """The open connection to the server in use, connecting first when there is none."""
        if not self._running:
            raise RuntimeError("RunnerChannel.run is not running; start it in a nursery")
        while True:
            attempt = self._attempt
            if attempt is None:
                attempt = self._attempt = self._new_attempt()
                self._wanted.set()
            if not attempt.done.is_set():  # an open connection costs no checkpoint
                await attempt.done.wait()
            ws = attempt.ws
            if ws is None or ws.closed is not None:
                raise attempt.error or ConnectionFailed(f"{attempt.url}: the channel closed")
            if self.servers.in_use(attempt.server):
                return attempt, ws
            self._drop(attempt)

    async def _call(
        self,
        op: protocol.Op,
        fields: dict[str, Any],
        build_id: str | None,
        *,
        limit: float | None = None,
    ) -> dict[str, Any]:
        self._credentials()
        seconds = self._timeout if limit is None else limit
        request_id = next(self._ids)
        frame = json.dumps(protocol.request_frame(request_id, op, fields, build_id))
        pending = _Pending()
        attempt: _Attempt | None = None
        try:
            with trio.fail_after(seconds):
                attempt, ws = await self._connection()
                self._waiting[request_id] = pending
                try:
                    await ws.send_message(frame)
                except ConnectionClosed as exc:
                    failed = ConnectionFailed(f"{attempt.url} {op.name}: the channel closed")
                    self.servers.unreachable(attempt.server, failed)
                    raise failed from exc
                await pending.done.wait()
        except trio.TooSlowError as exc:
            where = self.server_url if attempt is None else attempt.url
            failed = ConnectionFailed(f"{where} {op.name}: no answer in {seconds:g}s")
            if attempt is not None:
                self.servers.unreachable(attempt.server, failed)
            raise failed from exc
        finally:
            self._waiting.pop(request_id, None)
        if pending.error is not None:
            raise pending.error
        reply = pending.reply or {}
        try:
            refusal = protocol.refusal_of(reply)
        except ValueError:
            raise ProtocolError(
                f"{op.name}: the channel's reply is neither ok nor an error"
            ) from None
        if refusal is None:
            return reply
        raise ServerError(refusal.status, refusal.code, refusal.error, refusal.details)

    def _fail_waiting(self, error: RunnerError) -> int:
        """Fail the calls still waiting for a reply; how many there were."""
        unanswered = [pending for pending in self._waiting.values() if not pending.done.is_set()]
        for pending in unanswered:
            pending.fail(error)
        return len(unanswered)

    def _token(self) -> str:
        return self._credentials().token

    def _credentials(self) -> RunnerCredentials:
        if self.credentials is None:
            raise RuntimeError("RunnerChannel has no runner credentials; register first")
        return self.credentials


def channel_url(server_url: str, runner_id: str) -> str:
    """The runner channel's WebSocket URL on the server at ``server_url``."""
    base = urlsplit(server_url)
    scheme = "wss" if base.scheme == "https" else "ws"
    runner = quote(runner_id, safe="")
    return f"{scheme}://{base.netloc}{base.path}/v1/runners/{runner}/channel"


E = TypeVar("E", bound=BaseException)


def _first(group: BaseExceptionGroup[E]) -> E:
    """The first exception of a (possibly nested) group."""
    inner: E | BaseExceptionGroup[E] = group.exceptions[0]
    while isinstance(inner, BaseExceptionGroup):
        inner = inner.exceptions[0]
    return inner


def _refusal(url: str, rejected: ConnectionRejected) -> RunnerError:
    """The error an upgrade answered with an HTTP status means."""
    if rejected.status_code == 404:
        return ChannelNotOffered(f"{url}: 404, the server has no runner channel")
    code, message = f"http_{rejected.status_code}", "the channel upgrade was refused"
    try:
        body = json.loads(rejected.body or b"")
    except ValueError:
        body = None
    if isinstance(body, dict):
        if isinstance(body.get("code"), str):
            code = body["code"]
        if isinstance(body.get("error"), str):
            message = body["error"]
    return ServerError(rejected.status_code, code, message)


class ChannelRunnerClient(RunnerClient):
    """A RunnerClient whose heartbeats, claims, job-state polls, status reports and log
    batches go over the runner channel while the server offers one (the rest, and
    everything once the upgrade was answered 404, is plain HTTP).

    Start :meth:`run_channel` in a nursery that outlives the calls.
    """

    def __init__(
        self,
        server: str | Servers,
        *,
        credentials: RunnerCredentials | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(server, credentials=credentials, timeout=timeout, transport=transport)
        self.channel = RunnerChannel(self.servers, timeout=timeout)
        self.offered: bool | None = None  # None until an upgrade was answered
        self._say = say

    async def run_channel(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await self.channel.run(task_status=task_status)

    def keep_alive(self, every: float) -> None:
        self.channel.keep_alive(every)

    @property
    def holds_a_connection(self) -> bool:
        return self.offered is True and self.channel.holds_a_connection

    async def _perform(
        self,
        op: protocol.Op,
        fields: dict[str, Any],
        *,
        build_id: str | None = None,
        limit: float | None = None,
    ) -> dict[str, Any]:
        """Over the channel while the server offers one, else over HTTP."""
        if self.offered is not False:
            self.channel.credentials = self.credentials
            try:
                answer = await self.channel._perform(op, fields, build_id=build_id, limit=limit)
            except ChannelNotOffered:
                self._fall_back()
            else:
                self.offered = True
                return answer
        return await super()._perform(op, fields, build_id=build_id, limit=limit)

    def _fall_back(self) -> None:
        """The upgrade was answered 404: HTTP from now on (said once)."""
        if self.offered is not False and self._say is not None:
            self._say("the server offers no runner channel; using HTTP")
        self.offered = False


class _Watched(trio.abc.Stream):
    """A stream that calls ``on_broken`` when it breaks or the peer closes it.

    trio-websocket waits for the opening handshake's answer without noticing that the
    connection broke meanwhile (a reset, a closed socket); this lets the caller stop
    waiting at once instead of at the connect timeout.
    """

    def __init__(self, inner: trio.abc.Stream, on_broken: Callable[[], object]) -> None:
        self._inner = inner
        self._on_broken = on_broken

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self._inner.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._on_broken()
            raise

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self._inner.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._on_broken()
            raise
        if not data:
            self._on_broken()
        return data

    async def aclose(self) -> None:
        await self._inner.aclose()
