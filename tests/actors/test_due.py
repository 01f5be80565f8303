"""DueTimes: callbacks run when items fall due, in order; add moves, cancel removes;
a crashing callback restarts the worker, which reloads its items from their source."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from oore.actors import ActorCrashed, Supervisor
from oore.actors.due import DueTimes
from tests.actors.kit import Boom

TTL = 1800.0


class Source:
    """The items a database would hold, as (key, trio due time), and what fell due."""

    def __init__(self, items: dict[str, float] | None = None) -> None:
        self.items = dict(items or {})
        self.fired: list[tuple[str, float]] = []
        self.loads = 0
        self.again: dict[str, float | None] = {}  # what a callback answers, by key
        self.crash: set[str] = set()

    async def load(self) -> list[tuple[str, float]]:
        self.loads += 1
        now = trio.current_time()
        return [(key, at - now) for key, at in self.items.items()]

    async def on_due(self, key: str) -> float | None:
        now = trio.current_time()
        if key in self.crash:
            self.crash.discard(key)
            raise Boom(key)
        self.fired.append((key, now))
        after = self.again.get(key)
        if after is None:
            self.items.pop(key, None)
        else:
            self.items[key] = now + after
        return after


async def start(
    source: Source, nursery: trio.Nursery, name: str = "due"
) -> tuple[DueTimes[str], Supervisor]:
    worker = DueTimes[str](name)
    root = Supervisor("root", [worker.spec(on_due=source.on_due, load=source.load)])
    await nursery.start(root.run)
    return worker, root


def fired(source: Source, began: float) -> list[tuple[str, float]]:
    return [(key, at - began) for key, at in source.fired]


async def test_items_fall_due_in_order_of_their_due_times(
    autojump_clock: trio.testing.MockClock,
) -> None:
    began = trio.current_time()
    source = Source({"c": began + 30, "a": began + 10})
    async with trio.open_nursery() as nursery:
        worker, root = await start(source, nursery)
        assert worker.add("b", 20)
        assert worker.add("tie-1", 40) and worker.add("tie-2", 40)
        assert worker.add("late", -5)  # already due: at once
        await trio.sleep(100)
        assert fired(source, began) == [
            ("late", 0),
            ("a", 10),
            ("b", 20),
            ("c", 30),
            ("tie-1", 40),
            ("tie-2", 40),
        ]
        assert await worker.due_in("a") is None
        root.stop()


async def test_cancel_removes_a_key_and_adding_again_moves_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    began = trio.current_time()
    source = Source()
    async with trio.open_nursery() as nursery:
        worker, root = await start(source, nursery)
        worker.add("gone", 10)
        worker.cancel("gone")
        worker.add("later", 10)
        worker.add("later", 50)  # moved later
        worker.add("sooner", 50)
        worker.add("sooner", 5)  # moved sooner
        worker.add("kept", 20)
        worker.add("kept", 60, keep_earlier=True)  # due sooner already: stays
        worker.add("kept", 15, keep_earlier=True)  # sooner: moves
        assert await worker.due_in("later") == 50 and await worker.due_in("gone") is None
        await trio.sleep(100)
        assert fired(source, began) == [("sooner", 5), ("kept", 15), ("later", 50)]
        root.stop()


async def test_a_callback_reschedules_its_key_by_its_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    began = trio.current_time()
    source = Source({"tick": began + 10})
    source.again["tick"] = 30
    async with trio.open_nursery() as nursery:
        worker, root = await start(source, nursery)
        await trio.sleep(75)
        assert fired(source, began) == [("tick", 10), ("tick", 40), ("tick", 70)]
        source.again["tick"] = None  # dropped after the next run
        await trio.sleep(100)
        assert fired(source, began)[-1] == ("tick", 100) and len(source.fired) == 4
        assert await worker.due_in("tick") is None
        root.stop()


async def test_fire_runs_a_key_now_and_answers_once_it_ran(
    autojump_clock: trio.testing.MockClock,
) -> None:
    began = trio.current_time()
    source = Source({"drain": began + 60})
    source.again["drain"] = 60
    async with trio.open_nursery() as nursery:
        worker, root = await start(source, nursery)
        await trio.sleep(5)
        await worker.fire("drain")
        assert fired(source, began) == [("drain", 5)]
        assert await worker.due_in("drain") == 60  # rescheduled by its answer
        await worker.fire("never-added")  # a key need not be held to be fired
        root.stop()


async def test_nothing_held_means_no_wake_up_and_no_reload(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = Source()
    async with trio.open_nursery() as nursery:
        worker, root = await start(source, nursery)
        await trio.sleep(10 * TTL)
        assert source.fired == [] and source.loads == 1
        assert worker.statistics().processed == 0
        root.stop()


async def test_a_crashing_callback_restarts_the_worker_which_reloads_its_source(
    autojump_clock: trio.testing.MockClock,
) -> None:
    began = trio.current_time()
    source = Source({"bad": began + 10, "good": began + 20})
    source.crash.add("bad")
    async with trio.open_nursery() as nursery:
        worker, root = await start(source, nursery)
        await trio.sleep(100)
        # The crash cost the worker its items; the restart loaded them again from the
        # source, which still holds "bad" (its callback never finished) and "good".
        assert source.loads == 2
        assert fired(source, began) == [("bad", 10), ("good", 20)]
        assert root.statistics().children["due"].restarts == 1
        source.crash.add("boom")
        with pytest.raises(ActorCrashed):
            await worker.fire("boom")  # the asker learns of the crash
        await trio.testing.wait_all_tasks_blocked()
        assert source.loads == 3
        root.stop()


async def test_one_key_kept_at_its_earliest_due_time_like_artifact_reservations(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The reservations' pattern: one ``sweep`` key, told each reservation's due time,
    swept at the earliest; the sweep answers when the next pending one falls due."""
    began = trio.current_time()
    pending: list[float] = []
    sweeps: list[float] = []

    async def load() -> list[tuple[str, float]]:
        now = trio.current_time()
        return [("sweep", min(pending) - now)] if pending else []

    async def sweep(key: str) -> float | None:
        now = trio.current_time()
        sweeps.append(now - began)
        pending[:] = [due for due in pending if due > now]
        return min(pending) - now if pending else None

    worker = DueTimes[str]("artifact-reservations")
    root = Supervisor("root", [worker.spec(on_due=sweep, load=load)])
    async with trio.open_nursery() as nursery:
        await nursery.start(root.run)
        pending.append(trio.current_time() + TTL)
        worker.add("sweep", TTL, keep_earlier=True)
        await trio.sleep(600)
        pending.append(trio.current_time() + TTL)
        worker.add("sweep", TTL, keep_earlier=True)  # later than the one known: stays
        assert await worker.due_in("sweep") == TTL - 600
        await trio.sleep(2 * TTL)
        assert sweeps == [TTL, TTL + 600]
        root.stop()


async def test_add_and_cancel_never_wait_and_say_whether_they_were_told() -> None:
    worker = DueTimes[str]("due", capacity=1)
    assert worker.add("a", 1)
    assert not worker.add("b", 1)  # the mailbox is full
    worker.stop()
    assert not worker.cancel("a")
