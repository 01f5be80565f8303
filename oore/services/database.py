"""The database as operators see it: is it ready, how busy is its pool, what is live in it.

The HTTP layer reads these for ``/readyz`` and ``/metrics`` through this service and
never reaches the store itself.
"""

from __future__ import annotations

from oore.domain.builds import LiveBuilds
from oore.store import Readiness, Store
from oore.store.database import PoolUsage


class DatabaseStatus:
    """Readiness, pool usage and the counts of live builds and runners."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def available(self) -> bool:
        """False during an outage (queries then fail at once)."""
        return self._store.db.available

    def pool_usage(self) -> PoolUsage:
        """The pool's connections in use, open and at most, without a query."""
        return self._store.db.pool_usage()

    async def readiness(self) -> Readiness:
        """Can we reach the database, and is its schema the one this code expects?"""
        return await self._store.readiness()

    async def live_builds(self) -> LiveBuilds:
        """Unfinished builds by status, and the queued ones by required labels."""
        return await self._store.builds.live()

    async def runners_by_state(self) -> dict[str, int]:
        """Registered runners by state."""
        return await self._store.runners.by_state()
