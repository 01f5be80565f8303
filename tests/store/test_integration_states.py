"""Sealed states of the integration flows: each nonce used once by any daemon, before it
expires; the oldest dropped past the capacity, expired ones swept."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from oore.domain.tokens import hash_token
from oore.store import Store, open_store
from oore.store.database import Connection

NOW = 1_800_000_000


@pytest.fixture
async def other_store(database_url: str) -> AsyncIterator[Store]:
    """A second daemon's pool on the same database."""
    async with open_store(database_url, pool_size=4) as opened:
        yield opened


async def issue(store: Store, nonce: str, expires_at: int, capacity: int = 1024) -> None:
    await store.integration_states.issue(
        hash_token(nonce), expires_at=expires_at, capacity=capacity, now=NOW
    )


async def test_a_state_is_used_once_whichever_daemon_sees_it(
    store: Store, other_store: Store
) -> None:
    await issue(store, "n1", NOW + 600)
    used: list[bool] = []

    async def consume(on: Store) -> None:
        used.append(await on.integration_states.consume(hash_token("n1"), NOW))

    async with trio.open_nursery() as nursery:
        for on in (store, other_store) * 4:
            nursery.start_soon(consume, on)
    assert sorted(used) == [False] * 7 + [True]


async def test_expired_and_unknown_states_are_refused(store: Store) -> None:
    await issue(store, "n1", NOW + 600)
    assert await store.integration_states.consume(hash_token("n1"), NOW + 600)  # last second
    await issue(store, "n2", NOW + 600)
    assert not await store.integration_states.consume(hash_token("n2"), NOW + 601)
    assert not await store.integration_states.consume(hash_token("never"), NOW)


async def test_only_hashes_are_kept_the_oldest_dropped_and_expired_swept(store: Store) -> None:
    for n in range(4):
        await issue(store, f"n{n}", NOW + 600, capacity=3)
    assert not await store.integration_states.consume(hash_token("n0"), NOW)
    await issue(store, "short", NOW - 1, capacity=3)

    async def kept(conn: Connection) -> list[str]:
        rows = await conn.fetch("SELECT nonce_hash FROM integration_states ORDER BY id")
        return [row["nonce_hash"] for row in rows]

    assert await store.db.run(kept) == [hash_token(n) for n in ("n2", "n3", "short")]
    # Issuing sweeps the expired state; the capacity counts issues (n2 is 3 issues back).
    await issue(store, "n9", NOW + 600, capacity=3)
    assert await store.db.run(kept) == [hash_token(n) for n in ("n3", "n9")]
