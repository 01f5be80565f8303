"""Following a log across dropped connections and expired stream grants.

A loopback stand-in for the server's two log-stream routes: the first stream drops after
two lines, the second ends with ``authorization_ended`` (a stream's grant lasts minutes),
the third says the build finished. The client must resume after the last line it saw,
with a fresh single-use stream token each time.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import pytest

from oore.client.api import Api, CliError, NotSignedIn
from oore.client.sse import follow_log
from tests.loopback_http import serving

BUILD = "b1"


def line(sequence: int) -> bytes:
    data = json.dumps({"sequence": sequence, "content": f"line {sequence}", "stream": "stdout"})
    return f"event: log\nid: {sequence}\ndata: {data}\n\n".encode()


class Stand(BaseHTTPRequestHandler):
    tokens: ClassVar[list[str]] = []
    seen: ClassVar[list[tuple[str | None, str | None]]] = []  # (token, Last-Event-ID)
    tails: ClassVar[list[str | None]] = []  # each stream's ?tail=
    streams: ClassVar[list[bytes]] = []
    unavailable: ClassVar[int] = 0  # stream-token calls answered 503 first

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        if self.headers.get("Authorization") != "Bearer user-token":
            self.reply(401, b'{"error": "Not signed in", "code": "unauthorized"}')
            return
        if Stand.unavailable:
            Stand.unavailable -= 1
            self.reply(503, b'{"error": "Restarting", "code": "service_unavailable"}')
            return
        token = f"stream-{len(self.tokens)}"
        self.tokens.append(token)
        self.reply(200, json.dumps({"token": token, "expires_at": 0}).encode())

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        assert path == f"/v1/builds/{BUILD}/logs/stream"
        params = dict(part.partition("=")[::2] for part in query.split("&"))
        self.seen.append((params["token"], self.headers.get("Last-Event-ID")))
        self.tails.append(params.get("tail"))
        body = self.streams[len(self.seen) - 1]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)  # then the connection closes, done or not

    def reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def stand() -> type[Stand]:
    Stand.tokens, Stand.seen, Stand.tails, Stand.unavailable = [], [], [], 0
    return Stand


def test_the_log_resumes_after_the_last_line_with_a_fresh_token(stand: type[Stand]) -> None:
    stand.streams = [
        b": keep-alive\n\n" + line(0) + line(1),
        line(2) + b"event: done\ndata: authorization_ended\n\n",
        b"event: done\ndata: build_finished\n\n",
    ]
    with serving(stand) as url, Api(url, "user-token") as api:
        lines = [entry.content for entry in follow_log(api, BUILD)]
    assert lines == ["line 0", "line 1", "line 2"]
    assert stand.seen == [("stream-0", None), ("stream-1", "1"), ("stream-2", "2")]


def test_a_stream_for_a_build_that_is_gone_is_an_error(stand: type[Stand]) -> None:
    stand.streams = [line(0) + b"event: done\ndata: build_not_found\n\n"]
    with serving(stand) as url, Api(url, "user-token") as api:
        follower = follow_log(api, BUILD)
        assert next(follower).content == "line 0"
        with pytest.raises(CliError, match="the log stream ended: build_not_found"):
            next(follower)


def test_a_refused_stream_token_says_to_sign_in(stand: type[Stand]) -> None:
    with serving(stand) as url, Api(url, "stale") as api, pytest.raises(NotSignedIn):
        next(follow_log(api, BUILD))


def test_a_restarting_server_is_waited_for_with_backoff(stand: type[Stand]) -> None:
    stand.streams = [line(0), line(1) + b"event: done\ndata: build_finished\n\n"]
    waits: list[float] = []
    notes: list[str] = []
    with serving(stand) as url, Api(url, "user-token") as api:
        follower = follow_log(api, BUILD, on_retry=notes.append, sleep=waits.append)
        assert next(follower).content == "line 0"
        stand.unavailable = 3
        assert [entry.content for entry in follower] == ["line 1"]
    assert waits == [0.5, 1.0, 2.0]
    assert "Restarting (service_unavailable, HTTP 503)" in notes[0]
    assert stand.seen == [("stream-0", None), ("stream-1", "0")]


def test_a_tail_applies_until_the_first_line_then_the_log_resumes_after_it(
    stand: type[Stand],
) -> None:
    stand.streams = [
        b": keep-alive\n\n",  # dropped before any line: the next stream still asks for the tail
        line(7) + line(8),
        b"event: done\ndata: build_finished\n\n",
    ]
    with serving(stand) as url, Api(url, "user-token") as api:
        lines = [entry.sequence for entry in follow_log(api, BUILD, tail=2)]
    assert lines == [7, 8]
    assert stand.tails == ["2", "2", None]
    assert stand.seen == [("stream-0", None), ("stream-1", None), ("stream-2", "8")]
