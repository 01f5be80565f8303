"""In-memory URL tokens: expiry, single use, the capacity bound."""

from __future__ import annotations

from oore.domain.tokens import hash_token
from oore.storage.tokens import TokenTable
from tests.http.conftest import FakeClock


def test_tokens_expire_and_take_uses_them_up() -> None:
    clock = FakeClock()
    table: TokenTable[str] = TokenTable(clock.now)
    issued = table.issue("object", 900)
    assert len(issued.token) == 64 and issued.expires_at == clock.now() + 900
    assert table.peek(issued.token) == "object"
    assert table.peek(issued.token) == "object"  # reusable until it expires
    clock.advance(899)
    assert table.peek(issued.token) == "object"
    clock.advance(1)
    assert table.peek(issued.token) is None
    single = table.issue("upload", 60)
    assert table.take(single.token) == "upload"
    assert table.take(single.token) is None
    assert table.peek("not a token") is None and table.take("f" * 64) is None


def test_only_hashes_are_kept_and_the_oldest_is_evicted() -> None:
    clock = FakeClock()
    table: TokenTable[int] = TokenTable(clock.now, capacity=3)
    issued = [table.issue(n, 60) for n in range(4)]
    assert len(table) == 3
    assert table.peek(issued[0].token) is None
    assert [table.peek(i.token) for i in issued[1:]] == [1, 2, 3]
    assert all(
        i.token not in table._entries and hash_token(i.token) in table._entries for i in issued[1:]
    )


def test_revoke_where_drops_the_picked_tokens_at_once() -> None:
    table: TokenTable[str] = TokenTable(FakeClock().now)
    doomed = [table.issue("gone", 900), table.issue("gone", 900)]
    kept = table.issue("kept", 900)
    assert table.revoke_where(lambda value: value == "gone") == 2
    assert [table.peek(i.token) for i in doomed] == [None, None]
    assert table.peek(kept.token) == "kept" and len(table) == 1
