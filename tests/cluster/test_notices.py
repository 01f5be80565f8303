"""Notices between daemons on one database: sent after the fact, coalesced, never heard
by their sender, and caught up on after the listening connection comes back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from oore.cluster import Notices, Subscription
from oore.cluster.notices import MAX_PAYLOAD, decode, encode
from oore.store import Store, open_store
from oore.store.cluster import LISTENER_NAME
from tests.scheduling.kit import BOUND, until


def test_items_are_packed_into_payloads_postgresql_accepts() -> None:
    items = [f"{i:036d}:queued" for i in range(1000)]
    payloads = encode("me", "build", items)
    assert len(payloads) > 1
    assert all(len(p.encode()) < MAX_PAYLOAD + 100 < 8000 for p in payloads)
    got = []
    for payload in payloads:
        decoded = decode(payload)
        assert decoded is not None
        sender, topic, part = decoded
        assert (sender, topic) == ("me", "build")
        got += part
    assert got == items


def test_an_item_holding_the_separator_is_refused() -> None:
    with pytest.raises(ValueError):
        encode("me", "build", ["a\x1fb"])


def test_a_payload_of_someone_else_is_ignored() -> None:
    assert decode("hello") is None


class Heard:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.calls = 0
        self.resyncs = 0
        self.polls = 0

    async def noticed(self, items: list[str]) -> None:
        self.calls += 1
        self.items += items

    async def resync(self) -> None:
        self.resyncs += 1

    async def poll(self) -> None:
        self.polls += 1


@asynccontextmanager
async def daemon(url: str, heard: Heard | None = None) -> AsyncIterator[Notices]:
    async with open_store(url, pool_size=2) as store, trio.open_nursery() as nursery:
        notices = Notices(store)
        if heard is not None:
            notices.subscribe(
                "build",
                Subscription(heard.noticed, resync=heard.resync, poll=heard.poll, poll_every=0.05),
            )
        await nursery.start(notices.run)
        await until(lambda: notices.listening)
        yield notices
        nursery.cancel_scope.cancel()


async def test_a_notice_reaches_the_other_daemon_and_not_its_sender(database_url: str) -> None:
    mine, theirs = Heard(), Heard()
    with trio.fail_after(BOUND):
        async with daemon(database_url, mine) as a, daemon(database_url, theirs):
            a.publish("build", ["b1:queued", "b2:canceled"])
            a.publish("other", ["x"])  # a topic nobody here subscribed to
            await until(lambda: len(theirs.items) == 2)
            assert theirs.items == ["b1:queued", "b2:canceled"]
            await trio.sleep(0.2)
            assert mine.items == []  # a daemon does not hear itself
            assert mine.resyncs >= 1 and theirs.resyncs >= 1  # caught up once listening
            assert theirs.polls >= 1


async def test_changes_published_together_are_sent_as_few_notices(database_url: str) -> None:
    theirs = Heard()
    with trio.fail_after(BOUND):
        async with daemon(database_url) as a, daemon(database_url, theirs):
            for i in range(2000):
                a.publish("build", [f"{i}:queued"])
            a.publish("build", ["0:queued"])  # published again before it was sent: once
            await until(lambda: len(theirs.items) >= 2000)
            assert theirs.items == [f"{i}:queued" for i in range(2000)]
            assert a.sent <= 5  # one statement of a few payloads, not 2,000
            assert theirs.calls <= 5


async def test_a_lost_listening_connection_comes_back_and_catches_up(
    database_url: str, store: Store
) -> None:
    theirs = Heard()
    with trio.fail_after(BOUND):
        async with daemon(database_url) as a, daemon(database_url, theirs) as b:
            await until(lambda: theirs.resyncs == 1)
            killed = await store.db.run(_terminate_listeners)
            assert killed >= 1
            await until(lambda: theirs.resyncs >= 2 and b.listening)
            a.publish("build", ["after:queued"])
            await until(lambda: theirs.items == ["after:queued"])


async def _terminate_listeners(conn: object) -> int:
    rows = await conn.fetch(  # type: ignore[attr-defined]
        """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
           WHERE datname = current_database() AND application_name = $1""",
        LISTENER_NAME,
    )
    return len(rows)


async def test_a_failing_subscriber_does_not_stop_the_others(database_url: str) -> None:
    theirs = Heard()

    async def broken(items: list[str]) -> None:
        raise RuntimeError("a defect in one subscriber")

    with trio.fail_after(BOUND):
        async with open_store(database_url, pool_size=2) as store, trio.open_nursery() as nursery:
            b = Notices(store)
            b.subscribe("build", Subscription(broken))
            b.subscribe("build", Subscription(theirs.noticed, resync=theirs.resync))
            await nursery.start(b.run)
            await until(lambda: b.listening and theirs.resyncs == 1)
            async with daemon(database_url) as a:
                a.publish("build", ["one:queued"])
                await until(lambda: theirs.items == ["one:queued"])
                await until(lambda: theirs.resyncs == 2)  # and everyone caught up
                a.publish("build", ["two:queued"])
                await until(lambda: theirs.items == ["one:queued", "two:queued"])
            nursery.cancel_scope.cancel()
