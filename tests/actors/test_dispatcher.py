"""The dispatcher: oldest eligible build first, labels, capacity, parked long-poll claims."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from oore.actors.dispatcher import Dispatcher, Offer, RunnerSlot
from oore.domain.builds import QueuedBuild


def queued(build_id: str, at: int, *labels: str) -> QueuedBuild:
    return QueuedBuild(build_id, frozenset(labels), at)


def runner(runner_id: str, *labels: str, slots: int = 1) -> RunnerSlot:
    return RunnerSlot(runner_id, frozenset(labels), slots)


class Start:
    """What the dispatcher finds in the store when it starts."""

    def __init__(self) -> None:
        self.queue: list[QueuedBuild] = []
        self.held: dict[str, int] = {}
        self.loads = 0

    async def load(self) -> tuple[list[QueuedBuild], dict[str, int]]:
        self.loads += 1
        return list(self.queue), dict(self.held)


@pytest.fixture
def start() -> Start:
    return Start()


@pytest.fixture
async def dispatcher(start: Start) -> AsyncIterator[Dispatcher]:
    handle = Dispatcher(start.load, capacity=64)
    async with trio.open_nursery() as nursery:
        await nursery.start(handle.run)
        yield handle
        handle.stop()


async def claim_now(dispatcher: Dispatcher, slot: RunnerSlot) -> str | None:
    offer = await dispatcher.claim(slot, wait=0)
    return None if offer is None else offer.build_id


async def test_the_oldest_queued_build_goes_first(start: Start) -> None:
    start.queue = [queued("b1", 10), queued("b2", 20)]
    handle = Dispatcher(start.load)
    async with trio.open_nursery() as nursery:
        await nursery.start(handle.run)
        await handle.enqueue([queued("b0", 5)])
        assert await claim_now(handle, runner("r1", slots=5)) == "b1"
        assert await claim_now(handle, runner("r1", slots=5)) == "b2"
        assert await claim_now(handle, runner("r1", slots=5)) == "b0"
        assert await claim_now(handle, runner("r1", slots=5)) is None
        handle.stop()


async def test_a_runner_only_gets_builds_whose_labels_it_has(dispatcher: Dispatcher) -> None:
    await dispatcher.enqueue([queued("mac", 1, "macos", "xcode"), queued("any", 2)])
    assert await claim_now(dispatcher, runner("linux", "linux")) == "any"
    assert await claim_now(dispatcher, runner("linux2", "linux")) is None
    assert await claim_now(dispatcher, runner("mac-small", "macos")) is None
    assert await claim_now(dispatcher, runner("mac", "macos", "xcode", "arm64")) == "mac"


async def test_max_concurrent_is_enforced_until_a_release(dispatcher: Dispatcher) -> None:
    await dispatcher.enqueue([queued("b1", 1), queued("b2", 2), queued("b3", 3)])
    slot = runner("r1", slots=2)
    assert await claim_now(dispatcher, slot) == "b1"
    assert await claim_now(dispatcher, slot) == "b2"
    assert await claim_now(dispatcher, slot) is None
    await dispatcher.release("r1", "b1")
    assert await claim_now(dispatcher, slot) == "b3"


async def test_held_counts_survive_a_restart(start: Start) -> None:
    start.queue = [queued("b1", 1)]
    start.held = {"r1": 1}
    handle = Dispatcher(start.load)
    async with trio.open_nursery() as nursery:
        await nursery.start(handle.run)
        assert await claim_now(handle, runner("r1")) is None
        assert await claim_now(handle, runner("r2")) == "b1"
        handle.stop()


async def test_a_parked_claim_gets_a_build_queued_later(
    dispatcher: Dispatcher, autojump_clock: trio.testing.MockClock
) -> None:
    got: list[Offer | None] = []

    async def wait_for_work() -> None:
        got.append(await dispatcher.claim(runner("r1"), wait=30))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_for_work)
        await trio.sleep(5)
        assert got == []
        before = trio.current_time()
        await dispatcher.enqueue([queued("b1", 1)])
    assert [offer.build_id for offer in got if offer] == ["b1"]
    assert trio.current_time() == before
    assert await dispatcher.depth() == (0, 0)


async def test_the_longest_waiting_eligible_claim_is_served_first(
    dispatcher: Dispatcher, autojump_clock: trio.testing.MockClock
) -> None:
    got: dict[str, str | None] = {}

    async def wait(slot: RunnerSlot) -> None:
        offer = await dispatcher.claim(slot, wait=10)
        got[slot.id] = None if offer is None else offer.build_id

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait, runner("first", "gpu"))
        await trio.sleep(1)
        nursery.start_soon(wait, runner("second"))
        await trio.sleep(1)
        nursery.start_soon(wait, runner("third", "gpu"))
        await trio.sleep(1)
        await dispatcher.enqueue([queued("needs-gpu", 1, "gpu"), queued("plain", 2)])
    assert got == {"first": "needs-gpu", "second": "plain", "third": None}


async def test_a_parked_claim_times_out_empty(
    dispatcher: Dispatcher, autojump_clock: trio.testing.MockClock
) -> None:
    began = trio.current_time()
    assert await dispatcher.claim(runner("r1"), wait=7) is None
    assert trio.current_time() - began == pytest.approx(7)
    assert await dispatcher.depth() == (0, 0)


async def test_an_abandoned_claim_never_swallows_a_build(
    dispatcher: Dispatcher, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.move_on_after(2):
        await dispatcher.claim(runner("gone"), wait=30)
    await dispatcher.enqueue([queued("b1", 1)])
    assert await claim_now(dispatcher, runner("r2")) == "b1"


async def test_a_given_back_offer_is_offered_again_in_its_place(dispatcher: Dispatcher) -> None:
    await dispatcher.enqueue([queued("b1", 1), queued("b2", 2)])
    offer = await dispatcher.claim(runner("r1"), wait=0)
    assert offer is not None and offer.build_id == "b1"
    await dispatcher.give_back(offer)
    assert await claim_now(dispatcher, runner("r1")) == "b1"


async def test_removed_builds_are_not_offered(dispatcher: Dispatcher) -> None:
    await dispatcher.enqueue([queued("b1", 1), queued("b2", 2)])
    await dispatcher.remove("b1")
    assert await claim_now(dispatcher, runner("r1", slots=3)) == "b2"
    assert await claim_now(dispatcher, runner("r1", slots=3)) is None


async def test_a_queued_build_is_offered_once(
    dispatcher: Dispatcher, autojump_clock: trio.testing.MockClock
) -> None:
    offers: list[str] = []

    async def wait(name: str) -> None:
        offer = await dispatcher.claim(runner(name), wait=5)
        if offer is not None:
            offers.append(offer.build_id)

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(wait, f"r{i}")
        await trio.sleep(1)
        await dispatcher.enqueue([queued(f"b{i}", i) for i in range(5)])
    assert sorted(offers) == [f"b{i}" for i in range(5)]
