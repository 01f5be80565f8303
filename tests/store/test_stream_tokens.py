"""Log stream tokens in the database: redeemed once by any daemon, the caps exact even when
daemons mint at once, expired tokens not counted and swept."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from oore.domain.tokens import hash_token, new_token
from oore.domain.users import Role, UserStatus
from oore.store import Store, open_store
from oore.store.database import Connection
from oore.store.stream_tokens import StreamToken, TokenLimits
from tests.store.test_artifacts import NOW, world

LIMITS = TokenLimits(total=256, per_user=16, per_build=32)


@pytest.fixture
async def other_store(database_url: str) -> AsyncIterator[Store]:
    """A second daemon's pool on the same database."""
    async with open_store(database_url, pool_size=4) as opened:
        yield opened


def token_for(build_id: str, user_id: str, expires_at: int = NOW + 300) -> StreamToken:
    return StreamToken(build_id, user_id, "c" * 64, False, expires_at)


async def users(store: Store, count: int) -> list[str]:
    made = []
    for n in range(count):
        user = await store.users.create(
            email=f"u{n}@example.com",
            role=Role.DEVELOPER,
            status=UserStatus.ACTIVE,
            subject=None,
            now=NOW,
        )
        made.append(user.id)
    return made


async def test_a_token_is_redeemed_once_whichever_daemon_asks(
    store: Store, other_store: Store
) -> None:
    found = await world(store)
    secret = new_token()
    minted = token_for(found.build_id, found.owner_id)
    assert await store.stream_tokens.mint(hash_token(secret), minted, LIMITS, NOW)
    redeemed: list[StreamToken | None] = []

    async def redeem(on: Store) -> None:
        redeemed.append(await on.stream_tokens.redeem(hash_token(secret)))

    async with trio.open_nursery() as nursery:
        for on in (store, other_store) * 4:
            nursery.start_soon(redeem, on)
    assert [r for r in redeemed if r is not None] == [minted]


async def test_the_caps_hold_when_daemons_mint_at_once(store: Store, other_store: Store) -> None:
    found = await world(store)
    minters = await users(store, 12)
    limits = TokenLimits(total=256, per_user=16, per_build=5)
    minted: list[bool] = []

    async def mint(on: Store, user_id: str) -> None:
        token = token_for(found.build_id, user_id)
        minted.append(await on.stream_tokens.mint(hash_token(new_token()), token, limits, NOW))

    async with trio.open_nursery() as nursery:
        for n, user_id in enumerate(minters):
            nursery.start_soon(mint, (store, other_store)[n % 2], user_id)
    assert sorted(minted) == [False] * 7 + [True] * 5


async def test_a_new_token_replaces_the_unused_one_and_expired_ones_do_not_count(
    store: Store,
) -> None:
    found = await world(store)
    limits = TokenLimits(total=2, per_user=16, per_build=32)
    first, second = new_token(), new_token()
    token = token_for(found.build_id, found.owner_id)
    assert await store.stream_tokens.mint(hash_token(first), token, limits, NOW)
    assert await store.stream_tokens.mint(hash_token(second), token, limits, NOW)
    assert await store.stream_tokens.redeem(hash_token(first)) is None  # replaced
    brief, refused = await users(store, 2)
    short = token_for(found.build_id, brief, expires_at=NOW + 10)
    assert await store.stream_tokens.mint(hash_token(new_token()), short, limits, NOW)
    assert not await store.stream_tokens.mint(
        hash_token(new_token()), token_for(found.build_id, refused), limits, NOW
    )
    # Once the short one expires it no longer counts, and the next mint deletes it.
    later = token_for(found.build_id, refused, expires_at=NOW + 310)
    assert await store.stream_tokens.mint(hash_token(new_token()), later, limits, NOW + 10)

    async def held(conn: Connection) -> list[str]:
        rows = await conn.fetch("SELECT user_id FROM stream_tokens ORDER BY expires_at")
        return [str(row["user_id"]) for row in rows]

    assert await store.db.run(held) == [found.owner_id, refused]
