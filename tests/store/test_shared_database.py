"""What daemons sharing one database learn from it: the key fingerprint the first recorded,
and how many connections the server takes."""

from __future__ import annotations

from oore.store import Store, open_store


async def test_the_first_fingerprint_recorded_is_the_one_every_daemon_sees(
    store: Store, database_url: str
) -> None:
    await store.instance.ensure(1)
    assert await store.instance.record_key_fingerprint("aa" * 32) == "aa" * 32
    async with open_store(database_url, pool_size=2) as second_daemon:
        await second_daemon.instance.ensure(2)
        assert await second_daemon.instance.record_key_fingerprint("bb" * 32) == "aa" * 32
    assert await store.instance.record_key_fingerprint("aa" * 32) == "aa" * 32


async def test_the_connection_limit_is_what_the_server_takes_from_users(store: Store) -> None:
    limit = await store.connection_limit()
    assert 0 < limit < 10_000
