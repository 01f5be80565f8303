"""A plain HTTP server on 127.0.0.1 in a thread, for the fixtures that stand in for
services this machine cannot reach; stopped and joined (bounded) when the block ends."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

JOIN_TIMEOUT = 10.0
# How often serve_forever looks for shutdown: its default (0.5 s) is paid by every test.
POLL_INTERVAL = 0.02


@dataclass(frozen=True)
class Recorded:
    """One request a fake received, as tests check it (header names in lower case)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


def recorded(handler: BaseHTTPRequestHandler) -> Recorded:
    """The handler's request, its body read."""
    parts = urlsplit(handler.path)
    length = int(handler.headers.get("Content-Length", "0"))
    return Recorded(
        method=handler.command,
        path=parts.path,
        query=dict(parse_qsl(parts.query)),
        headers={k.lower(): v for k, v in handler.headers.items()},
        body=handler.rfile.read(length) if length else b"",
    )


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(POLL_INTERVAL,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=JOIN_TIMEOUT)


def send_answer(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: Any,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Answer the handler's request: bytes as ``text/plain``, text as JSON already
    written, anything else as JSON, with its length and ``headers``."""
    if isinstance(body, bytes):
        raw, content_type = body, "text/plain"
    else:
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        content_type = "application/json"
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(raw)))
    handler.end_headers()
    handler.wfile.write(raw)
