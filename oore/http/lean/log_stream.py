"""A build's live log, ``GET /v1/builds/{build_id}/logs/stream``, served on the lean
listener: the daemon owns the socket, so the fan-out writes live lines to it directly.

The stream is the one ``oore/services/logs.py`` makes (authorization, admission, backlog,
live lines, catch-up, keep-alives, ``event: done``); this module only turns the request
head into its arguments and the connection into its transport:

- Before the stream starts, the request passes the checks every request passes: a
  well-formed head and Host, the Host/Origin guard (oore/http/guard.py), then the
  stream's own (token or session, build, limits). A refusal is the API's JSON error, with
  the request id, the hardening headers and CORS headers as Quart would add them.
- The answer is ``200 text/event-stream`` whose body ends when the connection closes
  (``Connection: close``: there is no next request on it). While the stream's task has
  nothing to write it waits for the socket to become readable, so a client that goes away
  ends its stream at once; a client that sends anything after its request (an SSE
  connection carries nothing upstream) is closed too, after what it sent is read off
  (closing over unread bytes would reset the connection instead of ending it).
- While that task sleeps, the fan-out writes committed lines straight to the socket
  without waiting (:func:`_send_now`); what the socket does not take is written by the
  task. A stopping server ends every stream at once; clients resume with
  ``Last-Event-ID``.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing, suppress
from urllib.parse import parse_qs

import trio

from oore.errors import ApiError, InvalidRequest, Unauthorized
from oore.http.context import SESSION_COOKIE, AppServices
from oore.http.cors import cors_headers
from oore.http.guard import check_request
from oore.http.lean.answers import LINGER_SECONDS, event_stream_head, linger
from oore.http.lean.exchange import BROKEN, Exchange, peer_address, starts_like
from oore.http.lean.head import RequestHead
from oore.http.lean.lanes import RUNNERS
from oore.http.lean.routes import Shutdown
from oore.http.query import int_value
from oore.http.server import framing_problem
from oore.live.fanout import Send

_PATH = re.compile(r"/v1/builds/([^/]+)/logs/stream")
_START = b"GET /v1/builds/"


class ClientLeft(Exception):
    """The client closed its side, or sent something on a stream that takes nothing."""


def _send_now(socket: trio.socket.SocketType) -> Send:
    """Write what the socket takes now, never waiting (raises OSError once it is broken)."""

    def send(data: bytes) -> int:
        try:
            return os.write(socket.fileno(), data)  # after close, fileno() is -1: EBADF
        except BlockingIOError:
            return 0

    return send


def _watch_client(socket: trio.socket.SocketType) -> Callable[[], Awaitable[None]]:
    """What the stream's task waits on while idle: ends it once the client closes or sends."""

    async def wait() -> None:
        await trio.lowlevel.wait_readable(socket)
        raise ClientLeft

    return wait


def _credential(head: RequestHead) -> str | None:
    """The Authorization header, else the session cookie's token as one."""
    header = head.header(b"authorization")
    if header is not None:
        return header
    token = head.cookie(SESSION_COOKIE)
    return f"Bearer {token}" if token else None


class LogStreamRoute:
    """The lean route of a build's log stream."""

    lane = RUNNERS

    def __init__(
        self, services: AppServices, *, shutdown: Shutdown, access_log: bool = False
    ) -> None:
        self._services = services
        self._shutdown = shutdown
        self._access_log = access_log

    def may_take(self, start: bytes) -> bool:
        return starts_like(start, _START)

    def takes(self, head: RequestHead) -> bool:
        return (
            head.method == "GET"
            and not head.tokens(b"upgrade")
            and _PATH.fullmatch(head.path) is not None
        )

    async def serve(self, stream: trio.SocketStream, head: RequestHead, received: bytes) -> None:
        cors = cors_headers(
            head.header(b"origin"), head.path, self._services.network.allowed_origins
        )
        async with Exchange(stream, head, access_log=self._access_log) as exchange:
            try:
                events = await self._open(stream, head, received)
            except ApiError as error:
                await exchange.refuse(error, cors)
                return
            del head, received
            exchange.status = 200
            try:
                with trio.CancelScope() as scope:
                    self._shutdown.add(scope)
                    try:
                        async with aclosing(events):
                            await stream.send_all(event_stream_head(exchange.request_id, cors))
                            async for chunk in events:
                                await stream.send_all(chunk)
                    finally:
                        self._shutdown.discard(scope)
            except ClientLeft:
                # Read off what it sent first: closing over unread bytes would reset the
                # connection rather than end it.
                with trio.move_on_after(LINGER_SECONDS), suppress(*BROKEN):
                    await linger(stream)

    async def _open(
        self, stream: trio.SocketStream, head: RequestHead, received: bytes
    ) -> AsyncGenerator[bytes, None]:
        problem = framing_problem(head.headers)
        if problem is not None:
            raise InvalidRequest("invalid_request", "Malformed HTTP request", details=problem)
        credential = _credential(head)
        check_request(
            self._services.network,
            raw_host=head.header(b"host"),
            origin=head.header(b"origin"),
            path=head.path,
            scheme="http",
            changes_state=False,
            by_cookie=credential is not None and head.header(b"authorization") is None,
        )
        length = head.header(b"content-length")
        if received or head.header(b"transfer-encoding") or (length and length.strip() != "0"):
            raise InvalidRequest(details="a log stream request has no body")
        match = _PATH.fullmatch(head.path)
        assert match is not None
        _, _, query = head.target.partition("?")
        args = parse_qs(query, keep_blank_values=True)
        query_token = args["token"][0] if "token" in args else None
        socket = stream.socket
        presented = [c for c in (credential, query_token) if c]
        guesses = self._services.guesses
        client = head.client_ip(peer_address(stream)) if presented else None
        if presented and guesses.anyone_locked:
            refusal = guesses.refusal(client, presented)
            if refusal is not None:
                raise refusal
        try:
            return await self._services.logs.open_stream(
                match.group(1),
                query_token=query_token,
                authorization=credential,
                last_event_id=head.header(b"last-event-id"),
                tail=int_value("tail", args["tail"][0] if "tail" in args else None),
                send=_send_now(socket),
                wait=_watch_client(socket),
            )
        except Unauthorized:
            if presented:
                guesses.failed(client)
            raise
