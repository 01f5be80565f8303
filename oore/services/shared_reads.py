"""One read per key at a time: a caller asking for what is being read already waits for
that read and takes its result, unless something changed since the read began.

The kept answers of the hot reads (oore/http/lean/cache.py) and the credentials found
good (oore/services/identity.py) both read this way, each with its own count of changes:
when many clients ask for the same thing at once (200 readers starting, a change that
drops what they all read), the database is asked once, not once per client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar, cast

import trio

R = TypeVar("R")


class _Reading(Generic[R]):
    """A read under way: the version it began at, and its result once done."""

    def __init__(self, since: int) -> None:
        self.since = since
        self.done = trio.Event()
        self.result: R | None = None
        self.ok = False


class SharedReads(Generic[R]):
    """Reads under way by key; ``version`` moves on at every change that may make a read
    under way out of date."""

    def __init__(self, version: Callable[[], int]) -> None:
        self._version = version
        self._reading: dict[Hashable, _Reading[R]] = {}
        self.joined = 0  # reads that waited for the same read under way

    async def read(
        self,
        key: Hashable,
        read: Callable[[int], Awaitable[R]],
        usable: Callable[[R], bool] = lambda _: True,
    ) -> R:
        """``read(since)``: the read of ``key`` from version ``since`` on; or, when the same
        read is under way and no change came since it began, its result (if ``usable``
        by this caller too, else this caller reads). A read that failed is read again."""
        under_way = self._reading.get(key)
        if under_way is not None and under_way.since == self._version():
            self.joined += 1
            await under_way.done.wait()
            result = cast(R, under_way.result)  # set when ok
            if under_way.ok and usable(result):
                return result
        reading: _Reading[R] = _Reading(self._version())
        self._reading[key] = reading
        try:
            found = await read(reading.since)
            reading.result, reading.ok = found, True
            return found
        finally:
            if self._reading.get(key) is reading:
                del self._reading[key]
            reading.done.set()
