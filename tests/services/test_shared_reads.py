"""One read per key at a time, shared while nothing changed since it began."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from oore.services.shared_reads import SharedReads


class Version:
    def __init__(self) -> None:
        self.value = 0


async def test_callers_of_one_key_share_a_read_until_a_change() -> None:
    version = Version()
    reads: SharedReads[str] = SharedReads(lambda: version.value)
    began: list[int] = []
    release = trio.Event()
    results: list[str] = []

    async def read(since: int) -> str:
        began.append(since)
        await release.wait()
        return f"read at {since}"

    async def caller(key: str) -> None:
        results.append(await reads.read(key, read))

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(caller, "a")
        nursery.start_soon(caller, "b")  # another key reads for itself
        await trio.testing.wait_all_tasks_blocked()
        assert began == [0, 0] and reads.joined == 2
        version.value += 1  # a change: whoever comes now reads again
        nursery.start_soon(caller, "a")
        await trio.testing.wait_all_tasks_blocked()
        assert began == [0, 0, 1]
        release.set()
    assert sorted(results) == ["read at 0"] * 4 + ["read at 1"]


async def test_a_failed_or_unusable_read_leaves_the_others_to_read() -> None:
    reads: SharedReads[str] = SharedReads(lambda: 0)
    release = trio.Event()
    outcome: list[str] = []

    async def failing(since: int) -> str:
        await release.wait()
        raise RuntimeError("gone")

    async def partial(since: int) -> str:
        await release.wait()
        return "partial"

    async def fine(since: int) -> str:
        return "mine"

    async def leader() -> None:
        with pytest.raises(RuntimeError):
            await reads.read("failing", failing)

    async def follower(key: str) -> None:
        outcome.append(await reads.read(key, fine, lambda found: found == "whole"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(leader)
        nursery.start_soon(reads.read, "partial", partial)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(follower, "failing")
        nursery.start_soon(follower, "partial")
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert outcome == ["mine", "mine"] and reads.joined == 2
