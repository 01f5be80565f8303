"""The app served as the daemon serves it: oore's accept loop, with the lean listener (the
runner channel) in front of Hypercorn, on a loopback port."""

from __future__ import annotations

import base64
import json
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import trio
from hypercorn.config import Config
from quart_trio import QuartTrio
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Ping, Pong, TextMessage

from oore.http.context import AppServices
from oore.http.lean.runner_channel import ChannelLimits, lean_routes
from oore.http.metrics import METRICS, app_metrics
from oore.http.server import ConnectionLimits, serve
from oore.protocol.runner import MAX_FRAME

LIMITS = ConnectionLimits(max_connections=1000, keepalive_seconds=5.0)


def server_config(bind: str = "127.0.0.1:0") -> Config:
    config = Config()
    config.bind = [bind]
    config.graceful_timeout = 1.0
    config.websocket_max_message_size = MAX_FRAME
    config.keep_alive_timeout = LIMITS.keepalive_seconds
    return config


async def serve_app(
    app: Any,
    services: AppServices,
    *,
    bind: str = "127.0.0.1:0",
    shutdown_trigger: Callable[[], Awaitable[None]],
    lean: bool = True,
    channel: ChannelLimits | None = None,
    access_log: bool = False,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` (with the runner channel on the lean listener unless ``lean`` is
    False) until ``shutdown_trigger`` returns; reports the bound URLs."""
    routes = (
        lean_routes(
            services,
            access_log=access_log,
            limits=channel or ChannelLimits(),
            metrics=app_metrics(app) if METRICS in app.extensions else None,
        )
        if lean
        else None
    )
    await serve(
        app,
        server_config(bind),
        LIMITS,
        shutdown_trigger=shutdown_trigger,
        lean=routes,
        task_status=task_status,
    )


def services_of(app: QuartTrio) -> AppServices:
    found: AppServices = app.extensions["oore"]
    return found


class RawChannel:
    """A runner channel on a bare socket, for what a well-behaved client never does: the
    test decides what is sent and whether anything is read."""

    def __init__(self, stream: trio.SocketStream, status: int, headers: dict[str, str]) -> None:
        self.stream = stream
        self.status = status
        self.headers = headers
        self.body = b""
        self._frames = Connection(ConnectionType.CLIENT)

    @classmethod
    async def open(
        cls,
        url: str,
        runner_id: str,
        token: str | None,
        *,
        after_head: bytes = b"",
        receive_buffer: int | None = None,
    ) -> RawChannel:
        """Send the upgrade (and ``after_head`` with it) and read the answer's head."""
        address = urlsplit(url)
        host, port = address.hostname or "127.0.0.1", address.port or 80
        sock = trio.socket.socket()
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        await sock.connect((host, port))
        stream = trio.SocketStream(sock)
        lines = [
            f"GET /v1/runners/{runner_id}/channel HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            "Sec-WebSocket-Version: 13",
        ]
        if token is not None:
            lines.append(f"Authorization: Bearer {token}")
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode() + after_head)
        received = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in received:
                chunk = await stream.receive_some(65536)
                assert chunk, f"closed before answering: {received!r}"
                received += chunk
        head, _, rest = received.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        channel = cls(stream, int(status_line.split(" ")[1]), headers)
        if channel.status == 101:
            channel._frames.receive_data(rest)
        else:
            channel.body = rest
        return channel

    def frame(self, message: dict[str, Any] | str) -> bytes:
        text = message if isinstance(message, str) else json.dumps(message)
        return bytes(self._frames.send(TextMessage(text)))

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.stream.send_all(self.frame(message))

    async def ping(self, payload: bytes = b"alive") -> None:
        await self.stream.send_all(bytes(self._frames.send(Ping(payload))))

    async def event(self) -> TextMessage | Pong | CloseConnection | None:
        """The next message, pong or close (None at the end of the stream)."""
        parts: list[str] = []
        with trio.fail_after(10):
            while True:
                for event in self._frames.events():
                    if isinstance(event, TextMessage):
                        parts.append(event.data)
                        if event.message_finished:
                            return TextMessage("".join(parts))
                    elif isinstance(event, Pong | CloseConnection):
                        return event
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    return None
                self._frames.receive_data(chunk)

    async def reply(self) -> dict[str, Any]:
        event = await self.event()
        assert isinstance(event, TextMessage), event
        answer: dict[str, Any] = json.loads(event.data)
        return answer

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)
