"""What the writes of every daemon sharing the database may have changed, as marks
(oore/domain/changes.py), told to this daemon's listeners (the kept answers of the hot
reads, oore/http/lean/cache.py).

This daemon's marks come from its store as each database call commits (before the
caller resumes, so a read right after a write never finds what the write changed); they
are told here at once and published to the other daemons as a ``changes`` notice. Another
daemon's marks arrive by that notice. When notices may have been lost (the listening
connection was down), everything may have changed: ``world``.
"""

from __future__ import annotations

from collections.abc import Callable

from oore.cluster import Notices, Subscription
from oore.domain.changes import WORLD
from oore.store.changes import Changes

CHANGES = "changes"

Listener = Callable[[frozenset[str]], None]


class SharedChanges:
    """The marks of this daemon's writes and the other daemons', told to listeners."""

    def __init__(self, local: Changes, notices: Notices) -> None:
        self._notices = notices
        self._listeners: list[Listener] = []
        local.listen(self._committed)
        notices.subscribe(CHANGES, Subscription(self._noticed, resync=self._resync))

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _tell(self, marks: frozenset[str]) -> None:
        for listener in self._listeners:
            listener(marks)

    def _committed(self, marks: frozenset[str]) -> None:
        self._tell(marks)
        self._notices.publish(CHANGES, sorted(marks))

    async def _noticed(self, items: list[str]) -> None:
        self._tell(frozenset(items))

    async def _resync(self) -> None:
        self._tell(frozenset({WORLD}))
