"""The build log stream on the daemon's lean listener, over raw loopback sockets: what it
refuses and how, the head of a stream, and how a stream ends (the client leaves, sends
something, or the server stops).

The SSE tests in tests/http/test_build_logs.py cover what a stream carries; these cover
what only the lean route itself decides. Where the app served on its own (Quart's route)
answers the same request, the two answers are compared.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
from quart_trio import QuartTrio

from oore.http.guard import DEFAULT_POLICY, HARDENING_HEADERS
from oore.http.lean.runner_channel import lean_routes
from oore.http.server import serve
from oore.runtime import Runtime
from oore.services.logs import LogConfig
from tests.http.builds_kit import Setup, repo, setup
from tests.http.channel_kit import LIMITS, server_config, services_of
from tests.http.conftest import Api
from tests.http.sse_kit import served, serving, until

__all__ = ["repo", "served", "setup"]

MISSING = "00000000-0000-4000-8000-000000000000"
ALLOWED_ORIGIN = "https://ci.example.com"  # in the test runtime's allowed origins
WITHIN = 10  # seconds any one exchange may take
LAST_LINE = b'"content":"line 2","stream":"stdout"}\n\n'  # the end of a running_build's backlog


@pytest.fixture
def log_config() -> LogConfig:
    # Keep-alives far apart: a stream that ends here ends for its own reason, not because a
    # keep-alive write met a closed socket.
    return LogConfig(keep_alive=60.0)


@pytest.fixture
async def quart_served(app: QuartTrio) -> AsyncIterator[str]:
    """The same app on another port without the lean routes: Quart answers everything."""
    async with serving(app, lean=False) as url:
        yield url


@dataclass
class Answer:
    """An HTTP answer's head, and its body as far as it was read."""

    status: int
    headers: list[tuple[str, str]]  # names lower-cased, in order
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One connection on a bare socket: the test decides what is sent and when it reads."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.pending = b""

    @classmethod
    async def request(
        cls,
        url: str,
        target: str,
        headers: dict[str, str] | None = None,
        *,
        method: str = "GET",
        body: bytes = b"",
    ) -> Client:
        """Connect and send one request (``Host`` is the server's unless given)."""
        address = urlsplit(url)
        host, port = address.hostname or "127.0.0.1", address.port or 80
        stream = await trio.open_tcp_stream(host, port)
        sent = {"Host": f"{host}:{port}", **(headers or {})}
        lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in sent.items())]
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        return cls(stream)

    async def head(self) -> Answer:
        """The answer's status and headers (what came after them is kept in ``pending``)."""
        with trio.fail_after(WITHIN):
            while b"\r\n\r\n" not in self.pending:
                chunk = await self.stream.receive_some(65536)
                assert chunk, f"closed before answering: {self.pending!r}"
                self.pending += chunk
        raw, _, self.pending = self.pending.partition(b"\r\n\r\n")
        status_line, *lines = raw.decode("latin-1").split("\r\n")
        headers = []
        for line in lines:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        return Answer(int(status_line.split(" ")[1]), headers, b"")

    async def until_closed(self) -> bytes:
        """Everything the server sends until it closes the connection (bounded)."""
        received, self.pending = self.pending, b""
        with trio.fail_after(WITHIN):
            while chunk := await self.stream.receive_some(65536):
                received += chunk
        return received

    async def until_received(self, marker: bytes) -> bytes:
        """What the server sends up to and including ``marker`` (bounded)."""
        with trio.fail_after(WITHIN):
            while marker not in self.pending:
                chunk = await self.stream.receive_some(65536)
                assert chunk, f"closed before {marker!r}: {self.pending!r}"
                self.pending += chunk
        upto, _, self.pending = self.pending.partition(marker)
        return upto + marker

    async def whole(self) -> Answer:
        """A refusal: its head and its body (by Content-Length; the connection may stay)."""
        answer = await self.head()
        length = int(answer.header("content-length") or 0)
        with trio.fail_after(WITHIN):
            while len(self.pending) < length:
                chunk = await self.stream.receive_some(65536)
                assert chunk, "closed inside the body"
                self.pending += chunk
        answer.body, self.pending = self.pending[:length], self.pending[length:]
        return answer

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


async def exchange(
    url: str, target: str, headers: dict[str, str] | None = None, **kw: Any
) -> Answer:
    async with await Client.request(url, target, headers, **kw) as client:
        return await client.whole()


async def head_of(url: str, target: str, headers: dict[str, str], **kw: Any) -> Answer:
    """The head of the answer (a stream's is all there is to read before it ends)."""
    async with await Client.request(url, target, headers, **kw) as client:
        return await client.head()


def auth(setup: Setup) -> dict[str, str]:
    return {"Authorization": f"Bearer {setup.token}"}


def stream_path(build_id: str) -> str:
    return f"/v1/builds/{build_id}/logs/stream"


def assert_hardened(answer: Answer) -> None:
    for name, value in HARDENING_HEADERS:
        assert answer.header(name.lower()) == value, name
    assert answer.header("content-security-policy") == DEFAULT_POLICY


