"""Exponential backoff for calls that fail with a network or 5xx error."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from oore.runner.client import RunnerError, retryable

T = TypeVar("T")

INITIAL_DELAY = 0.5
MAX_DELAY = 10.0


class Backoff:
    """Delays of ``initial`` seconds doubling up to ``maximum``; :meth:`reset` after a success."""

    def __init__(self, initial: float = INITIAL_DELAY, maximum: float = MAX_DELAY) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    say: Callable[[str], None],
    backoff: Backoff | None = None,
) -> T:
    """Await ``call()`` until it succeeds; retryable errors wait, others propagate.

    Waits forever while the server stays unreachable; the caller's cancel scope bounds it.
    """
    backoff = backoff or Backoff()
    failures = 0
    while True:
        try:
            result = await call()
        except RunnerError as exc:
            if not retryable(exc):
                raise
            failures += 1
            delay = backoff.next()
            say(f"{what} failed ({exc}); retrying in {delay:g}s")
        else:
            if failures:
                say(f"{what} succeeded after {failures} failed attempts")
            return result
        await trio.sleep(delay)
