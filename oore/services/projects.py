"""Projects, pipelines and project members: what a request asks, checked and stored."""

from __future__ import annotations

from oore.services.access import Access
from oore.services.clock import WallClock
from oore.services.identity import AuditSink
from oore.store import Store


class Projects:
    """Use cases of the Projects and Pipelines API groups (contract §2.5, §2.6)."""

    def __init__(self, store: Store, clock: WallClock, audit: AuditSink, access: Access) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._access = access
