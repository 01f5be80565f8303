"""Answers of the hot reads kept in memory, until what they show changes.

A read answered from here costs no database call: at 1,000 reads a second the database
calls were what the daemon and PostgreSQL spent their time on, and what made the runners'
claims and log appends wait (README, "Readers under load").

What is kept, per viewer (user, role, and whether through an API token):

- the encoded answer of a list of projects, builds or runners, or of one build, under
  its path and query;
- the lines of a finished attempt of a build's log (up to :data:`KEPT_LINES` of them),
  from which every page of that log is cut, whatever its window.

Each kept answer depends on marks (oore/domain/changes.py) and is dropped when one of
them comes: from this daemon's writes as soon as they commit, and from the other daemons'
by notice (oore/services/changes.py). An answer that shows a queued build also depends
on the runners, and is kept at most :data:`QUEUED_SECONDS`, since why a build waits
depends on when the runners were last heard from.

A read that was under way while a mark it depends on came is not kept (it may have read
from before the change). The cache holds at most :data:`MAX_BYTES` (roughly), the least
recently used going first.

One read per answer at a time (:meth:`AnswerCache.read_once`): when a change drops an
answer that many read, the first reader reads it again and the others, arriving while
no change came since that read began, wait for its result instead of each reading the
same from the database.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from oore.domain.changes import ANY_BUILD, WORLD, is_build_mark
from oore.services.shared_reads import SharedReads

MAX_BYTES = 64 * 1024 * 1024
KEPT_LINES = 20_000  # lines of one attempt, at most, kept whole
QUEUED_SECONDS = 1.0
RECENT_CHANGES = 512  # marks remembered to judge the reads under way

R = TypeVar("R")


@dataclass
class Kept:
    """One kept answer: its value, what it depends on, until when, and its rough size."""

    value: object
    marks: frozenset[str]
    until: float | None
    size: int


class AnswerCache:
    """Kept answers of this daemon's hot reads (see the module's docstring)."""

    def __init__(
        self, *, max_bytes: int = MAX_BYTES, now: Callable[[], float] = trio.current_time
    ) -> None:
        self._max_bytes = max_bytes
        self._now = now
        self._kept: OrderedDict[Hashable, Kept] = OrderedDict()
        self._by_mark: dict[str, set[Hashable]] = {}
        self._bytes = 0
        self._version = 0
        self._recent: deque[tuple[int, frozenset[str]]] = deque(maxlen=RECENT_CHANGES)
        self._reading: SharedReads[Any] = SharedReads(lambda: self._version)
        self.hits = 0
        self.misses = 0
        self.dropped = 0  # answers dropped by a mark

    @property
    def version(self) -> int:
        """Moves on at every change heard of; a read notes it before it starts."""
        return self._version

    @property
    def joined(self) -> int:
        """Reads that waited for the same read under way."""
        return self._reading.joined

    @property
    def size(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, key: Hashable) -> object | None:
        """The kept value, or None (and a miss)."""
        kept = self._kept.get(key)
        if kept is not None and kept.until is not None and kept.until <= self._now():
            self._drop(key)
            kept = None
        if kept is None:
            self.misses += 1
            return None
        self._kept.move_to_end(key)
        self.hits += 1
        return kept.value

    async def read_once(
        self,
        key: Hashable,
        read: Callable[[int], Awaitable[R]],
        usable: Callable[[R], bool] = lambda _: True,
    ) -> R:
        """The answer of ``key`` read once for all who ask meanwhile
        (:meth:`SharedReads.read`, against this cache's version)."""
        found: R = await self._reading.read(key, read, usable)
        return found

    def put(
        self,
        key: Hashable,
        value: object,
        marks: Iterable[str],
        *,
        since: int,
        size: int,
        seconds: float | None = None,
    ) -> bool:
        """Keep ``value`` (read from version ``since`` on), unless a change it depends on
        came meanwhile or it is too large; whether it was kept."""
        depends = frozenset(marks)
        if self._changed_since(since, depends) or size > self._max_bytes // 8:
            return False
        if key in self._kept:
            self._drop(key)
        until = None if seconds is None else self._now() + seconds
        self._kept[key] = Kept(value, depends, until, size)
        self._bytes += size
        for mark in self._indexed(depends):
            self._by_mark.setdefault(mark, set()).add(key)
        while self._bytes > self._max_bytes:
            self._drop(next(iter(self._kept)))
        return True

    def forget(self, marks: Iterable[str]) -> None:
        """Drop what depends on any of ``marks`` (a change committed, here or elsewhere)."""
        found = frozenset(marks)
        self._version += 1
        self._recent.append((self._version, found))
        if WORLD in found:
            self.dropped += len(self._kept)
            self._kept.clear()
            self._by_mark.clear()
            self._bytes = 0
            return
        for mark in found:
            for key in list(self._by_mark.get(mark, ())):
                self._drop(key)
                self.dropped += 1

    def _indexed(self, depends: frozenset[str]) -> frozenset[str]:
        """The marks an answer is found under: its own, and ``build:*`` if it depends on
        one build."""
        if any(is_build_mark(mark) for mark in depends):
            return depends | {ANY_BUILD}
        return depends

    def _changed_since(self, since: int, depends: frozenset[str]) -> bool:
        if since == self._version:
            return False
        if not self._recent or self._recent[0][0] > since + 1:
            return True  # the changes since then are no longer all remembered
        indexed = self._indexed(depends)
        for version, marks in reversed(self._recent):
            if version <= since:
                break
            if WORLD in marks or not marks.isdisjoint(indexed):
                return True
        return False

    def _drop(self, key: Hashable) -> None:
        kept = self._kept.pop(key)
        self._bytes -= kept.size
        for mark in self._indexed(kept.marks):
            keys = self._by_mark.get(mark)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_mark[mark]
