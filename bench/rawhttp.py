"""A bare keep-alive HTTP/1.1 client connection for load processes holding thousands of
connections or sending a thousand requests a second, where httpx costs too much CPU (its
connection pool also slows down with thousands of requests waiting for a connection)."""

from __future__ import annotations

import trio


class RawConn:
    """One connection; requests one at a time, responses with a Content-Length (or none)."""

    def __init__(self, stream: trio.SocketStream, host: str, port: int) -> None:
        self.stream = stream
        self.host = host
        self.port = port
        self.buf = b""

    @classmethod
    async def open(cls, host: str, port: int) -> RawConn:
        return cls(await trio.open_tcp_stream(host, port), host, port)

    async def send(self, method: str, path: str, token: str, body: bytes | None = None) -> None:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        head += f"Authorization: Bearer {token}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        await self.stream.send_all(head.encode() + b"\r\n" + (body or b""))

    async def _more(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buf += data

    async def head(self) -> tuple[int, dict[str, str]]:
        """The status and headers of the next response (its body is left unread)."""
        while b"\r\n\r\n" not in self.buf:
            await self._more()
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status, *lines = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status.split()[1]), headers

    async def response(self) -> tuple[int, bytes]:
        """The next whole response; its body by Content-Length (none for a 204)."""
        status, headers = await self.head()
        if "chunked" in headers.get("transfer-encoding", ""):
            raise ValueError("a chunked response where a Content-Length was expected")
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            await self._more()
        body, self.buf = self.buf[:length], self.buf[length:]
        if headers.get("connection", "").lower() == "close":
            # The server ends a keep-alive connection after so many requests (hypercorn
            # after 1,000); the next request goes over a new one, as any client's would.
            await self.stream.aclose()
            self.stream = await trio.open_tcp_stream(self.host, self.port)
            self.buf = b""
        return status, body

    async def request(
        self, method: str, path: str, token: str, body: bytes | None = None
    ) -> tuple[int, bytes]:
        await self.send(method, path, token, body)
        return await self.response()

    async def aclose(self) -> None:
        await self.stream.aclose()


# what a failed connection raises
FAILURES = (OSError, ValueError, trio.BrokenResourceError, trio.ClosedResourceError)
