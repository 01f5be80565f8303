"""Plain HTTP/1.1 answers written by the lean listener: JSON errors, the WebSocket 101 and
the head of an event stream.

Error answers carry the envelope every error of the API has (oore/http/errors.py), the
request id and the hardening headers of oore/http/guard.py, and close the connection.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from http import HTTPStatus

import orjson
import trio

from oore.errors import ApiError, retry_after
from oore.http.guard import DEFAULT_CACHE, DEFAULT_POLICY, HARDENING_HEADERS

# After a refusal or a close frame: how long, and how much, the peer's last bytes are read.
LINGER_SECONDS = 1.0
LINGER_BYTES = 4 * 1024 * 1024

_WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def error_answer(error: ApiError, request_id: str, extra: Sequence[tuple[str, str]] = ()) -> bytes:
    """``error`` as the API answers it, with ``Connection: close`` (and ``extra`` headers)."""
    body = orjson.dumps({**error.to_json(), "request_id": request_id}) + b"\n"
    wait = retry_after(error)
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("X-Request-Id", request_id),
        *HARDENING_HEADERS,
        ("Content-Security-Policy", DEFAULT_POLICY),
        ("Cache-Control", DEFAULT_CACHE),
        *extra,
        *([] if wait is None else [("Retry-After", str(wait))]),
        ("Connection", "close"),
    ]
    return _head(error.status, headers) + body


def event_stream_head(request_id: str, extra: Sequence[tuple[str, str]] = ()) -> bytes:
    """The head of a server-sent event stream whose body ends when the connection closes."""
    headers = [
        ("Content-Type", "text/event-stream; charset=utf-8"),
        ("Cache-Control", "no-cache"),
        ("X-Accel-Buffering", "no"),
        ("X-Request-Id", request_id),
        *HARDENING_HEADERS,
        ("Content-Security-Policy", DEFAULT_POLICY),
        *extra,
        ("Connection", "close"),
    ]
    return _head(200, headers)


def websocket_accept(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    digest = hashlib.sha1(key.encode("ascii") + _WEBSOCKET_GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def switching_protocols(key: str, request_id: str) -> bytes:
    """The 101 that accepts a WebSocket upgrade, without extensions."""
    return _head(
        101,
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", websocket_accept(key)),
            ("X-Request-Id", request_id),
        ],
    )


async def linger(stream: trio.SocketStream) -> None:
    """End our side and read what the peer still sends until it closes too, so closing
    does not reset the connection under the last answer."""
    await stream.send_eof()
    received = 0
    while received < LINGER_BYTES:
        chunk = await stream.receive_some(64 * 1024)
        if not chunk:
            return
        received += len(chunk)
