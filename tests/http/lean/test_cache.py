"""The kept answers: found until a mark they depend on comes, not kept when one came
while they were read, bounded in size, and short-lived when asked."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from oore.domain.changes import ANY_BUILD, BUILDS, RUNNERS, WORLD, build_mark
from oore.http.lean.cache import RECENT_CHANGES, AnswerCache


class Clock:
    def __init__(self) -> None:
        self.at = 100.0

    def __call__(self) -> float:
        return self.at


def _cache(max_bytes: int = 1 << 20) -> tuple[AnswerCache, Clock]:
    clock = Clock()
    return AnswerCache(max_bytes=max_bytes, now=clock), clock


def test_an_answer_is_kept_until_a_mark_it_depends_on_comes() -> None:
    cache, _ = _cache()
    one, other = build_mark("a"), build_mark("b")
    assert cache.put("list", b"L", {BUILDS}, since=cache.version, size=10)
    assert cache.put("one", b"A", {one}, since=cache.version, size=10)
    assert cache.put("runners", b"R", {RUNNERS, BUILDS}, since=cache.version, size=10)
    assert cache.put("projects", b"P", (), since=cache.version, size=10)
    cache.forget({other})
    assert (cache.get("list"), cache.get("one"), cache.get("runners")) == (b"L", b"A", b"R")
    cache.forget({BUILDS, one})
    assert (cache.get("list"), cache.get("one"), cache.get("runners")) == (None, None, None)
    assert cache.get("projects") == b"P"
    cache.forget({WORLD})
    assert cache.get("projects") is None and len(cache) == 0 and cache.size == 0
    assert cache.hits == 4 and cache.misses == 4


def test_any_build_drops_every_answer_about_one_build_only() -> None:
    cache, _ = _cache()
    cache.put("one", b"A", {build_mark("a")}, since=cache.version, size=1)
    cache.put("list", b"L", {BUILDS}, since=cache.version, size=1)
    cache.forget({ANY_BUILD})
    assert cache.get("one") is None and cache.get("list") == b"L"


def test_a_read_under_way_when_its_mark_came_is_not_kept() -> None:
    cache, _ = _cache()
    since = cache.version
    cache.forget({build_mark("a")})
    assert not cache.put("one", b"stale", {build_mark("a")}, since=since, size=1)
    since = cache.version
    cache.forget({ANY_BUILD})
    assert not cache.put("other", b"stale", {build_mark("b")}, since=since, size=1)
    since = cache.version
    cache.forget({RUNNERS})  # not what it shows
    assert cache.put("one", b"fresh", {build_mark("a")}, since=since, size=1)
    since = cache.version
    cache.forget({WORLD})
    assert not cache.put("projects", b"stale", (), since=since, size=1)
    assert cache.get("one") is None


def test_a_read_older_than_the_changes_remembered_is_not_kept() -> None:
    cache, _ = _cache()
    since = cache.version
    for _ in range(RECENT_CHANGES + 1):
        cache.forget({RUNNERS})
    assert not cache.put("one", b"A", {build_mark("a")}, since=since, size=1)
    assert cache.put("one", b"A", {build_mark("a")}, since=cache.version, size=1)


def test_an_answer_asked_to_be_short_lived_goes_in_time() -> None:
    cache, clock = _cache()
    cache.put("queued", b"Q", {BUILDS, RUNNERS}, since=cache.version, size=1, seconds=1.0)
    clock.at += 0.9
    assert cache.get("queued") == b"Q"
    clock.at += 0.2
    assert cache.get("queued") is None and len(cache) == 0


def test_the_least_recently_used_go_first_past_the_bound() -> None:
    cache, _ = _cache(max_bytes=800)
    for key in ("a", "b", "c", "d"):
        assert cache.put(key, key.encode(), (), since=cache.version, size=100)
    assert cache.get("a") == b"a"  # used: now the most recent
    for key in ("e", "f", "g", "h", "i"):
        cache.put(key, key.encode(), (), since=cache.version, size=100)
    assert cache.size <= 800
    assert cache.get("b") is None and cache.get("a") == b"a" and cache.get("i") == b"i"
    assert not cache.put("huge", b"x", (), since=cache.version, size=200)  # over an eighth
    cache.forget({WORLD})
    assert cache.size == 0


def test_a_key_kept_again_replaces_the_old_answer() -> None:
    cache, _ = _cache()
    cache.put("one", b"old", {build_mark("a")}, since=cache.version, size=10)
    cache.put("one", b"new", {build_mark("b")}, since=cache.version, size=20)
    assert cache.size == 20
    cache.forget({build_mark("a")})
    assert cache.get("one") == b"new"
    cache.forget({build_mark("b")})
    assert cache.get("one") is None and cache.size == 0


async def test_readers_of_one_answer_share_the_read_under_way() -> None:
    """Three readers at once: one reads, two wait for its result; a reader arriving after
    a change reads for itself, and so does one whose leader failed or whose result it
    cannot use."""
    cache = AnswerCache()
    reads: list[int] = []
    release = trio.Event()

    async def read(since: int) -> str:
        reads.append(since)
        await release.wait()
        return f"read at {since}"

    results: list[str] = []

    async def reader() -> None:
        results.append(await cache.read_once("key", read))

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert reads == [0] and cache.joined == 2
        cache.forget({RUNNERS})  # a change: whoever comes now reads again
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert reads == [0, 1]
        release.set()
    assert sorted(results) == ["read at 0"] * 3 + ["read at 1"]

    async def failing(since: int) -> str:
        await trio.sleep(0.01)
        raise RuntimeError("gone")

    async def fine(since: int) -> str:
        return "mine"

    outcome: list[str] = []

    async def leader() -> None:
        with pytest.raises(RuntimeError):
            await cache.read_once("other", failing)

    async def follower() -> None:
        outcome.append(await cache.read_once("other", fine))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(leader)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(follower)
    assert outcome == ["mine"]

    async def partial(since: int) -> str:
        await trio.sleep(0.01)
        return "a window of its own"

    async def unusable() -> None:
        outcome.append(await cache.read_once("third", fine, lambda found: found == "whole"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(cache.read_once, "third", partial)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(unusable)
    assert outcome == ["mine", "mine"]
