"""One runner's link to the server, as a scenario's runner speaks it: over its channel
(``GET /v1/runners/{id}/channel``, a WebSocket, what oore's own agent uses) or over bare
HTTP/1.1 on a keep-alive connection of its own. One request at a time per runner."""

from __future__ import annotations

import json
from typing import Any, Protocol
from urllib.parse import urlsplit

import trio
import trio_websocket

from bench.rawhttp import FAILURES as HTTP_FAILURES
from bench.rawhttp import RawConn

TRANSPORTS = ("channel", "http")  # the agent's default first
PROTOCOL_VERSION = 4


class Refused(Exception):
    """The server answered a runner's request with an error."""


class RunnerLink(Protocol):
    async def heartbeat(self, status: str = "online") -> None: ...

    async def claim(self, wait_seconds: int = 0) -> dict[str, Any] | None:
        """The job handed over, or None (no build within ``wait_seconds``)."""

    async def report(self, build_id: str, status: str, **extra: Any) -> None: ...

    async def logs(self, build_id: str, chunks: list[dict[str, Any]], **extra: Any) -> int:
        """Append a batch of lines to the build; how many the server stored."""

    async def ping(self) -> None:
        """Prove the runner alive without a request (a WebSocket ping on a channel)."""

    async def aclose(self) -> None: ...


class HttpLink:
    """Connects at its first request: the server closes a connection idle for 5 s."""

    def __init__(self, url: str, runner_id: str, token: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.conn: RawConn | None = None
        self.path = f"/v1/runners/{runner_id}"
        self.token = token

    async def _post(self, path: str, body: dict[str, Any]) -> bytes:
        if self.conn is None:
            self.conn = await RawConn.open(self.host, self.port)
        status, reply = await self.conn.request(
            "POST", self.path + path, self.token, json.dumps(body).encode()
        )
        if status not in (200, 204):
            raise Refused(f"POST {path}: {status} {reply[:200]!r}")
        return reply

    async def heartbeat(self, status: str = "online") -> None:
        await self._post("/heartbeat", {"status": status})

    async def claim(self, wait_seconds: int = 0) -> dict[str, Any] | None:
        body = {"protocol_version": PROTOCOL_VERSION, "wait_seconds": wait_seconds}
        job: dict[str, Any] | None = json.loads(await self._post("/claim", body)).get("job")
        return job

    async def report(self, build_id: str, status: str, **extra: Any) -> None:
        await self._post(f"/jobs/{build_id}/status", {"status": status, **extra})

    async def logs(self, build_id: str, chunks: list[dict[str, Any]], **extra: Any) -> int:
        reply = await self._post(f"/jobs/{build_id}/logs", {"chunks": chunks, **extra})
        return int(json.loads(reply)["appended"])

    async def ping(self) -> None:
        await self.heartbeat()  # plain HTTP has nothing lighter

    async def aclose(self) -> None:
        if self.conn is not None:
            await self.conn.aclose()


class ChannelLink:
    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self._last_id = 0

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        self._last_id += 1
        await self.ws.send_message(json.dumps({"id": self._last_id, "op": op, **fields}))
        reply: dict[str, Any] = json.loads(await self.ws.get_message())
        if reply.get("id") != self._last_id:
            raise Refused(f"{op}: a reply to request {reply.get('id')} out of turn")
        if not reply.get("ok"):
            raise Refused(f"{op}: {reply.get('status')} {reply.get('code')} {reply.get('error')}")
        return reply

    async def heartbeat(self, status: str = "online") -> None:
        await self.call("heartbeat", status=status)

    async def claim(self, wait_seconds: int = 0) -> dict[str, Any] | None:
        reply = await self.call(
            "claim", protocol_version=PROTOCOL_VERSION, wait_seconds=wait_seconds
        )
        job: dict[str, Any] | None = reply.get("job")
        return job

    async def report(self, build_id: str, status: str, **extra: Any) -> None:
        await self.call("job_status", build_id=build_id, status=status, **extra)

    async def logs(self, build_id: str, chunks: list[dict[str, Any]], **extra: Any) -> int:
        reply = await self.call("logs", build_id=build_id, chunks=chunks, **extra)
        return int(reply["appended"])

    async def ping(self) -> None:
        await self.ws.ping()  # waits for the pong

    async def aclose(self) -> None:
        await self.ws.aclose()


async def open_link(
    transport: str, nursery: trio.Nursery, url: str, runner_id: str, token: str
) -> RunnerLink:
    """A link (a channel is connected at once, its reader task in ``nursery``)."""
    if transport == "http":
        return HttpLink(url, runner_id, token)
    ws_url = url.replace("http://", "ws://", 1) + f"/v1/runners/{runner_id}/channel"
    headers = [(b"authorization", f"Bearer {token}".encode())]
    ws = await trio_websocket.connect_websocket_url(nursery, ws_url, extra_headers=headers)
    return ChannelLink(ws)


# what a failed link raises
FAILURES = (
    *HTTP_FAILURES,
    trio_websocket.ConnectionClosed,
    trio_websocket.HandshakeError,
)
