"""The head of a connection's first request, read without consuming it for anyone else."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

import trio
from werkzeug.sansio.http import parse_cookie

from oore.domain.client_ip import effective_client_ip

# Hypercorn's own limit on a request head (h11_max_incomplete_size); a longer one is
# handed to it to refuse as it always has.
MAX_HEAD = 16 * 1024
RECEIVE_BYTES = 64 * 1024
# Where the head ends when the peer did not finish sending it in time.
TIMED_OUT = -1


@dataclass(frozen=True)
class RequestHead:
    """A request line and its headers (names lower-cased, values as sent)."""

    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    version: str = "HTTP/1.1"

    @property
    def path(self) -> str:
        """The target's path, percent-decoded, without its query."""
        return unquote(self.target.split("?", 1)[0])

    def header(self, name: bytes) -> str | None:
        """The first value of header ``name`` (lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    def cookie(self, name: str) -> str | None:
        """Cookie ``name``, read as Quart reads cookies: every Cookie header, joined, taken
        as sent (bytes outside UTF-8 make a value that matches nothing, not an error)."""
        joined = ";".join(
            value.decode("latin-1") for key, value in self.headers if key == b"cookie"
        )
        return parse_cookie(joined).get(name) if joined else None

    def client_ip(self, peer: str | None) -> str | None:
        """The effective client IP of this request from ``peer`` (contract §0.3)."""
        headers = {
            key.decode("latin-1"): value.decode("latin-1")
            for key, value in reversed(self.headers)  # the first of repeated headers wins
        }
        return effective_client_ip(peer, headers)

    def tokens(self, name: bytes) -> set[str]:
        """The comma-separated tokens of every ``name`` header, lower-cased."""
        found: set[str] = set()
        for key, value in self.headers:
            if key == name:
                found.update(t.strip().lower() for t in value.decode("latin-1").split(","))
        return found


def parse_head(raw: bytes) -> RequestHead | None:
    """The head in ``raw`` (up to the blank line), or None when it is not one we read."""
    lines = raw.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return None
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if not line:
            break
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            return None
        headers.append((name.lower(), value.strip()))
    try:
        return RequestHead(
            parts[0].decode("ascii"), parts[1].decode("ascii"), headers, parts[2].decode("ascii")
        )
    except UnicodeDecodeError:
        return None


async def read_head(
    stream: trio.abc.ReceiveStream,
    wanted: Callable[[bytes], bool],
    idle_seconds: float,
    received: bytes = b"",
) -> tuple[bytes, int]:
    """Read while the bytes so far may begin a head ``wanted`` takes and it is incomplete.

    Answers the bytes read and where the head ends in them (0: no complete head, for
    anyone; :data:`TIMED_OUT`: ``idle_seconds`` passed first, however many bytes came,
    so a head sent a byte at a time is not read for longer than an idle connection is
    kept). Stops at end of stream, after ``idle_seconds``, past :data:`MAX_HEAD`.
    ``received``: bytes already read (after a previous request on the connection).
    """
    if received:  # what a kept-alive connection read after its last request
        end = received.find(b"\r\n\r\n", 0, MAX_HEAD)
        if end >= 0:
            return received, end + 4
        if not wanted(received) or len(received) >= MAX_HEAD:
            return received, 0
    with trio.move_on_after(idle_seconds) as waiting:
        while True:
            chunk = await stream.receive_some(RECEIVE_BYTES)
            if not chunk:
                break
            received += chunk
            end = received.find(b"\r\n\r\n", 0, MAX_HEAD)
            if end >= 0:
                return received, end + 4
            if not wanted(received) or len(received) >= MAX_HEAD:
                break
    return received, TIMED_OUT if waiting.cancelled_caught else 0
