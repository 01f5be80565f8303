from __future__ import annotations

import trio

from oore.store import Store, open_store
from oore.store.admin import drop_database, recreate_database
from oore.store.migrations import applied_versions, known_migrations
from tests.conftest import PostgresForTests


async def test_fresh_database_is_migrated_to_the_latest_version(store: Store) -> None:
    assert await applied_versions(store.db) == [m.version for m in known_migrations()]
    readiness = await store.readiness()
    assert readiness.database and readiness.migrations


async def test_two_daemons_migrating_one_empty_database_do_not_race(
    postgres: PostgresForTests,
) -> None:
    name = postgres.new_name()
    await recreate_database(postgres.admin_url, name)
    try:
        results: list[list[int]] = []

        async def start_one() -> None:
            async with open_store(postgres.url(name), pool_size=2) as opened:
                results.append(await applied_versions(opened.db))

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(start_one)
        expected = [m.version for m in known_migrations()]
        assert results == [expected] * 4
    finally:
        await drop_database(postgres.admin_url, name)


async def test_migrating_again_applies_nothing(store: Store, database_url: str) -> None:
    from oore.store.migrations import migrate

    assert await migrate(store.db) == []
