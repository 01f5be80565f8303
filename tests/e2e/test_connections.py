"""Connections as a client on the wire makes them: keep-alive, early answers, caps, framing.

The tests that only send requests on connections of their own share one daemon with the
default settings (``shared_daemon``); those that set or stop it start their own."""

from __future__ import annotations

import json
import re
import resource
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from tests.e2e.conftest import Daemon, DaemonFactory, alive, postgres_pid
from tests.e2e.test_claims_survive_a_crash import make_repo

READ_TIMEOUT = 5.0


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> dict[str, str]:
        data: dict[str, str] = json.loads(self.body)
        return data


def _connect(daemon: Daemon) -> socket.socket:
    host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=READ_TIMEOUT)
    sock.settimeout(READ_TIMEOUT)
    return sock


def _read_reply(sock: socket.socket) -> Reply:
    """One response with a Content-Length body; fails on timeout or a closed connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside a response body"
        body += chunk
    return Reply(int(status_line.split()[1]), headers, body[:length])


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed; False if it is still open after READ_TIMEOUT * 2."""
    sock.settimeout(READ_TIMEOUT * 2)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


GET_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"


@contextmanager
def _soft_open_files_limit(limit: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_idle_keepalive_connection_is_closed_after_its_request(
    make_daemon: DaemonFactory, daemon_env: dict[str, str]
) -> None:
    daemon_env["OORED_KEEPALIVE_SECONDS"] = "1"
    daemon = make_daemon().start()
    with _connect(daemon) as sock:
        sock.sendall(GET_HEALTHZ)
        assert _read_reply(sock).status == 200
        sock.sendall(GET_HEALTHZ)
        assert _read_reply(sock).status == 200, "the connection is kept alive between requests"
        assert _closed_by_server(sock), "an idle keep-alive connection was never closed"


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"PUT /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 20\r\n\r\n", 405),
        (b"POST /v1/nothing-here HTTP/1.1\r\nHost: localhost\r\nContent-Length: 20\r\n\r\n", 404),
    ],
)
def test_connection_answered_before_its_body_arrived_answers_the_next_request(
    shared_daemon: Daemon, request_head: bytes, status: int
) -> None:
    """Like clients that send the head and the body apart, the body comes after the answer."""
    daemon = shared_daemon
    for _ in range(20):
        with _connect(daemon) as sock:
            sock.sendall(request_head)
            assert _read_reply(sock).status == status
            sock.sendall(b'{"some": "json!!!!"}' + GET_HEALTHZ)
            assert _read_reply(sock).status == 200


def test_early_answer_to_a_large_body_closes_the_connection(shared_daemon: Daemon) -> None:
    daemon = shared_daemon
    head = (
        b"POST /v1/auth/local/login HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/json\r\nContent-Length: 3000000\r\n\r\n"
    )
    for _ in range(10):
        with _connect(daemon) as sock:
            sock.sendall(head)
            reply = _read_reply(sock)
            assert reply.status == 413 and reply.json()["code"] == "payload_too_large"
            assert reply.headers.get("connection") == "close"
            assert _closed_by_server(sock), "the connection was left open, wedged"


CL_AND_TE = (
    b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
)


def test_content_length_with_transfer_encoding_is_refused_and_closed(
    shared_daemon: Daemon,
) -> None:
    daemon = shared_daemon
    with _connect(daemon) as sock:
        sock.sendall(CL_AND_TE)
        reply = _read_reply(sock)
        assert reply.status == 400 and reply.json()["code"] == "invalid_request"
        assert reply.headers.get("connection") == "close"
        assert _closed_by_server(sock)
    for _ in range(10):  # what follows such a request on its connection is never served
        with _connect(daemon) as sock:
            sock.sendall(CL_AND_TE + GET_HEALTHZ)
            received = b""
            sock.settimeout(READ_TIMEOUT * 2)
            while chunk := sock.recv(65536):
                received += chunk
            assert b" 200 " not in received and received.count(b"HTTP/1.1") <= 1


@pytest.mark.parametrize("host", [b"local\xffhost", b"localhost\x7f", b"a b"])
def test_host_with_bytes_outside_a_host_name_is_refused(shared_daemon: Daemon, host: bytes) -> None:
    daemon = shared_daemon
    with _connect(daemon) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        reply = _read_reply(sock)
        assert reply.status == 400 and reply.json()["code"] == "invalid_request"
    with daemon.client() as client:
        assert client.get("/healthz", headers={"Host": "[::1]:8787"}).status_code == 200


