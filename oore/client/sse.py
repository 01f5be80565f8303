"""Server-sent events of a build's log: parsed, and followed across reconnects.

A stream ends with ``event: done``: ``build_finished`` ends the log; ``authorization_ended``
comes when the stream's grant runs out after a few minutes. Then, or when the connection
drops (a restarting daemon, a network), the follower opens a new stream with
``Last-Event-ID`` and goes on after the last line it saw; a lost access shows as the next
stream token being refused. Each connection takes a fresh single-use stream token, which
works for sessions and API tokens alike.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from oore.client.api import Api, ApiFailure, CliError, Unreachable, failure

RECONNECTS = 50  # connections in a row that deliver nothing before giving up
RETRY_FOR = 120.0  # seconds of failing connections in a row before giving up
TRANSIENT = (502, 503, 504)


@dataclass(frozen=True)
class Event:
    name: str
    data: str
    id: str | None


def parse_events(lines: Iterable[str]) -> Iterator[Event]:
    """Events of an SSE body given line by line (comments and unknown fields skipped)."""
    name, event_id = "message", None
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data or name != "message":
                yield Event(name, "\n".join(data), event_id)
            name, event_id = "message", None
            data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            event_id = value


@dataclass(frozen=True)
class LogLine:
    sequence: int
    content: str
    stream: str


def follow_log(
    api: Api,
    build_id: str,
    *,
    on_attempt: Callable[[int], None] | None = None,
    on_retry: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    tail: int | None = None,
) -> Iterator[LogLine]:
    """The build's log lines, live, until the server says the stream is done; with
    ``tail``, from the last ``tail`` stored lines on instead of the first.

    A server that cannot be reached or answers 502/503/504 (restarting, behind a proxy) is
    tried again with backoff for up to ``RETRY_FOR`` seconds of failures in a row."""
    cursor = _Cursor(tail=tail)
    failing_since: float | None = None
    delay = 0.5
    while True:
        try:
            if (yield from _one_stream(api, build_id, cursor, on_attempt)):
                return
            failing_since, delay = None, 0.5
        except (Unreachable, ApiFailure) as exc:
            if isinstance(exc, ApiFailure) and exc.status not in TRANSIENT:
                raise
            now = time.monotonic()
            failing_since = now if failing_since is None else failing_since
            if now - failing_since >= RETRY_FOR:
                raise
            if on_retry is not None:
                on_retry(f"{exc}; trying again in {delay:.1f}s")
            sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        cursor.idle = 0 if cursor.progressed else cursor.idle + 1
        if cursor.idle >= RECONNECTS:
            raise CliError("the log stream keeps closing without news; giving up")


@dataclass
class _Cursor:
    last_id: str | None = None
    progressed: bool = False
    idle: int = 0
    tail: int | None = None  # until the first line: once one came, resume after it


def _one_stream(
    api: Api, build_id: str, cursor: _Cursor, on_attempt: Callable[[int], None] | None
) -> Generator[LogLine, None, bool]:
    """One connection's lines; True once the build's log is complete."""
    token = api.post(f"/v1/builds/{build_id}/stream-token")["token"]
    headers = {"Accept": "text/event-stream"}
    params = {"token": token}
    if cursor.last_id is not None:
        headers["Last-Event-ID"] = cursor.last_id
    elif cursor.tail is not None:
        params["tail"] = str(cursor.tail)
    cursor.progressed = False
    with (
        api.reaching(),
        api.http.stream(
            "GET",
            f"/v1/builds/{build_id}/logs/stream",
            params=params,
            headers=headers,
            timeout=httpx.Timeout(30.0, read=None),
        ) as response,
    ):
        if response.status_code >= 400:
            response.read()
            raise failure(response)
        try:
            for event in parse_events(response.iter_lines()):
                if event.name == "done":
                    reason = event.data.strip()
                    if reason == "build_finished":
                        return True
                    if reason != "authorization_ended":
                        raise CliError(f"the log stream ended: {reason}")
                    return False  # the stream's grant ran out (streams last minutes): go on
                if event.name == "attempt" and on_attempt is not None:
                    on_attempt(int(_json(event.data).get("attempt", 0)))
                if event.name != "log":
                    continue
                cursor.progressed = True
                if event.id is not None:
                    cursor.last_id = event.id
                body = _json(event.data)
                yield LogLine(
                    int(body.get("sequence", -1)),
                    str(body.get("content", "")),
                    str(body.get("stream", "stdout")),
                )
        except httpx.RemoteProtocolError:
            pass  # the connection dropped mid-stream: resume from the last line seen
    return False


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise CliError("the log stream sent an event that is not JSON") from None
    return value if isinstance(value, dict) else {}
