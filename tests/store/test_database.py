"""The pool's error translation and how it rides out an outage of the server."""

from __future__ import annotations

import json
import logging
import os
import subprocess

import pytest
import trio

from oore.errors import StoreError, StoreUnavailable
from oore.store import Store, open_store
from oore.store.database import Connection, local_server
from oore.store.embedded import POSTGRES_BIN_PATH, EmbeddedPostgres
from oore.timeslice import SHORT_SLICE_NS, slice_of
from tests.conftest import kernel_takes_short_slices

WAIT = 60.0


async def _nonsense(conn: Connection) -> object:
    return await conn.fetchval("SELECT no_such_column FROM no_such_table")


async def _one(conn: Connection) -> object:
    return await conn.fetchval("SELECT 1")


async def test_a_failing_query_is_still_a_store_error(store: Store) -> None:
    with pytest.raises(StoreError):
        await store.db.run(_nonsense)
    assert store.db.available
    assert await store.db.run(_one) == 1


async def _as_jsonb(conn: Connection, text: str) -> object:
    return await conn.fetchval("SELECT $1::text::jsonb", text)


async def test_jsonb_reads_back_exactly_even_integers_beyond_64_bits(store: Store) -> None:
    document = {"big": 123456789012345678901234567890, "n": -7, "f": 0.1, "s": "é ✓", "l": [1]}
    assert await store.db.run(_as_jsonb, json.dumps(document)) == document
    small = {"id": "0193a7f0-1111-2222-3333-444455556666", "steps": [{"run": "make"}]}
    assert await store.db.run(_as_jsonb, json.dumps(small)) == small


def _stop_immediately(server: EmbeddedPostgres) -> None:
    subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(server.pgdata), "-m", "immediate", "stop"],
        user="pgserver" if os.geteuid() == 0 else None,
        check=True,
        capture_output=True,
        timeout=30,
    )


async def test_an_outage_is_503_fails_fast_is_logged_once_and_ends_on_its_own(
    own_postgres: EmbeddedPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="oore.store.database")
    async with open_store(own_postgres.uri, pool_size=4) as store:
        assert await store.db.run(_one) == 1
        await trio.to_thread.run_sync(_stop_immediately, own_postgres)
        with trio.fail_after(WAIT):
            while store.db.available:  # the first failures wake the watcher
                with pytest.raises(StoreUnavailable):
                    await store.db.run(_one)
        for _ in range(50):
            with pytest.raises(StoreUnavailable):
                await store.db.transaction(_one)
        readiness = await store.readiness()
        assert (readiness.database, readiness.migrations) == (False, False)

        assert await trio.to_thread.run_sync(own_postgres.revive)  # its owner starts it again
        with trio.fail_after(WAIT):
            await store.db.wait_recovered(0)
        assert await store.db.run(_one) == 1
        assert await store.db.transaction(_one) == 1
        assert (await store.readiness()).database
    messages = [r.getMessage() for r in caplog.records if r.name == "oore.store.database"]
    assert sum("database unavailable" in m for m in messages) == 1, messages
    assert sum("database available again" in m for m in messages) == 1, messages
    assert not [m for m in messages if "database failure" in m], messages


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("postgresql://postgres:@/postgres?host=/tmp/pg", True),
        ("postgresql:///oore", True),
        ("postgresql://oore:secret@localhost:5432/oore", True),
        ("postgresql://oore@127.0.0.1/oore", True),
        ("postgresql://oore@[::1]:5432/oore", True),
        ("postgresql://oore@localhost,127.0.0.2:5433/oore", True),
        ("postgresql://oore@db.example.com/oore", False),
        ("postgresql://oore@10.0.0.5:5432/oore", False),
        ("postgresql://oore@localhost,db.example.com/oore", False),
        ("postgresql://oore@/oore?host=db.example.com", False),
        ("postgresql://oore@[2001:db8::1]:5432/oore", False),
    ],
)
def test_a_server_is_local_when_every_host_it_names_is(url: str, local: bool) -> None:
    assert local_server(url) is local


async def _server_pid_a_while(conn: Connection) -> object:
    """The session's server process id, holding the session a moment (so that queries at
    once take different sessions)."""
    return await conn.fetchval("SELECT pg_backend_pid() FROM pg_sleep(0.2)")


async def _sessions(store: Store, count: int) -> set[object]:
    pids: set[object] = set()

    async def one() -> None:
        pids.add(await store.db.run(_server_pid_a_while))

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
    return pids


@pytest.mark.skipif(
    not kernel_takes_short_slices(), reason="the kernel has no slices per task (Linux < 6.12)"
)
async def test_the_sessions_of_a_pool_asked_to_run_in_short_slices_do(database_url: str) -> None:
    async with open_store(database_url, pool_size=3, short_slices=True) as store:
        pids = await _sessions(store, 3)
        assert len(pids) == 3
        assert {slice_of(pid) for pid in pids if isinstance(pid, int)} == {SHORT_SLICE_NS}
    async with open_store(database_url, pool_size=3) as store:
        pids = await _sessions(store, 3)
        assert len(pids) == 3
        assert SHORT_SLICE_NS not in {slice_of(pid) for pid in pids if isinstance(pid, int)}