def test_connections_over_the_cap_are_refused_at_once_and_logged_once(
    make_daemon: DaemonFactory, daemon_env: dict[str, str]
) -> None:
    cap = 40
    daemon_env["OORED_MAX_CONNECTIONS"] = str(cap)
    daemon_env["OORED_KEEPALIVE_SECONDS"] = "120"
    daemon = make_daemon().start()
    held = [_connect(daemon) for _ in range(cap)]
    try:
        for sock in held:  # every one served once, then idle and kept alive
            sock.sendall(GET_HEALTHZ)
            assert _read_reply(sock).status == 200
        for _ in range(60):
            with _connect(daemon) as extra:
                extra.sendall(GET_HEALTHZ)
                reply = _read_reply(extra)
                assert reply.status == 503 and reply.json()["code"] == "overloaded"
                assert _closed_by_server(extra)
        # Over the cap, the connections already held keep being served: health and API.
        for sock in held:
            sock.sendall(GET_HEALTHZ)
            assert _read_reply(sock).status == 200
            sock.sendall(b"GET /v1/public/setup-status HTTP/1.1\r\nHost: localhost\r\n\r\n")
            status = _read_reply(sock)
            assert status.status == 200 and "state" in status.json()
        for sock in held[: cap // 2]:
            sock.close()
        del held[: cap // 2]
        with daemon.client() as client:
            deadline = time.monotonic() + 10
            while client.get("/healthz").status_code != 200:
                assert time.monotonic() < deadline, "no room after connections closed"
    finally:
        for sock in held:
            sock.close()
    assert daemon.stop() == 0
    assert len(re.findall(r"refusing connections", daemon.text())) == 1, daemon.text()
    assert len(re.findall(r"accepting connections again", daemon.text())) == 1


def test_open_files_limit_is_raised_to_the_hard_limit_and_the_cap_fits_below(
    make_daemon: DaemonFactory,
) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 512:
        pytest.skip("needs a finite hard limit above 512")
    with _soft_open_files_limit(512):
        daemon = make_daemon().start()
    assert daemon.proc is not None
    limits = Path(f"/proc/{daemon.proc.pid}/limits").read_text()
    soft_now = re.search(r"Max open files\s+(\d+)\s+(\d+)", limits)
    assert soft_now is not None and int(soft_now[1]) == hard
    cap = re.search(r"serving at most (\d+) connections", daemon.text())
    assert cap is not None and 0 < int(cap[1]) < hard, daemon.text()


def _register_runner(daemon: Daemon) -> tuple[str, str]:
    """A runner registered by the local owner: its id and token."""
    with daemon.client() as client:
        session = client.post("/v1/auth/local/login", json={}).json()["session_token"]
        reply = client.post(
            "/v1/runners/register",
            json={"name": "on-the-wire"},
            headers={"Authorization": f"Bearer {session}"},
        ).json()
    return reply["runner"]["id"], reply["token"]


def test_the_runner_channel_is_served_lean_beside_keep_alive_requests(
    make_daemon: DaemonFactory,
) -> None:
    daemon = make_daemon()
    daemon.env["OORED_LOG_FORMAT"] = "json"
    daemon.env["OORED_ACCESS_LOG"] = "1"
    daemon.start()
    runner_id, token = _register_runner(daemon)
    rest = _connect(daemon)
    channel = _connect(daemon)
    try:
        # A REST request first, then the channel's upgrade on another connection...
        rest.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _read_reply(rest).status == 200
        frames = WSConnection(ConnectionType.CLIENT)
        upgrade = Request(
            host="127.0.0.1",
            target=f"/v1/runners/{runner_id}/channel",
            extra_headers=[
                (b"authorization", f"Bearer {token}".encode()),
                (b"x-request-id", b"channel-1"),
            ],
        )
        channel.sendall(frames.send(upgrade))
        events = _ws_events(channel, frames, AcceptConnection)
        (accepted,) = [e for e in events if isinstance(e, AcceptConnection)]
        names = {name.lower() for name, _ in accepted.extra_headers}
        assert b"server" not in names  # answered by the lean listener, not Hypercorn
        channel.sendall(frames.send(TextMessage('{"id": 1, "op": "heartbeat", "status": "busy"}')))
        (reply,) = [
            e for e in _ws_events(channel, frames, TextMessage) if isinstance(e, TextMessage)
        ]
        assert json.loads(reply.data) == {"id": 1, "ok": True}
        channel.sendall(frames.send(CloseConnection(code=1000)))
        closed = _ws_events(channel, frames, CloseConnection)
        assert any(isinstance(e, CloseConnection) and e.code == 1000 for e in closed)
        # ...and the first connection is still kept alive for the next request.
        rest.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _read_reply(rest).status == 200
    finally:
        rest.close()
        channel.close()
    with daemon.client() as client:
        session = client.post("/v1/auth/local/login", json={}).json()["session_token"]
        shown = client.get(
            f"/v1/runners/{runner_id}", headers={"Authorization": f"Bearer {session}"}
        ).json()
    assert shown["runner"]["status"] == "busy"
    assert daemon.stop() == 0
    logged = [json.loads(line) for line in daemon.text().splitlines() if line.startswith("{")]
    (access,) = [
        entry
        for entry in logged
        if entry.get("event") == "http.request" and entry.get("request_id") == "channel-1"
    ]
    assert (access["method"], access["path"], access["status"]) == (
        "GET",
        f"/v1/runners/{runner_id}/channel",
        101,
    )


def _ws_events(sock: socket.socket, frames: WSConnection, until: type) -> list[object]:
    """The WebSocket events read until one of type ``until`` (bounded by the read timeout)."""
    seen: list[object] = []
    while not any(isinstance(event, until) for event in seen):
        chunk = sock.recv(65536)
        assert chunk, f"closed before {until.__name__}: {seen}"
        frames.receive_data(chunk)
        seen.extend(frames.events())
    return seen


def _open_stream(daemon: Daemon, target: str, session: str, until: bytes) -> socket.socket:
    """A raw SSE request, read until its headers said 200 and ``until`` arrived after them
    (a log stream of a build with no lines yet sends its headers alone)."""
    sock = _connect(daemon)
    sock.sendall(
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {session}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    data = b""
    while b"\r\n\r\n" not in data or until not in data.partition(b"\r\n\r\n")[2]:
        chunk = sock.recv(65536)
        assert chunk, f"closed before {until!r}: {data!r}"
        data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data
    return sock


def test_sigterm_with_idle_connections_and_open_streams_stops_within_the_grace(
    make_daemon: DaemonFactory, tmp_path: Path
) -> None:
    """An idle keep-alive socket, the live events stream, a build's log stream and a
    runner channel hold the daemon no longer than its grace; its PostgreSQL goes too."""
    grace = 4.0
    daemon = make_daemon()
    daemon.env["OORED_SHUTDOWN_GRACE"] = str(grace)
    daemon.env["OORED_KEEPALIVE_SECONDS"] = "120"  # the idle socket outlives the test
    daemon.start()
    repo = make_repo(tmp_path)
    with daemon.client() as client:
        session = client.post("/v1/auth/local/login", json={}).json()["session_token"]
        auth = {"Authorization": f"Bearer {session}"}
        project = client.post(
            "/v1/projects", json={"name": "p", "local_repository_path": str(repo)}, headers=auth
        ).json()["project"]
        pipeline = client.post(
            f"/v1/projects/{project['id']}/pipelines", json={"name": "ci"}, headers=auth
        ).json()["pipeline"]
        build = client.post(
            f"/v1/projects/{project['id']}/builds",
            json={"pipeline_id": pipeline["id"]},
            headers=auth,
        ).json()["build"]
    runner_id, token = _register_runner(daemon)
    idle = _connect(daemon)
    held = [idle]
    try:
        idle.sendall(GET_HEALTHZ)
        assert _read_reply(idle).status == 200
        held.append(_open_stream(daemon, "/v1/events/stream", session, b"event: ready"))
        held.append(_open_stream(daemon, f"/v1/builds/{build['id']}/logs/stream", session, b""))
        channel = _connect(daemon)
        held.append(channel)
        frames = WSConnection(ConnectionType.CLIENT)
        channel.sendall(
            frames.send(
                Request(
                    host="127.0.0.1",
                    target=f"/v1/runners/{runner_id}/channel",
                    extra_headers=[(b"authorization", f"Bearer {token}".encode())],
                )
            )
        )
        _ws_events(channel, frames, AcceptConnection)
        channel.sendall(
            frames.send(TextMessage('{"id": 1, "op": "heartbeat", "status": "online"}'))
        )
        _ws_events(channel, frames, TextMessage)
        pg = postgres_pid(daemon.data_dir)
        assert pg is not None and alive(pg)

        assert daemon.proc is not None
        began = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        status = daemon.proc.wait(timeout=grace + 10)
        took = time.monotonic() - began
        assert status == 0, daemon.text()
        assert took < grace, f"{took:.1f}s:\n{daemon.text()}"
        # pg_ctl's stop returns once the server removed its pid file, a moment before the
        # postmaster itself has exited and been reaped.
        while alive(pg) and time.monotonic() - began < grace:
            time.sleep(0.05)
        assert not alive(pg), f"the embedded PostgreSQL outlived the daemon:\n{daemon.text()}"
        for sock in held:  # every connection was closed, none left hanging
            assert _closed_by_server(sock)
    finally:
        for sock in held:
            sock.close()
    daemon.stop()
