"""The bookkeeping every request served on the lean listener shares with Quart's: its
request id (set for each log line written while it is served, and sent back), the status
it was answered with and its ``http.request`` access line, a refusal as the API's JSON
error, and the connection closed at the end, whatever happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import Token
from types import TracebackType

import trio

from oore.errors import ApiError
from oore.eventlog import REQUEST_ID
from oore.http.lean.answers import LINGER_SECONDS, error_answer, linger
from oore.http.lean.head import RequestHead
from oore.http.requests import access_line, loggable_path, request_id_from

# What a connection the peer dropped raises: the exchange ends quietly.
BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)


class Exchange:
    """``async with Exchange(stream, head, access_log=...) as exchange:`` around serving
    one request: set :attr:`status` once it is answered. On the way out the connection is
    closed, a connection the peer dropped is taken quietly, and the access line written."""

    __slots__ = (
        "_access_log",
        "_method",
        "_path",
        "_started",
        "_stream",
        "_token",
        "request_id",
        "status",
    )

    def __init__(self, stream: trio.SocketStream, head: RequestHead, *, access_log: bool) -> None:
        self.request_id = request_id_from(head.headers)
        self.status: int | None = None
        self._stream = stream
        self._method = head.method
        self._path = loggable_path(head.path)
        self._access_log = access_log
        self._started = 0.0
        self._token: Token[str | None] | None = None

    async def __aenter__(self) -> Exchange:
        self._started = trio.current_time()
        self._token = REQUEST_ID.set(self.request_id)
        return self

    async def __aexit__(
        self,
        etype: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        try:
            await trio.aclose_forcefully(self._stream)
        finally:
            if self._access_log:
                access_line(self._method, self._path, self.status, self._started)
            if self._token is not None:
                REQUEST_ID.reset(self._token)
        return etype is not None and issubclass(etype, BROKEN)

    async def refuse(self, error: ApiError, extra: Sequence[tuple[str, str]] = ()) -> None:
        """Answer ``error`` (with ``extra`` headers) and read what the peer still sends, so
        that closing does not reset the connection under the answer."""
        self.status = error.status
        with trio.move_on_after(LINGER_SECONDS):
            await self._stream.send_all(error_answer(error, self.request_id, extra))
            await linger(self._stream)


def starts_like(start: bytes, prefix: bytes) -> bool:
    """Whether a head beginning with ``start`` may begin with ``prefix`` (a route's
    :meth:`~oore.http.lean.routes.LeanRoute.may_take` for the requests under a path)."""
    size = min(len(start), len(prefix))
    return start[:size] == prefix[:size]


def peer_address(stream: trio.SocketStream) -> str | None:
    """The address of the connection's peer, or None once it is gone."""
    try:
        peer = stream.socket.getpeername()
    except OSError:
        return None
    return str(peer[0]) if isinstance(peer, tuple) and peer else None
