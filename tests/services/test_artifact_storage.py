"""Local storage URL tokens in the database (contract §0.2, §7.1): what one daemon issues
any daemon honours, upload tokens once, download tokens until they expire."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from oore.domain.tokens import hash_token
from oore.services.artifact_storage import SharedUrlTokens
from oore.storage import StoredObject
from oore.store import Store, open_store
from oore.store.database import Connection
from oore.store.url_tokens import UrlTokenKind
from tests.http.conftest import FakeClock

UPLOAD, DOWNLOAD = UrlTokenKind.UPLOAD, UrlTokenKind.DOWNLOAD


def obj(n: int = 1) -> StoredObject:
    return StoredObject(f"artifacts/b1/a{n}/app.apk", f"a{n}", "app.apk")


@pytest.fixture
async def other_store(database_url: str) -> AsyncIterator[Store]:
    """A second daemon's pool on the same database."""
    async with open_store(database_url, pool_size=2) as opened:
        yield opened


async def test_tokens_expire_and_take_uses_them_up(store: Store) -> None:
    clock = FakeClock()
    downloads = SharedUrlTokens(store.url_tokens, clock, DOWNLOAD)
    issued = await downloads.issue(obj(), 900)
    assert len(issued.token) == 64 and issued.expires_at == clock.now() + 900
    assert await downloads.peek(issued.token) == obj()
    assert await downloads.peek(issued.token) == obj()  # reusable until it expires
    clock.advance(899)
    assert await downloads.peek(issued.token) == obj()
    clock.advance(1)
    assert await downloads.peek(issued.token) is None
    uploads = SharedUrlTokens(store.url_tokens, clock, UPLOAD)
    single = await uploads.issue(obj(2), 60)
    assert await downloads.peek(single.token) is None  # each kind is its own
    assert await uploads.take(single.token) == obj(2)
    assert await uploads.take(single.token) is None
    assert await downloads.peek("not a token") is None and await uploads.take("f" * 64) is None
    late = await uploads.issue(obj(3), 60)
    clock.advance(60)
    assert await uploads.take(late.token) is None


async def test_what_one_daemon_issues_the_other_honours_uploads_once(
    store: Store, other_store: Store
) -> None:
    clock = FakeClock()
    here = SharedUrlTokens(store.url_tokens, clock, UPLOAD)
    there = SharedUrlTokens(other_store.url_tokens, clock, UPLOAD)
    issued = await here.issue(obj(), 1800)
    taken: list[StoredObject | None] = []

    async def take(tokens: SharedUrlTokens) -> None:
        taken.append(await tokens.take(issued.token))

    async with trio.open_nursery() as nursery:
        for tokens in (here, there) * 4:
            nursery.start_soon(take, tokens)
    assert sorted(found is not None for found in taken) == [False] * 7 + [True]
    download = await SharedUrlTokens(store.url_tokens, clock, DOWNLOAD).issue(obj(), 900)
    there_down = SharedUrlTokens(other_store.url_tokens, clock, DOWNLOAD)
    assert await there_down.peek(download.token) == await there_down.peek(download.token) == obj()


async def test_only_hashes_are_kept_and_the_oldest_are_dropped(store: Store) -> None:
    tokens = SharedUrlTokens(store.url_tokens, FakeClock(), DOWNLOAD, capacity=3)
    issued = [await tokens.issue(obj(n), 60) for n in range(4)]
    assert await store.url_tokens.count(DOWNLOAD) == 3
    assert await tokens.peek(issued[0].token) is None
    assert [await tokens.peek(i.token) for i in issued[1:]] == [obj(1), obj(2), obj(3)]

    async def hashes(conn: Connection) -> list[str]:
        return [r["token_hash"] for r in await conn.fetch("SELECT token_hash FROM url_tokens")]

    kept = await store.db.run(hashes)
    assert sorted(kept) == sorted(hash_token(i.token) for i in issued[1:])


async def test_revoking_an_artifacts_urls_ends_them_on_every_daemon(
    store: Store, other_store: Store
) -> None:
    clock = FakeClock()
    uploads = SharedUrlTokens(store.url_tokens, clock, UPLOAD)
    downloads = SharedUrlTokens(store.url_tokens, clock, DOWNLOAD)
    doomed = [await uploads.issue(obj(1), 900), await downloads.issue(obj(1), 900)]
    kept = await downloads.issue(obj(2), 900)
    assert await other_store.url_tokens.revoke(["a1"]) == 2
    assert await uploads.take(doomed[0].token) is None
    assert await downloads.peek(doomed[1].token) is None
    assert await downloads.peek(kept.token) == obj(2)


async def test_expired_tokens_are_deleted_by_later_issues(store: Store) -> None:
    clock = FakeClock()
    tokens = SharedUrlTokens(store.url_tokens, clock, UPLOAD)
    for n in range(5):
        await tokens.issue(obj(n), 60)
    clock.advance(60)
    fresh = await tokens.issue(obj(9), 60)
    assert await store.url_tokens.count(UPLOAD) == 1
    assert await tokens.take(fresh.token) == obj(9)
