"""The actor base: bounded mailbox, tell/ask, replies, shutdown by closing, statistics."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import assert_never

import pytest
import trio
import trio.testing

from oore.actors import (
    Actor,
    ActorCrashed,
    ActorRef,
    ActorStopped,
    MailboxFull,
    Reply,
)
from tests.actors.kit import Add, Boom, Explode, Hold, Total


@dataclass(frozen=True)
class Lookup:
    reply: Reply[str]
    key: str


@dataclass(frozen=True)
class Park:
    reply: Reply[str]


@dataclass(frozen=True)
class Release:
    value: str


@dataclass(frozen=True)
class Arm:
    seconds: float


Msg = Add | Total | Lookup | Explode | Park | Release | Hold | Arm


class Counter(Actor[Msg]):
    """Adds numbers, answers lookups, parks requests, crashes on demand."""

    def __init__(self, ref: ActorRef[Msg]) -> None:
        super().__init__(ref)
        self.total = 0
        self.parked: list[Reply[str]] = []
        self.delivered: list[bool] = []
        self.stopped_with: int | None = None
        self.woken_at: list[float] = []

    async def on_stop(self) -> None:
        self.stopped_with = self.total

    async def on_deadline(self) -> None:
        self.woken_at.append(trio.current_time())

    async def handle(self, msg: Msg) -> None:
        match msg:
            case Add(n):
                self.total += n
            case Total(reply):
                reply.send(self.total)
            case Lookup(reply, key):
                if key == "missing":
                    reply.fail(LookupError(key))
                else:
                    reply.send(key.upper())
            case Explode():
                raise Boom("exploded")
            case Park(reply):
                self.parked.append(reply)
            case Release(value):
                self.delivered.extend(reply.send(value) for reply in self.parked)
                self.parked.clear()
            case Hold(gate):
                await gate.wait()
            case Arm(seconds):
                self.deadline = trio.current_time() + seconds
            case _:
                assert_never(msg)


async def run_capturing(
    actor: Counter,
    crashes: list[Exception],
    *,
    task_status: trio.TaskStatus[ActorRef[Msg]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one incarnation, keeping its crash for the test to inspect."""
    try:
        await actor.run(task_status=task_status)
    except Boom as exc:
        crashes.append(exc)


async def test_tell_and_ask_are_handled_in_order() -> None:
    ref = ActorRef[Msg]("counter", capacity=8)
    async with trio.open_nursery() as nursery:
        assert await nursery.start(Counter(ref).run) is ref
        await ref.tell(Add(1))
        ref.try_tell(Add(2))
        with trio.fail_after(1):
            assert await ref.ask(Total) == 3
            assert await ref.ask(Lookup, "abc") == "ABC"
            assert await ref.ask(lambda reply: Lookup(reply, key="x")) == "X"
            assert await ref.try_ask(Lookup, "q") == "Q"
        ref.stop()
    stats = ref.statistics()
    assert (stats.processed, stats.restarts, stats.running, stats.stopping) == (6, 0, False, True)


async def test_full_mailbox_pushes_back() -> None:
    ref = ActorRef[Msg]("counter", capacity=2)
    ref.try_tell(Add(1))
    ref.try_tell(Add(2))
    with pytest.raises(MailboxFull):
        ref.try_tell(Add(100))
    with pytest.raises(MailboxFull):
        await ref.try_ask(Total)

    told = trio.Event()

    async def teller() -> None:
        await ref.tell(Add(3))
        told.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(teller)
        await trio.testing.wait_all_tasks_blocked()
        stats = ref.statistics()
        assert (stats.mailbox_depth, stats.mailbox_capacity, stats.blocked_senders) == (2, 2, 1)
        assert not told.is_set()

        await nursery.start(Counter(ref).run)
        with trio.fail_after(1):
            await told.wait()
            assert await ref.ask(Total) == 6
        ref.stop()


async def test_reply_fail_reaches_the_asker_and_the_actor_carries_on() -> None:
    ref = ActorRef[Msg]("counter", capacity=4)
    async with trio.open_nursery() as nursery:
        await nursery.start(Counter(ref).run)
        with trio.fail_after(1), pytest.raises(LookupError):
            await ref.ask(Lookup, "missing")
        with trio.fail_after(1):
            assert await ref.ask(Lookup, "ok") == "OK"
        ref.stop()


async def test_ask_to_a_crashing_actor_raises_in_the_caller() -> None:
    ref = ActorRef[Msg]("counter", capacity=4)
    crashes: list[Exception] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(run_capturing, Counter(ref), crashes)
        with trio.fail_after(1), pytest.raises(ActorCrashed) as info:
            await ref.ask(Explode)
    assert isinstance(info.value.__cause__, Boom)
    assert crashes == [info.value.__cause__]
    assert not ref.statistics().running


