"""Request ids, the 5xx line and the access log, around the whole app (HTTP and WebSocket).

Every request gets an id: the client's ``X-Request-Id`` when it is well formed (at most
:data:`MAX_REQUEST_ID` characters of letters, digits and ``._:-``), else a new random one.
It is sent back as ``X-Request-Id``, carried by every JSON error body (``request_id``,
see :mod:`oore.http.errors`) and by every log line written while the request is served.

Every 5xx answer logs one ``http.error`` line; with the access log on, every request
logs one ``http.request`` line when it ends (for a log stream or a runner channel: when
it closes). Paths are logged without their query string, and a path segment shaped like
a credential (a download token) is replaced by ``[redacted]``.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import trio

from oore.eventlog import REQUEST_ID, event

log = logging.getLogger("oore.http")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_REQUEST_ID = 128
_WELL_FORMED = re.compile(rb"[A-Za-z0-9._:\-]{1,%d}" % MAX_REQUEST_ID)
# Tokens in paths are 64 hex characters; ids (UUIDs) are 36 with dashes. A segment this
# long without a dash is taken for a credential.
_SECRET_SEGMENT = re.compile(r"[A-Za-z0-9_~.+=]{40,}")
REDACTED = "[redacted]"


def new_request_id() -> str:
    return secrets.token_hex(8)


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's well-formed ``X-Request-Id``, else a new one."""
    for name, value in headers:
        if name == b"x-request-id" and _WELL_FORMED.fullmatch(value):
            return value.decode("ascii")
    return new_request_id()


def access_line(method: str, path: str, status: int | None, started: float) -> None:
    """The ``http.request`` line of a request that began at ``started`` (trio clock)."""
    event(
        log,
        "http.request",
        method=method,
        path=path,
        status=status,
        duration_s=round(trio.current_time() - started, 4),
    )


def error_line(method: str, path: str, status: int, failure: Failure) -> None:
    """The ``http.error`` line of a request answered ``status`` (a 5xx)."""
    event(
        log,
        "http.error",
        # A 503 (database away, overloaded) is a condition, not a fault.
        level=logging.ERROR if status == 500 else logging.WARNING,
        method=method,
        path=path,
        status=status,
        code=failure.code,
        error=failure.message,
        exc_info=failure.exception,
    )


def loggable_path(path: str) -> str:
    """``path`` with credential-shaped segments replaced (the query is never passed in)."""
    return "/".join(
        REDACTED if _SECRET_SEGMENT.fullmatch(part) else part for part in path.split("/")
    )


@dataclass
class Failure:
    """What the error mapping learned about a 5xx answer, for its log line."""

    code: str | None = None
    message: str | None = None
    exception: BaseException | None = None


# The failure of the request being served; the error mapping fills it in. A ContextVar,
# so each request's tasks see their own.
FAILURE: ContextVar[Failure | None] = ContextVar("oore_request_failure", default=None)


def note_failure(
    code: str | None, message: str | None, exception: BaseException | None = None
) -> bool:
    """Remember why this request is answered 5xx (its ``http.error`` line says so);
    False outside :class:`RequestLog`."""
    failure = FAILURE.get()
    if failure is None:
        return False
    failure.code, failure.message = code, message
    failure.exception = exception or failure.exception
    return True


class RequestLog:
    """ASGI middleware: assigns the request id, answers it back, logs 5xx and (opt.) access."""

    def __init__(self, app: ASGIApp, *, access_log: bool = False) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope.get("headers", []))
        header = (b"x-request-id", request_id.encode("ascii"))
        started = trio.current_time()
        status: int | None = None
        failure = Failure()

        async def answered(message: Message) -> None:
            nonlocal status
            match message["type"]:
                case "http.response.start" | "websocket.http.response.start":
                    status = message["status"]
                    message = {**message, "headers": [*message.get("headers", ()), header]}
                case "websocket.accept":
                    status = 101
                    message = {**message, "headers": [*message.get("headers", ()), header]}
                case "websocket.close" if status is None:
                    status = 403  # closed before accepting: refused
            await send(message)

        token = REQUEST_ID.set(request_id)
        failures = FAILURE.set(failure)
        try:
            await self.app(scope, receive, answered)
        except Exception as exc:
            failure.exception = failure.exception or exc
            status = status or 500
            raise
        finally:
            FAILURE.reset(failures)
            path = loggable_path(scope.get("path", ""))
            method = scope.get("method", "GET")
            if status is not None and status >= 500:
                error_line(method, path, status, failure)
            if self.access_log:
                access_line(method, path, status, started)
            REQUEST_ID.reset(token)
