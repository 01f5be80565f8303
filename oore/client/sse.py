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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from oore.client.api import Api, CliError, failure

RECONNECTS = 50  # connections in a row that deliver nothing before giving up


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
) -> Iterator[LogLine]:
    """The build's log lines, live, until the server says the stream is done."""
    last_id: str | None = None
    idle = 0
    while True:
        token = api.post(f"/v1/builds/{build_id}/stream-token")["token"]
        headers = {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        progressed = False
        with (
            api.reaching(),
            api.http.stream(
                "GET",
                f"/v1/builds/{build_id}/logs/stream",
                params={"token": token},
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
                        if event.data.strip() == "build_finished":
                            return
                        if event.data.strip() != "authorization_ended":
                            raise CliError(f"the log stream ended: {event.data.strip()}")
                        break  # the stream's grant ran out (streams last minutes): go on
                    if event.name == "attempt" and on_attempt is not None:
                        on_attempt(int(_json(event.data).get("attempt", 0)))
                    if event.name != "log":
                        continue
                    progressed = True
                    if event.id is not None:
                        last_id = event.id
                    body = _json(event.data)
                    yield LogLine(
                        int(body.get("sequence", -1)),
                        str(body.get("content", "")),
                        str(body.get("stream", "stdout")),
                    )
            except httpx.RemoteProtocolError:
                pass  # the connection dropped mid-stream: resume from the last line seen
        idle = 0 if progressed else idle + 1
        if idle >= RECONNECTS:
            raise CliError("the log stream keeps closing without news; giving up")


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise CliError("the log stream sent an event that is not JSON") from None
    return value if isinstance(value, dict) else {}