async def running_build(setup: Setup) -> str:
    """A build a runner has started, with three stored lines and nothing more coming."""
    build = await setup.trigger()
    runner = await setup.runner()
    assert await runner.claim() is not None
    assert (await runner.report(build["id"], "running")).status == 200
    lines = [{"sequence": n, "content": f"line {n}", "stream": "stdout"} for n in range(3)]
    assert (await runner.logs(build["id"], lines)).body == {"appended": 3}
    build_id: str = build["id"]
    return build_id


async def open_stream(url: str, setup: Setup, build_id: str, runtime: Runtime) -> Client:
    """A stream past its backlog (idle: nothing more to send), counted as open."""
    client = await Client.request(url, stream_path(build_id), auth(setup))
    assert (await client.head()).status == 200
    await client.until_received(LAST_LINE)
    await until(lambda: runtime.logs.open_streams == 1)
    return client


# -- refusals before the stream starts -----------------------------------------------------

REFUSALS = {
    # name: (target, or query of the build's stream path; signed in; more headers; status, code)
    "unknown build": (f"/v1/builds/{MISSING}/logs/stream", True, {}, 404, "not_found"),
    "no credentials": ("", False, {}, 401, "missing_auth"),
    "bad stream token": (f"?token={'0' * 64}", False, {}, 401, "invalid_stream_token"),
    "tail not a number": ("?tail=abc", True, {}, 400, "invalid_request"),
    "negative tail": ("?tail=-1", True, {}, 400, "invalid_input"),
    "foreign host": ("", True, {"Host": "evil.example:8787"}, 400, "invalid_host"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_a_refusal_is_the_apis_json_error_and_the_connection_closes(
    case: str, setup: Setup, served: str, quart_served: str, runtime: Runtime
) -> None:
    target, signed_in, extra, status, code = REFUSALS[case]
    build = await setup.trigger()
    if not target.startswith("/"):
        target = stream_path(build["id"]) + target
    headers = {**(auth(setup) if signed_in else {}), **extra}
    async with await Client.request(served, target, headers) as client:
        answer = await client.whole()
        assert await client.until_closed() == b""  # nothing more, then the server closes
    assert (answer.status, answer.json()["code"]) == (status, code)
    assert set(answer.json()) <= {"error", "code", "details", "request_id"}
    assert answer.json()["request_id"] == answer.header("x-request-id")
    assert answer.header("content-type") == "application/json"
    assert answer.header("connection") == "close"
    assert_hardened(answer)
    assert runtime.logs.open_streams == 0
    quart = await exchange(quart_served, target, headers)
    assert (quart.status, quart.json()["code"]) == (status, code)


async def test_a_used_stream_token_is_refused_as_quart_refuses_it(
    setup: Setup, served: str, quart_served: str
) -> None:
    build = await setup.trigger()
    url = f"/v1/builds/{build['id']}/stream-token"
    for server in (served, quart_served):
        minted = await setup.api.post(url, token=setup.token)
        target = f"{stream_path(build['id'])}?token={minted.body['token']}"
        first = await head_of(server, target, {})
        assert first.status == 200  # the token is spent once the stream opens
        again = await exchange(server, target)
        assert (again.status, again.json()["code"]) == (401, "invalid_stream_token"), server
        assert again.json()["request_id"] == again.header("x-request-id")


async def test_a_request_with_a_body_is_refused(
    setup: Setup, served: str, runtime: Runtime
) -> None:
    build = await setup.trigger()
    headers = {**auth(setup), "Content-Length": "5"}
    answer = await exchange(served, stream_path(build["id"]), headers, body=b"hello")
    assert (answer.status, answer.json()["code"]) == (400, "invalid_request")
    assert answer.header("connection") == "close"
    assert runtime.logs.open_streams == 0


# -- the head of a stream ----------------------------------------------------------------


async def test_the_head_of_a_stream(setup: Setup, served: str) -> None:
    build = await setup.trigger()
    headers = {**auth(setup), "X-Request-Id": "client-chosen.id:42"}
    head = await head_of(served, stream_path(build["id"]), headers)
    assert head.status == 200
    assert head.header("content-type") == "text/event-stream; charset=utf-8"
    assert head.header("cache-control") == "no-cache"
    assert head.header("x-request-id") == "client-chosen.id:42"
    assert head.header("connection") == "close"
    assert head.header("content-length") is None and head.header("transfer-encoding") is None
    assert_hardened(head)
    assert not [name for name, _ in head.headers if name.startswith("access-control-")]


async def test_a_malformed_request_id_is_replaced(setup: Setup, served: str) -> None:
    build = await setup.trigger()
    headers = {**auth(setup), "X-Request-Id": "not well formed!"}
    head = await head_of(served, stream_path(build["id"]), headers)
    assert head.status == 200
    given = head.header("x-request-id")
    assert given is not None and given != "not well formed!"


async def test_an_allowed_origin_gets_the_cors_headers(setup: Setup, served: str) -> None:
    build = await setup.trigger()
    headers = {**auth(setup), "Origin": ALLOWED_ORIGIN}
    head = await head_of(served, stream_path(build["id"]), headers)
    assert head.status == 200
    assert head.all("access-control-allow-origin") == [ALLOWED_ORIGIN]
    assert head.all("access-control-allow-credentials") == ["true"]
    assert head.all("vary") == ["Origin"]


async def test_a_foreign_origin_is_served_without_cors_permission(
    setup: Setup, served: str
) -> None:
    build = await setup.trigger()
    headers = {**auth(setup), "Origin": "https://evil.example"}
    head = await head_of(served, stream_path(build["id"]), headers)
    assert head.status == 200  # a GET changes nothing: no 403, and the browser reads nothing
    assert not [name for name, _ in head.headers if name.startswith("access-control-allow")]
    assert head.all("vary") == ["Origin"]


async def test_a_refusal_carries_the_cors_headers_of_an_allowed_origin(served: str) -> None:
    headers = {"Origin": ALLOWED_ORIGIN}
    answer = await exchange(served, stream_path(MISSING), headers)
    assert answer.status == 401
    assert answer.all("access-control-allow-origin") == [ALLOWED_ORIGIN]
    assert answer.all("access-control-allow-credentials") == ["true"]


async def test_the_session_cookie_signs_a_stream_in(api: Api, setup: Setup, served: str) -> None:
    build_id = await running_build(setup)
    login = await api.post("/v1/auth/local/login", json={}, headers={"X-Oore-Session": "cookie"})
    assert login.status == 200, login.body
    cookie = login.headers["Set-Cookie"].split(";", 1)[0]
    assert cookie.startswith("oore_session=")
    async with await Client.request(served, stream_path(build_id), {"Cookie": cookie}) as client:
        assert (await client.head()).status == 200
        backlog = await client.until_received(LAST_LINE)
    assert b'"line 0"' in backlog
    forged = await exchange(served, stream_path(build_id), {"Cookie": "oore_session=forged"})
    assert (forged.status, forged.json()["code"]) == (401, "invalid_session")
    # bytes outside UTF-8: a token that checks out as nothing (was an error on this path)
    garbled = await exchange(served, stream_path(build_id), {"Cookie": "oore_session=\xff\xfe"})
    assert (garbled.status, garbled.json()["code"]) == (401, "invalid_session")


# -- how a stream ends ---------------------------------------------------------------------


async def test_a_client_that_sends_on_its_stream_is_closed(
    setup: Setup, served: str, runtime: Runtime
) -> None:
    build_id = await running_build(setup)
    async with await open_stream(served, setup, build_id, runtime) as client:
        await client.stream.send_all(b"GET / HTTP/1.1\r\n\r\n")  # an SSE stream takes nothing
        assert await client.until_closed() == b""
    await until(lambda: runtime.logs.open_streams == 0)


async def test_a_client_that_leaves_an_idle_stream_frees_it_at_once(
    setup: Setup, served: str, runtime: Runtime
) -> None:
    build_id = await running_build(setup)
    client = await open_stream(served, setup, build_id, runtime)
    await client.aclose()
    # Nothing is written to the stream for a minute (keep-alives): only noticing the
    # socket close ends it within this bound.
    await until(lambda: runtime.logs.open_streams == 0, within=WITHIN)


async def test_the_server_stopping_ends_open_streams(
    app: QuartTrio, setup: Setup, runtime: Runtime
) -> None:
    config = server_config()
    config.graceful_timeout = 60.0  # far longer than the bound below: the stop ends them
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(
                serve,
                app,
                config,
                LIMITS,
                shutdown_trigger=stop.wait,
                lean=lean_routes(services_of(app)),
            )
        )
        build_id = await running_build(setup)
        async with await open_stream(binds[0], setup, build_id, runtime) as client:
            stop.set()
            assert await client.until_closed() == b""  # no done event: it resumes elsewhere
        await until(lambda: runtime.logs.open_streams == 0)
        nursery.cancel_scope.deadline = trio.current_time() + WITHIN  # serve() returns


# -- requests on the path that are not the lean route's -----------------------------------


@pytest.mark.parametrize("kind", ["head", "upgrade"])
async def test_other_requests_on_the_path_are_quarts(
    kind: str, setup: Setup, served: str, quart_served: str, runtime: Runtime
) -> None:
    build = await setup.trigger()
    if kind == "head":
        method, headers = "HEAD", auth(setup)
    else:
        method = "GET"
        headers = {
            **auth(setup),
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        }
    target = stream_path(build["id"])
    lean = await head_of(served, target, headers, method=method)
    quart = await head_of(quart_served, target, headers, method=method)
    assert lean.status == quart.status, (lean, quart)
    # Hypercorn's answer, not the lean route's (which has no Date, and closes).
    assert sorted(name for name, _ in lean.headers) == sorted(name for name, _ in quart.headers)
    assert lean.header("connection") is None
    await until(lambda: runtime.logs.open_streams == 0)