async def test_parked_requests_fail_when_the_incarnation_ends() -> None:
    ref = ActorRef[Msg]("counter", capacity=4)
    outcome: list[BaseException] = []

    async def asker() -> None:
        with pytest.raises(ActorStopped) as info:
            await ref.ask(Park)
        outcome.append(info.value)

    async with trio.open_nursery() as nursery:
        await nursery.start(Counter(ref).run)
        nursery.start_soon(asker)
        await trio.testing.wait_all_tasks_blocked()
        assert ref.statistics().processed == 1  # taken and parked, not answered
        ref.stop()
    assert len(outcome) == 1


async def test_closing_the_mailbox_drains_it_then_ends() -> None:
    ref = ActorRef[Msg]("counter", capacity=4)
    actor = Counter(ref)
    gate = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        await ref.tell(Hold(gate))
        await ref.tell(Add(1))
        await ref.tell(Add(2))
        ref.stop()
        with pytest.raises(ActorStopped):
            await ref.tell(Add(100))
        with pytest.raises(ActorStopped):
            ref.try_tell(Add(100))
        gate.set()
    assert actor.stopped_with == 3


async def test_a_sender_waiting_for_room_learns_the_actor_stopped() -> None:
    ref = ActorRef[Msg]("counter", capacity=1)
    ref.try_tell(Add(1))
    async with trio.open_nursery() as nursery:

        async def teller() -> None:
            with pytest.raises(ActorStopped):
                await ref.tell(Add(2))

        nursery.start_soon(teller)
        await trio.testing.wait_all_tasks_blocked()
        assert ref.statistics().blocked_senders == 1
        ref.stop()


async def test_close_fails_queued_asks_at_once() -> None:
    ref = ActorRef[Msg]("counter", capacity=4)
    failures: list[BaseException] = []

    async def asker() -> None:
        with pytest.raises(ActorStopped) as info:
            await ref.ask(Total)
        failures.append(info.value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(asker)
        nursery.start_soon(asker)
        await trio.testing.wait_all_tasks_blocked()
        assert ref.statistics().mailbox_depth == 2
        ref.close()
    assert len(failures) == 2
    assert ref.statistics().mailbox_depth == 0


async def test_the_caller_owns_the_deadline(autojump_clock: trio.testing.MockClock) -> None:
    ref = ActorRef[Msg]("counter", capacity=4)
    actor = Counter(ref)
    with trio.move_on_after(5) as scope:
        await ref.ask(Park)  # nobody serves the mailbox yet
    assert scope.cancelled_caught
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        await ref.tell(Release("late"))
        with trio.fail_after(1):
            assert await ref.ask(Total) == 0
        ref.stop()
    assert actor.delivered == [False]  # the actor learns its answer went nowhere


async def test_a_deadline_wakes_an_idle_actor(autojump_clock: trio.testing.MockClock) -> None:
    ref = ActorRef[Msg]("counter", capacity=4)
    actor = Counter(ref)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        start = trio.current_time()
        await ref.tell(Arm(10))
        await trio.sleep(4)  # advances the mock clock; the message below does not disarm
        await ref.tell(Add(1))
        await trio.sleep(20)
        ref.stop()
    assert actor.woken_at == [start + 10]
    assert math.isinf(actor.deadline)


async def test_lag_is_the_wait_of_the_last_message(autojump_clock: trio.testing.MockClock) -> None:
    ref = ActorRef[Msg]("counter", capacity=4)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ref.ask, Total)
        await trio.sleep(3)  # advances the mock clock with the request queued
        await nursery.start(Counter(ref).run)
        await trio.testing.wait_all_tasks_blocked()
        ref.stop()
    assert ref.statistics().lag == pytest.approx(3)


async def test_statistics_accumulate_across_incarnations() -> None:
    ref = ActorRef[Msg]("counter", capacity=8)
    crashes: list[Exception] = []
    await ref.tell(Add(1))
    await ref.tell(Explode(Reply()))
    await ref.tell(Add(2))
    await run_capturing(Counter(ref), crashes)  # takes Add(1), crashes on Explode
    assert len(crashes) == 1
    second = Counter(ref)
    ref.stop()
    await second.run()  # takes the queued Add(2), then the mailbox ends
    assert second.stopped_with == 2
    stats = ref.statistics()
    assert (stats.processed, stats.restarts, stats.mailbox_depth) == (3, 1, 0)


async def test_one_incarnation_at_a_time() -> None:
    ref = ActorRef[Msg]("counter", capacity=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(Counter(ref).run)
        with pytest.raises(RuntimeError, match="already has a running incarnation"):
            await Counter(ref).run()
        ref.stop()


def test_the_mailbox_is_bounded() -> None:
    with pytest.raises(ValueError):
        ActorRef[Msg]("counter", capacity=math.inf)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ActorRef[Msg]("counter", capacity=-1)


def test_a_reply_is_sent_once() -> None:
    reply: Reply[int] = Reply()
    assert reply.send(1)
    assert reply.done
    with pytest.raises(RuntimeError):
        reply.fail(Boom())
