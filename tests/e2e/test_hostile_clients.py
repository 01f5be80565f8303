"""Hostile clients on the wire, against a real ``oored``: heads sent a byte at a time,
thousands of idle connections, heads and bodies too large, framing and bytes HTTP does
not allow. Other clients keep being served; every refusal is a JSON error.
"""

from __future__ import annotations

import json
import resource
import selectors
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Daemon, DaemonFactory

KEEPALIVE_SECONDS = 1
SLOW_HEADS = 300
IDLE_CONNECTIONS = 5000
# Generous: the other clients' calls are not timed here (figures are in bench/hostile.py),
# only required to be answered rather than left waiting behind the hostile connections.
ANSWER_WITHIN = 5.0
# A slow head takes longer than this to send whole; the server must drop it first.
BYTE_EVERY = 0.1
# What the daemon may keep resident once 5,000 idle connections have gone: about 30 MB
# was measured (Python's allocator keeps the arenas it grew; a second wave reuses them).
RSS_MARGIN_KB = 48_000


def _address(daemon: Daemon) -> tuple[str, int]:
    host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@contextmanager
def _open_files(needed: int) -> Iterator[None]:
    """This process's soft open-files limit raised to ``needed`` (within the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} open files; the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _assert_others_served(client: httpx.Client, token: str) -> None:
    """``/healthz`` and an authenticated API read, each answered by a new connection."""
    assert client.get("/healthz").status_code == 200
    reply = client.get("/v1/projects", headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.text


def _slow_heads(address: tuple[str, int], runner_path: str) -> list[tuple[socket.socket, bytes]]:
    """Connections each about to send a head a byte at a time; half of them look like the
    runner channel's upgrade, which the lean listener reads before Hypercorn does."""
    padding = b"X-Padding: " + b"a" * 200 + b"\r\n"
    plain = b"GET /v1/projects HTTP/1.1\r\nHost: localhost\r\n" + padding + b"\r\n"
    upgrade = (
        f"GET {runner_path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n".encode()
        + padding
        + b"\r\n"
    )
    slow = []
    for i in range(SLOW_HEADS):
        sock = socket.create_connection(address, timeout=ANSWER_WITHIN)
        sock.setblocking(False)
        slow.append((sock, upgrade if i % 2 else plain))
    return slow


def _still_open(sock: socket.socket) -> bool:
    """Whether the server still holds ``sock`` open (it never answers a slow head)."""
    try:
        data = sock.recv(4096)
    except BlockingIOError:
        return True
    except ConnectionError:
        return False
    assert not data, f"a head never completed was answered: {data!r}"
    return False


def test_hostile_clients_get_a_clear_answer_and_leave_others_served(
    make_daemon: DaemonFactory, daemon_env: dict[str, str]
) -> None:
    """One daemon for every check below (its start is most of their time)."""
    with _open_files(IDLE_CONNECTIONS + SLOW_HEADS + 256):
        daemon_env["OORED_KEEPALIVE_SECONDS"] = str(KEEPALIVE_SECONDS)
        daemon = make_daemon().start()
        _requests_http_does_not_allow_get_a_json_error_and_a_closed_connection(daemon)
        _bytes_outside_utf_8_are_refused_or_taken_literally(daemon)
        for framing in ("content-length", "chunked"):
            _a_50_mb_body_is_refused_early_and_the_connection_closed(daemon, framing)
        _slow_heads_and_idle_connections_leave_other_clients_served(daemon)
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.text(), daemon.text()


