"""The dispatcher: oldest eligible build first, labels, capacity, parked claims."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from oore.domain.builds import QueuedBuild
from oore.scheduling.dispatcher import Dispatcher, Parked, RunnerSlot


def queued(build_id: str, at: int, *labels: str) -> QueuedBuild:
    return QueuedBuild(build_id, frozenset(labels), at)


def runner(runner_id: str, *labels: str, slots: int = 1) -> RunnerSlot:
    return RunnerSlot(runner_id, frozenset(labels), slots)


def take(dispatcher: Dispatcher, slot: RunnerSlot) -> str | None:
    build = dispatcher.take(slot)
    return None if build is None else build.id


def served(parked: Parked) -> str | None:
    return None if parked.offer is None else parked.offer.id


def test_the_oldest_queued_build_goes_first() -> None:
    dispatcher = Dispatcher()
    dispatcher.load([queued("b1", 10), queued("b2", 20)], {})
    dispatcher.enqueue([queued("b0", 5)])
    slot = runner("r1", slots=5)
    assert [take(dispatcher, slot) for _ in range(4)] == ["b1", "b2", "b0", None]


def test_a_runner_only_gets_builds_whose_labels_it_has() -> None:
    dispatcher = Dispatcher()
    dispatcher.enqueue([queued("mac", 1, "macos", "xcode"), queued("any", 2)])
    assert take(dispatcher, runner("linux", "linux")) == "any"
    assert take(dispatcher, runner("linux2", "linux")) is None
    assert take(dispatcher, runner("mac-small", "macos")) is None
    assert take(dispatcher, runner("mac", "macos", "xcode", "arm64")) == "mac"


def test_max_concurrent_is_enforced_until_a_release() -> None:
    dispatcher = Dispatcher()
    dispatcher.enqueue([queued("b1", 1), queued("b2", 2), queued("b3", 3)])
    slot = runner("r1", slots=2)
    assert take(dispatcher, slot) == "b1"
    assert take(dispatcher, slot) == "b2"
    assert take(dispatcher, slot) is None
    dispatcher.release("r1")
    assert take(dispatcher, slot) == "b3"


def test_held_counts_come_from_the_database_at_start() -> None:
    dispatcher = Dispatcher()
    dispatcher.load([queued("b1", 1)], {"r1": 1})
    assert take(dispatcher, runner("r1")) is None
    assert take(dispatcher, runner("r2")) == "b1"


def test_a_parked_claim_gets_a_build_queued_later() -> None:
    dispatcher = Dispatcher()
    parked = dispatcher.park(runner("r1"))
    assert not parked.event.is_set()
    dispatcher.enqueue([queued("b1", 1)])
    assert parked.event.is_set() and served(parked) == "b1"
    assert dispatcher.depth() == (0, 0)


def test_the_longest_waiting_eligible_claim_is_served_first() -> None:
    dispatcher = Dispatcher()
    first = dispatcher.park(runner("first", "gpu"))
    second = dispatcher.park(runner("second"))
    third = dispatcher.park(runner("third", "gpu"))
    dispatcher.enqueue([queued("needs-gpu", 1, "gpu"), queued("plain", 2)])
    assert [served(p) for p in (first, second, third)] == ["needs-gpu", "plain", None]
    assert dispatcher.depth() == (0, 1)


def test_a_claim_that_left_never_swallows_a_build() -> None:
    dispatcher = Dispatcher()
    gone = dispatcher.park(runner("gone"))
    dispatcher.leave(gone)
    dispatcher.enqueue([queued("b1", 1)])
    assert served(gone) is None
    assert take(dispatcher, runner("r2")) == "b1"


def test_a_given_back_build_is_offered_again_in_its_place() -> None:
    dispatcher = Dispatcher()
    dispatcher.enqueue([queued("b1", 1), queued("b2", 2)])
    build = dispatcher.take(runner("r1"))
    assert build is not None and build.id == "b1"
    dispatcher.give_back("r1", build)
    assert take(dispatcher, runner("r1")) == "b1"


def test_removed_builds_are_not_offered() -> None:
    dispatcher = Dispatcher()
    dispatcher.enqueue([queued("b1", 1), queued("b2", 2)])
    dispatcher.remove("b1")
    assert take(dispatcher, runner("r1", slots=3)) == "b2"
    assert take(dispatcher, runner("r1", slots=3)) is None


def test_a_queued_build_is_offered_once() -> None:
    dispatcher = Dispatcher()
    parked = [dispatcher.park(runner(f"r{i}")) for i in range(20)]
    dispatcher.enqueue([queued(f"b{i}", i) for i in range(5)])
    offers = sorted(o for o in (served(p) for p in parked) if o is not None)
    assert offers == [f"b{i}" for i in range(5)]


def test_a_reserved_claim_is_taken_out_of_the_queue() -> None:
    dispatcher = Dispatcher()
    mac = dispatcher.park(runner("mac", "macos"))
    plain = dispatcher.park(runner("plain"))
    assert dispatcher.reserve(frozenset({"linux"})) is None
    assert dispatcher.reserve(frozenset({"macos"})) is mac and mac.reserved
    dispatcher.enqueue([queued("b1", 1)])
    assert served(mac) is None and served(plain) == "b1"


def test_a_release_serves_a_parked_claim_of_that_runner() -> None:
    dispatcher = Dispatcher()
    slot = runner("r1")
    assert take(dispatcher, slot) is None
    dispatcher.enqueue([queued("b1", 1)])
    assert take(dispatcher, slot) == "b1"
    dispatcher.enqueue([queued("b2", 2)])
    parked = dispatcher.park(slot)
    assert served(parked) is None  # full
    dispatcher.release("r1")
    assert served(parked) == "b2"


def test_many_claims_that_left_do_not_pile_up() -> None:
    dispatcher = Dispatcher()
    for i in range(10_000):
        dispatcher.leave(dispatcher.park(runner(f"r{i}")))
    assert dispatcher.depth() == (0, 0)
    assert len(dispatcher._parked) < 200


async def test_a_parked_claim_wakes_its_claimant_once_served_and_may_be_cancelled() -> None:
    dispatcher = Dispatcher()
    parked = dispatcher.park(runner("r1"))
    woken: list[str | None] = []

    async def claimant() -> None:
        await parked.event.wait()
        woken.append(served(parked))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(claimant)
        await trio.testing.wait_all_tasks_blocked()
        assert woken == []
        dispatcher.enqueue([queued("b1", 1)])
    assert woken == ["b1"]
    await parked.event.wait()  # set: answers at once

    left = dispatcher.park(runner("r2"))
    with trio.move_on_after(0.01) as scope:
        await left.event.wait()
    assert scope.cancelled_caught and not left.event.is_set()
    dispatcher.leave(left)
    async with trio.open_nursery() as nursery:  # cancelled, it can be waited on again
        nursery.start_soon(left.event.wait)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError), trio.move_on_after(5):
            await left.event.wait()  # a second waiter is refused, never left waiting
        left.event.set()


def test_the_runner_pause_holds_back_macos_runners_only() -> None:
    dispatcher = Dispatcher()
    dispatcher.enqueue([queued("b1", 1), queued("b2", 2)])
    mac = RunnerSlot("mac", frozenset(), 1, direct_macos=True)
    dispatcher.pause_macos(True)
    assert take(dispatcher, mac) is None
    assert take(dispatcher, runner("linux")) == "b1"
    dispatcher.pause_macos(False)
    assert take(dispatcher, mac) == "b2"


def test_a_paused_claim_waits_and_is_served_when_the_pause_is_lifted() -> None:
    dispatcher = Dispatcher()
    dispatcher.pause_macos(True)
    mac = dispatcher.park(RunnerSlot("mac", frozenset(), 1, direct_macos=True))
    dispatcher.enqueue([queued("b1", 1)])
    assert served(mac) is None and dispatcher.reserve(frozenset()) is None
    linux = dispatcher.park(runner("linux"))
    dispatcher.enqueue([queued("b2", 2)])
    assert served(linux) == "b2"  # parked after the Mac, served before it
    dispatcher.pause_macos(False)
    assert served(mac) == "b1" and mac.event.is_set()
