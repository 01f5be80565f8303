"""Pending OIDC sign-ins in the database (contract §7.4): used once by any daemon, the
capacity counted over every daemon, expired requests recognised then swept."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from oore.domain.crypto import SecretBox
from oore.domain.oidc import (
    PENDING_CAPACITY,
    PENDING_KEEP,
    PENDING_TTL,
    PendingRequest,
    SetupBinding,
)
from oore.errors import ApiError
from oore.services.pending_signins import PendingSignIns
from oore.store import Store, open_store
from oore.store.database import Connection

BOX = SecretBox(bytes(range(32)))


def _request(state: str, created_at: int, setup: SetupBinding | None = None) -> PendingRequest:
    uri = "http://127.0.0.1/auth/callback"
    return PendingRequest(
        state, f"verifier-of-{state}", f"nonce-of-{state}", uri, created_at, setup
    )


def table(store: Store, capacity: int = PENDING_CAPACITY) -> PendingSignIns:
    return PendingSignIns(store.pending_signins, lambda: BOX, capacity)


@pytest.fixture
async def other_store(database_url: str) -> AsyncIterator[Store]:
    """A second daemon's pool on the same database."""
    async with open_store(database_url, pool_size=2) as opened:
        yield opened


async def test_pending_requests_are_used_once(store: Store, other_store: Store) -> None:
    pending = table(store)
    await pending.add(_request("s1", 100), 100)
    taken = await table(other_store).take("s1")
    assert taken == _request("s1", 100)
    assert await pending.take("s1") is None
    assert await table(other_store).take("s1") is None


async def test_one_request_is_taken_once_when_daemons_race(
    store: Store, other_store: Store
) -> None:
    await table(store).add(_request("raced", 100), 100)
    taken: list[PendingRequest | None] = []

    async def take(on: Store) -> None:
        taken.append(await table(on).take("raced"))

    async with trio.open_nursery() as nursery:
        for on in (store, other_store) * 4:
            nursery.start_soon(take, on)
    assert sorted(found is not None for found in taken) == [False] * 7 + [True]


async def test_expired_requests_stay_recognisable(store: Store) -> None:
    pending = table(store)
    await pending.add(_request("s1", 100), 100)
    taken = await pending.take("s1")
    assert taken is not None
    assert not taken.expired(100 + PENDING_TTL - 1)
    assert taken.expired(100 + PENDING_TTL)


async def test_capacity_counts_requests_and_reservations_of_every_daemon(
    store: Store, other_store: Store
) -> None:
    here, there = table(store, capacity=3), table(other_store, capacity=3)
    await here.add(_request("a", 0), 0)
    await there.reserve(0)
    await here.add(_request("b", 0), 0)
    with pytest.raises(ApiError) as full:
        await there.reserve(1)
    assert (full.value.status, full.value.code) == (429, "too_many_pending")
    with pytest.raises(ApiError):
        await here.add(_request("c", 1), 1)
    await there.take("a")
    await here.add(_request("c", 1), 1)
    assert await here.count() == 3


async def test_the_capacity_holds_when_daemons_add_at_once(
    store: Store, other_store: Store
) -> None:
    outcomes: list[str] = []

    async def add(on: Store, n: int) -> None:
        try:
            await table(on, capacity=5).add(_request(f"s{n}", 0), 0)
            outcomes.append("added")
        except ApiError as exc:
            outcomes.append(exc.code)

    async with trio.open_nursery() as nursery:
        for n in range(12):
            nursery.start_soon(add, (store, other_store)[n % 2], n)
    assert sorted(outcomes) == ["added"] * 5 + ["too_many_pending"] * 7
    assert await table(store).count() == 5


async def test_the_default_capacity_is_1000(store: Store) -> None:
    pending = table(store)
    for n in range(PENDING_CAPACITY):
        await pending.add(_request(f"s{n}", 0), 0)
    with pytest.raises(ApiError) as full:
        await pending.reserve(10)
    assert full.value.code == "too_many_pending"


async def test_expired_entries_make_room_when_the_table_is_full(store: Store) -> None:
    pending = table(store, capacity=2)
    await pending.add(_request("old", 0), 0)
    await pending.reserve(0)
    await pending.add(_request("new", PENDING_TTL), PENDING_TTL)
    assert await pending.take("old") is None
    assert await pending.take("new") is not None


async def test_requests_long_expired_are_swept_by_later_ones(store: Store) -> None:
    pending = table(store)
    await pending.add(_request("late", 0), 0)
    await pending.reserve(0)
    await pending.add(_request("recent", 1), 1)
    await pending.add(_request("next", PENDING_KEEP), PENDING_KEEP)
    assert await pending.count() == 2  # "recent" is expired but still recognisable
    assert await pending.take("late") is None
    assert await pending.take("recent") is not None


async def test_a_reservation_becomes_a_pending_request_on_any_daemon(
    store: Store, other_store: Store
) -> None:
    held = await table(store).reserve(5)
    await table(other_store).fulfil(held, _request("s", 6), 6)
    assert await table(store).count() == 1
    assert await table(store).take("s") is not None


async def test_a_dropped_reservation_answers_oidc_start_expired(
    store: Store, other_store: Store
) -> None:
    pending = table(store)
    held = await pending.reserve(5)
    await table(other_store).drop_all()
    with pytest.raises(ApiError) as lapsed:
        await pending.fulfil(held, _request("s", 6), 6)
    assert (lapsed.value.status, lapsed.value.code) == (503, "oidc_start_expired")
    assert await pending.take("s") is None


async def test_a_lapsed_reservation_answers_oidc_start_expired(store: Store) -> None:
    pending = table(store)
    held = await pending.reserve(0)
    with pytest.raises(ApiError) as lapsed:
        await pending.fulfil(held, _request("s", PENDING_TTL), PENDING_TTL)
    assert lapsed.value.code == "oidc_start_expired"
    assert await pending.count() == 0


async def test_a_released_reservation_frees_its_slot(store: Store) -> None:
    pending = table(store, capacity=1)
    await pending.release(await pending.reserve(0))
    await pending.reserve(0)


async def test_setup_reconfiguration_drops_only_setup_requests(
    store: Store, other_store: Store
) -> None:
    pending = table(store)
    binding = SetupBinding("hash", 1, "fingerprint")
    await pending.add(_request("setup", 0, binding), 0)
    await pending.add(_request("public", 0), 0)
    await table(other_store).drop_setup()
    assert await pending.take("setup") is None
    assert await pending.take("public") is not None


async def test_only_the_states_hash_and_the_sealed_request_are_stored(store: Store) -> None:
    request = _request("state-" + "s" * 40, 0, SetupBinding("ab" * 32, 2, "fp"))
    await table(store).add(request, 0)

    async def rows(conn: Connection) -> list[str]:
        return [r["row"] for r in await conn.fetch("SELECT t::text AS row FROM pending_signins t")]

    [row] = await store.db.run(rows)
    assert all(secret not in row for secret in (request.state, request.verifier, request.nonce))


async def test_a_request_sealed_with_another_key_is_decryption_error(store: Store) -> None:
    await table(store).add(_request("s", 0), 0)
    other_key = PendingSignIns(store.pending_signins, lambda: SecretBox(bytes(32)))
    with pytest.raises(ApiError) as refused:
        await other_key.take("s")
    assert (refused.value.status, refused.value.code) == (500, "decryption_error")