def _slow_heads_and_idle_connections_leave_other_clients_served(daemon: Daemon) -> None:
    assert daemon.proc is not None
    pid = daemon.proc.pid
    address = _address(daemon)
    with httpx.Client(
        base_url=daemon.url,
        timeout=ANSWER_WITHIN,
        limits=httpx.Limits(max_keepalive_connections=0),
    ) as client:
        token = client.post("/v1/auth/local/login", json={}).json()["session_token"]
        for _ in range(50):
            _assert_others_served(client, token)
        baseline = _rss_kb(pid)

        # Slowloris: heads a byte at a time, each too long to finish before the server
        # gives up on it (the keep-alive timeout, counted from the connection's start).
        slow = _slow_heads(address, "/v1/runners/00000000-0000-0000-0000-000000000000/channel")
        head_seconds = min(len(head) for _, head in slow) * BYTE_EVERY
        assert head_seconds > KEEPALIVE_SECONDS * 5
        started = time.monotonic()
        sent = 0
        while slow:
            assert time.monotonic() - started < head_seconds, f"{len(slow)} slow heads left"
            for sock, head in slow:
                with suppress(OSError):
                    sock.send(head[sent : sent + 1])
            sent += 1
            kept = [(sock, head) for sock, head in slow if _still_open(sock)]
            for sock, _ in set(slow) - set(kept):
                sock.close()
            slow = kept
            _assert_others_served(client, token)
            time.sleep(BYTE_EVERY)

        # Thousands of connections that never send a byte.
        idle = [
            socket.create_connection(address, timeout=ANSWER_WITHIN)
            for _ in range(IDLE_CONNECTIONS)
        ]
        _assert_others_served(client, token)
        during = _rss_kb(pid)
        with selectors.DefaultSelector() as selector:
            for sock in idle:
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ)
            deadline = time.monotonic() + KEEPALIVE_SECONDS * 5 + 10
            left = len(idle)
            while left:
                assert time.monotonic() < deadline, f"{left} idle connections left open"
                for key, _ in selector.select(timeout=1.0):
                    closed = key.fileobj
                    assert isinstance(closed, socket.socket)
                    assert not _still_open(closed)
                    selector.unregister(closed)
                    closed.close()
                    left -= 1
                _assert_others_served(client, token)

        # Memory comes back once they have gone (see RSS_MARGIN_KB).
        deadline = time.monotonic() + 20
        while (after := _rss_kb(pid)) > baseline + RSS_MARGIN_KB:
            assert time.monotonic() < deadline, (baseline, during, after)
            _assert_others_served(client, token)
            time.sleep(0.5)
    print(f"rss kB: baseline {baseline}, {IDLE_CONNECTIONS} idle {during}, after {after}")


HOST = b"Host: localhost\r\n"
LOGIN = b"POST /v1/auth/local/login HTTP/1.1\r\n" + HOST
# (request, status, code): each refused with the API's JSON error, then closed.
REFUSED = {
    "a 100 KB header": (
        b"GET /healthz HTTP/1.1\r\n" + HOST + b"X-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        431,
        "headers_too_large",
    ),
    "2,000 headers": (
        b"GET /healthz HTTP/1.1\r\n"
        + HOST
        + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 40) for i in range(2000))
        + b"\r\n",
        431,
        "headers_too_large",
    ),
    "a 100 KB header on the runner channel's path": (
        b"GET /v1/runners/r/channel HTTP/1.1\r\n"
        + HOST
        + b"X-Big: "
        + b"a" * 100_000
        + b"\r\n\r\n",
        431,
        "headers_too_large",
    ),
    "invalid UTF-8 in the path": (
        b"GET /v1/projects/\xff\xfe HTTP/1.1\r\n" + HOST + b"\r\n",
        400,
        "invalid_request",
    ),
    "invalid UTF-8 in the query": (
        b"GET /v1/projects?q=\xff HTTP/1.1\r\n" + HOST + b"\r\n",
        400,
        "invalid_request",
    ),
    "NUL in a header value": (
        b"GET /healthz HTTP/1.1\r\n" + HOST + b"X-A: a\x00b\r\n\r\n",
        400,
        "invalid_request",
    ),
    "a method of other bytes": (
        b"G\xffT /healthz HTTP/1.1\r\n" + HOST + b"\r\n",
        400,
        "invalid_request",
    ),
    "Transfer-Encoding chunked twice in one header, with Content-Length": (
        LOGIN + b"Content-Length: 5\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        501,
        "not_implemented",
    ),
    "Transfer-Encoding in two headers": (
        LOGIN + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        501,
        "not_implemented",
    ),
    "Transfer-Encoding gzip": (
        LOGIN + b"Transfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
        501,
        "not_implemented",
    ),
    "Transfer-Encoding xchunked": (
        LOGIN + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        501,
        "not_implemented",
    ),
    "Transfer-Encoding with a space before its colon": (
        LOGIN + b"Transfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        400,
        "invalid_request",
    ),
    "Transfer-Encoding folded onto a second line": (
        LOGIN + b"Content-Length: 3\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        400,
        "invalid_request",
    ),
    "chunked with Content-Length, on the runner channel's path": (
        b"GET /v1/runners/r/channel HTTP/1.1\r\n"
        + HOST
        + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        "invalid_request",
    ),
    "two different Content-Lengths": (
        LOGIN + b"Content-Length: 3\r\nContent-Length: 5\r\n\r\n{}   ",
        400,
        "invalid_request",
    ),
    "a list for Content-Length": (
        LOGIN + b"Content-Length: 3, 5\r\n\r\n{}   ",
        400,
        "invalid_request",
    ),
    "a negative Content-Length": (LOGIN + b"Content-Length: -1\r\n\r\n", 400, "invalid_request"),
    "a chunk size that is not hexadecimal": (
        LOGIN
        + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"zz\r\n{}\r\n0\r\n\r\n",
        400,
        "invalid_request",
    ),
}


