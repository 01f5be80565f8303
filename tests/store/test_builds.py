"""Builds made in a burst: they take turns per project before they take a connection."""

from __future__ import annotations

import uuid
from typing import Any

import trio

from oore.domain.builds import TriggerType
from oore.store import Store, open_store
from oore.store.builds import NewBuild
from oore.store.database import Connection
from tests.store.test_artifacts import NOW, world

HELD_SECONDS = 5  # how long another daemon holds the project's row


async def _hold_project(conn: Connection, project_id: str, seconds: float) -> None:
    await conn.execute("SELECT 1 FROM projects WHERE id = $1 FOR UPDATE", uuid.UUID(project_id))
    await conn.execute("SELECT pg_sleep($1)", seconds)


async def _waiting_on_a_lock(conn: Connection) -> int:
    count: int = await conn.fetchval(
        """SELECT count(*) FROM pg_stat_activity
           WHERE datname = current_database() AND wait_event_type = 'Lock'"""
    )
    return count


async def _project_locked(conn: Connection) -> bool:
    locked: bool = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                          WHERE c.relname = 'projects' AND l.mode = 'RowShareLock'
                            AND l.pid <> pg_backend_pid())"""
    )
    return locked


async def _until(store: Store, probe: Any) -> None:
    with trio.fail_after(HELD_SECONDS):
        while not await store.db.run(probe):  # noqa: ASYNC110 (a database to poll)
            await trio.sleep(0.02)


async def test_a_burst_of_builds_for_one_project_leaves_the_pool_to_others(
    database_url: str,
) -> None:
    """Another daemon holds the project's row: five builds of that project wait for it,
    one of them on a connection and the others in memory, so a read on this daemon's pool
    of two still gets a connection and is answered while the row is held. Then the five
    are made, numbered one after the other."""
    async with (
        open_store(database_url, pool_size=2) as store,
        open_store(database_url, pool_size=1) as other,
        open_store(database_url, pool_size=1) as watch,
    ):
        w = await world(store)
        first = await store.builds.get(w.build_id)
        assert first is not None
        template = NewBuild(
            w.project_id, first.pipeline_id, TriggerType.MANUAL, None, None, "main",
            "a" * 40, "main", None, None, {}, (), "build created", NOW,
        )  # fmt: skip
        released = False
        made: list[int] = []

        async def hold() -> None:
            nonlocal released
            await other.db.transaction(_hold_project, w.project_id, HELD_SECONDS)
            released = True

        async def create() -> None:
            build = await store.builds.create(template)
            assert build is not None
            made.append(build.build_number)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold)
            await _until(watch, _project_locked)
            for _ in range(5):
                nursery.start_soon(create)
            await _until(watch, _waiting_on_a_lock)
            read = await store.builds.get(w.build_id)
            assert read is not None and not released and made == []
        assert released and sorted(made) == [2, 3, 4, 5, 6]
