"""A server WebSocket (RFC 6455) over a trio stream, after the 101 has been sent.

wsproto parses the frames (no handshake object, no extensions: permessage-deflate is not
offered). Text frames out are written here directly from their UTF-8 bytes. Sending never
waits for the peer: a frame goes into a send buffer that the sending task drains; when a
peer stops reading and the buffer would pass :attr:`WebSocket.send_limit` (after the first
frame, which always fits), the connection is given up (:attr:`overflowed`), never grown.

On a socket, reading and writing first try the socket at once and only wait for it when it
is not ready: a channel answers thousands of frames a second, and going through the stream
would yield to the scheduler once more for every frame read and every frame sent.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Awaitable, Callable

import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

RECEIVE_BYTES = 64 * 1024
# How long a close waits for the close frame to go out.
CLOSE_SECONDS = 1.0

_CLOSE_FRAME = 0x88


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame holding ``payload`` (UTF-8)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x81, size))
    elif size < 65536:
        head = struct.pack("!BBH", 0x81, 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 127, size)
    return head + payload


class WebSocket:
    """One accepted WebSocket. :meth:`receive` answers messages; :meth:`send` queues text.

    ``on_alive`` is called for every ping and pong the peer sends. The scope handed to
    :meth:`on_open` (by the owner) is cancelled when the connection is given up (the peer
    stopped reading).
    """

    __slots__ = (
        "_drained",
        "_frames",
        "_on_alive",
        "_outgoing",
        "_parts",
        "_size",
        "_socket",
        "_stream",
        "_writing",
        "close_code",
        "max_message",
        "overflowed",
        "scope",
        "send_limit",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        max_message: int,
        send_limit: int,
        received: bytes = b"",
        on_alive: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._stream = stream
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._frames = Connection(ConnectionType.SERVER, trailing_data=received)
        self.max_message = max_message
        self.send_limit = send_limit
        self._on_alive = on_alive
        self._outgoing = bytearray()
        self._writing = False
        self._drained: trio.Event | None = None
        self._parts: list[str | bytes] = []
        self._size = 0
        self.close_code: int | None = None  # once a close frame went out, its code
        self.overflowed = False
        self.scope: trio.CancelScope | None = None

    def on_open(self, scope: trio.CancelScope) -> None:
        self.scope = scope

    @property
    def closed(self) -> bool:
        return self.close_code is not None or self.overflowed

    async def receive(self) -> str | bytes | None:
        """The next message; None once the peer closed or the connection was closed."""
        while not self.closed:
            for event in self._frames.events():
                message = await self._handle(event)
                if message is not None:
                    return message
                if self.closed:
                    return None
            if self._socket is None:
                try:
                    data = bytes(await self._stream.receive_some(RECEIVE_BYTES))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return None
            else:
                try:
                    data = os.read(self._socket.fileno(), RECEIVE_BYTES)
                except BlockingIOError:
                    # Idle, a channel waits here: only this frame and the poller's entry
                    # are kept, not a read's own frames.
                    try:
                        await trio.lowlevel.wait_readable(self._socket)
                    except trio.ClosedResourceError:
                        return None
                    continue
                except OSError:  # reset, or closed meanwhile
                    return None
            if not data:
                return None
            self._frames.receive_data(data)
        return None

    async def _handle(self, event: object) -> str | bytes | None:
        match event:
            case TextMessage() | BytesMessage():
                self._size += len(event.data)
                if self._size > self.max_message:
                    await self.close(1009, "frame too big")
                    return None
                self._parts.append(
                    bytes(event.data) if isinstance(event.data, bytearray) else event.data
                )
                if not event.message_finished:
                    return None
                parts, self._parts, self._size = self._parts, [], 0
                if len(parts) == 1:
                    return parts[0]
                if isinstance(event, TextMessage):
                    return "".join(p for p in parts if isinstance(p, str))
                return b"".join(p for p in parts if isinstance(p, bytes))
            case Ping():
                await self._alive()
                await self._write(self._frames.send(event.response()))
            case Pong():
                await self._alive()
            case CloseConnection():
                if self._frames.state is ConnectionState.REMOTE_CLOSING:
                    # The peer closed: answer with its code, as RFC 6455 asks.
                    self.close_code = event.code
                    await self._write_all(self._frames.send(event.response()))
                else:  # a protocol error: wsproto names the code (1002, 1007, ...)
                    await self.close(event.code, event.reason or "")
        return None

    async def _alive(self) -> None:
        if self._on_alive is not None:
            await self._on_alive()

    async def send_text(self, payload: bytes) -> None:
        """Queue a text message (UTF-8 bytes); dropped once closed."""
        if not self.closed:
            await self._write(text_frame(payload))

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame (once); the owner then closes the stream."""
        if self.closed or self._frames.state is not ConnectionState.OPEN:
            return
        self.close_code = code
        await self._write_all(self._frames.send(CloseConnection(code=code, reason=reason)))

    async def _write_all(self, frame: bytes | bytearray) -> None:
        """Queue ``frame`` and return once it is sent (within :data:`CLOSE_SECONDS`), also
        when another task is the one sending: a close must go out before the connection
        ends, and whoever ends it may cancel that task."""
        with trio.move_on_after(CLOSE_SECONDS):
            await self._write(frame)
            if self._writing:
                self._drained = trio.Event()
                await self._drained.wait()

    async def _write(self, frame: bytes | bytearray) -> None:
        if self.overflowed:
            return
        if self._outgoing and len(self._outgoing) + len(frame) > self.send_limit:
            self._give_up()
            return
        self._outgoing += frame
        if self._writing:
            return  # the task writing now sends it too
        self._writing = True
        try:
            while self._outgoing:
                chunk = bytes(self._outgoing)
                self._outgoing.clear()
                sent = self._send_now(chunk)
                if sent < len(chunk):
                    await self._stream.send_all(chunk[sent:])
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self._give_up()
        finally:
            self._writing = False
            if self._drained is not None:
                self._drained.set()

    def _send_now(self, chunk: bytes) -> int:
        """How much of ``chunk`` the socket took without waiting (0 off a socket)."""
        if self._socket is None:
            return 0
        try:
            return os.write(self._socket.fileno(), chunk)
        except BlockingIOError:
            return 0

    def _give_up(self) -> None:
        """The peer does not read (or is gone): drop what is queued and end the connection."""
        self.overflowed = True
        self._outgoing = bytearray()
        if self.scope is not None:
            self.scope.cancel()