def _exchange(address: tuple[str, int], request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` and read until the server closes: status, headers, body."""
    with socket.create_connection(address, timeout=ANSWER_WITHIN) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def _requests_http_does_not_allow_get_a_json_error_and_a_closed_connection(
    daemon: Daemon,
) -> None:
    address = _address(daemon)
    for kind, (request, status, code) in REFUSED.items():
        got, headers, body = _exchange(address, request)
        assert got == status, (kind, got, body)
        assert headers["content-type"] == "application/json", kind
        assert headers["connection"] == "close", kind
        error = json.loads(body)
        assert (error["code"], error["request_id"]) == (code, headers["x-request-id"]), kind
    with daemon.client() as client:
        assert client.get("/healthz").status_code == 200


def _bytes_outside_utf_8_are_refused_or_taken_literally(daemon: Daemon) -> None:
    address = _address(daemon)
    with daemon.client() as client:
        token = client.post("/v1/auth/local/login", json={}).json()["session_token"]
    auth = f"Authorization: Bearer {token}\r\n".encode()
    for target, status in (
        (b"/v1/projects/%ff%fe", 404),
        (b"/v1/projects?q=%ff%fe&offset=%ff", 400),
        (
            b"/v1/builds?branch=%c0%af",
            200,
        ),  # an overlong form decodes to U+FFFD, searched literally
        (b"/assets/%ff.js", 404),
    ):
        got, _, body = _exchange(
            address,
            b"GET " + target + b" HTTP/1.1\r\n" + HOST + auth + b"Connection: close\r\n\r\n",
        )
        assert got == status, (target, got, body)
        assert status == 200 or json.loads(body)["code"], target
    for header, status in (
        (b"Authorization: Bearer \xff\xfe\r\n", 401),
        (b"Cookie: oore_session=\xff\xfe\r\n", 401),
        (auth + b"X-Request-Id: \xff\xfe\r\n", 200),
        (auth + b"Origin: http://\xff\r\n", 200),
        (auth + b"Accept-Language: \xff\r\n", 200),
    ):
        got, headers, body = _exchange(
            address, b"GET /v1/projects HTTP/1.1\r\n" + HOST + header + b"Connection: close\r\n\r\n"
        )
        assert got == status, (header, got, body)
        assert headers["x-request-id"].isascii() and "\xff" not in headers["x-request-id"]


FIFTY_MB = 50 * 1024 * 1024


def _a_50_mb_body_is_refused_early_and_the_connection_closed(daemon: Daemon, framing: str) -> None:
    head = LOGIN + b"Content-Type: application/json\r\n"
    piece = b"x" * 65536
    if framing == "chunked":
        head += b"Transfer-Encoding: chunked\r\n\r\n"
        piece = b"%x\r\n" % len(piece) + piece + b"\r\n"
    else:
        head += b"Content-Length: %d\r\n\r\n" % FIFTY_MB
    with socket.create_connection(_address(daemon), timeout=ANSWER_WITHIN) as sock:
        sock.sendall(head)
        sent = 0
        received = b""
        sock.setblocking(False)
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            deadline = time.monotonic() + 30
            while b"\r\n\r\n" not in received:
                assert time.monotonic() < deadline and sent < FIFTY_MB, (sent, received)
                for _, events in selector.select(timeout=1.0):
                    if events & selectors.EVENT_READ:
                        chunk = sock.recv(65536)
                        assert chunk, f"closed without an answer after {sent} bytes"
                        received += chunk
                    elif events & selectors.EVENT_WRITE:
                        with suppress(BlockingIOError):
                            sent += sock.send(piece)
        sock.setblocking(True)
        sock.settimeout(ANSWER_WITHIN)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # what we still sent met the closed socket; the answer was read already
    assert received.startswith(b"HTTP/1.1 413 "), received[:200]
    assert b"connection: close" in received.lower()
    assert b'"payload_too_large"' in received
    assert sent < FIFTY_MB // 4, f"{sent} bytes were taken before the answer"
    with daemon.client() as client:
        assert client.get("/healthz").status_code == 200
