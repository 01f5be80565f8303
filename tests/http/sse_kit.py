"""The app served on loopback as the daemon serves it, and a small server-sent events reader."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import pytest
import trio
from quart_trio import QuartTrio

from tests.http.channel_kit import serve_app, services_of


@asynccontextmanager
async def serving(app: QuartTrio, *, lean: bool = True) -> AsyncIterator[str]:
    """The app on a loopback port (its URL), as the daemon serves it unless ``lean`` is
    False (then without the lean routes: Quart answers everything)."""
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(serve_app, app, services_of(app), shutdown_trigger=stop.wait, lean=lean)
        )
        yield binds[0]
        stop.set()
        nursery.cancel_scope.deadline = trio.current_time() + 5


@pytest.fixture
async def served(app: QuartTrio) -> AsyncIterator[str]:
    """The app on a loopback port as the daemon serves it: the lean listener (runner
    channel, log streams) in front of Hypercorn."""
    async with serving(app) as url:
        yield url


@dataclass
class Event:
    name: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class Stream:
    """What one SSE client received: events in order, comments counted, how it ended."""

    events: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    status: int | None = None
    error: Any = None
    ended: bool = False

    def feed(self, block: str) -> None:
        fields: dict[str, str] = {}
        for raw in block.split("\n"):
            if raw.startswith(":"):
                self.comments.append(raw[1:].strip())
            elif raw:
                name, _, value = raw.partition(":")
                fields[name] = value.removeprefix(" ")
        if "data" in fields or "event" in fields:
            self.events.append(
                Event(fields.get("event", "message"), fields.get("data", ""), fields.get("id"))
            )

    def named(self, name: str) -> list[Event]:
        return [event for event in self.events if event.name == name]


async def read_stream(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    stream: Stream,
    *,
    until_event: Callable[[Stream], bool] | None = None,
) -> None:
    """Read SSE into ``stream`` until the server ends it (or ``until_event`` holds)."""
    async with client.stream("GET", url, headers=headers) as reply:
        stream.status = reply.status_code
        if reply.status_code != 200:
            await reply.aread()
            stream.error = reply.json()
            stream.ended = True
            return
        pending = ""
        async for text in reply.aiter_text():
            pending += text.replace("\r\n", "\n")
            while "\n\n" in pending:
                block, pending = pending.split("\n\n", 1)
                stream.feed(block)
                if until_event is not None and until_event(stream):
                    stream.ended = True
                    return
    stream.ended = True


async def until(check: Callable[[], bool], within: float = 10) -> None:
    """Wait (bounded) for something another task makes true."""
    with trio.fail_after(within):
        while not check():  # noqa: ASYNC110
            await trio.sleep(0.01)
