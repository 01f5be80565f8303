"""Registries: lookups by id, and dynamic actors leaving the registry when they finish."""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

import pytest
import trio
import trio.testing

from oore.actors import (
    Actor,
    ActorRef,
    AlreadyRegistered,
    ChildSpec,
    NotRegistered,
    Registry,
    Reply,
    Restart,
    Supervisor,
    SupervisorNotRunning,
    actor_spec,
)
from tests.actors.kit import Boom


@dataclass(frozen=True)
class Beat:
    reply: Reply[int]


@dataclass(frozen=True)
class Offline:
    pass


@dataclass(frozen=True)
class Busy:
    gate: trio.Event


RunnerMsg = Beat | Offline | Busy


class Runner(Actor[RunnerMsg]):
    """Counts heartbeats; goes away when told the runner is offline."""

    def __init__(self, ref: ActorRef[RunnerMsg]) -> None:
        super().__init__(ref)
        self.beats = 0

    async def handle(self, msg: RunnerMsg) -> None:
        match msg:
            case Beat(reply):
                self.beats += 1
                reply.send(self.beats)
            case Offline():
                self.ref.stop()
            case Busy(gate):
                await gate.wait()
            case _:
                assert_never(msg)


def test_register_look_up_and_unregister() -> None:
    runners: Registry[str, ActorRef[RunnerMsg]] = Registry("runners")
    one = ActorRef[RunnerMsg]("runner:1", capacity=2)
    runners.register("1", one)
    assert runners["1"] is one and runners.get("1") is one and "1" in runners
    assert (len(runners), list(runners)) == (1, ["1"])
    with pytest.raises(AlreadyRegistered):
        runners.register("1", ActorRef[RunnerMsg]("runner:1", capacity=2))
    with pytest.raises(NotRegistered):
        runners["2"]
    assert runners.get("2") is None

    stale = ActorRef[RunnerMsg]("runner:1", capacity=2)
    assert not runners.unregister("1", stale)  # an old actor cannot remove its successor
    assert runners.unregister("1", one)
    assert not runners.unregister("1")
    assert len(runners) == 0


async def test_statistics_by_key() -> None:
    runners: Registry[str, ActorRef[RunnerMsg]] = Registry("runners")
    runners.register("1", ActorRef[RunnerMsg]("runner:1", capacity=2))
    runners["1"].try_tell(Offline())
    stats = runners.statistics()
    assert stats["1"].name == "runner:1" and stats["1"].mailbox_depth == 1


class Starts:
    """Makes the handles and actors of one key, counting them; starts may be held."""

    def __init__(self) -> None:
        self.handles: list[ActorRef[RunnerMsg]] = []
        self.gate: trio.Event | None = None
        self.fail = False

    def new(self) -> ActorRef[RunnerMsg]:
        self.handles.append(ActorRef[RunnerMsg]("runner:7", capacity=8))
        return self.handles[-1]

    def spec(self, ref: ActorRef[RunnerMsg]) -> ChildSpec[ActorRef[RunnerMsg]]:
        return actor_spec(ref, lambda ref: Slow(ref, self), restart=Restart.TRANSIENT)


class Slow(Runner):
    def __init__(self, ref: ActorRef[RunnerMsg], starts: Starts) -> None:
        super().__init__(ref)
        self._starts = starts

    async def on_start(self) -> None:
        if self._starts.gate is not None:
            await self._starts.gate.wait()
        if self._starts.fail:
            raise Boom("cannot start")


async def test_concurrent_callers_for_one_key_get_one_child() -> None:
    runners: Registry[str, ActorRef[RunnerMsg]] = Registry("runners")
    sup = Supervisor("runners")
    starts = Starts()
    starts.gate = trio.Event()
    got: list[ActorRef[RunnerMsg]] = []

    async def caller() -> None:
        got.append(await runners.get_or_start("7", sup, starts.new, starts.spec))

    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        with trio.fail_after(5):
            async with trio.open_nursery() as callers:
                for _ in range(10):
                    callers.start_soon(caller)
                await trio.testing.wait_all_tasks_blocked()
                starts.gate.set()
            assert len(starts.handles) == 1 and got == starts.handles * 10
            assert await got[0].ask(Beat) == 1
        assert list(sup.statistics().children) == ["runner:7"]
        sup.stop()


async def test_a_child_leaves_the_registry_when_it_ends_and_the_next_caller_starts_one() -> None:
    runners: Registry[str, ActorRef[RunnerMsg]] = Registry("runners")
    sup = Supervisor("runners")
    starts = Starts()
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        with trio.fail_after(5):
            first = await runners.get_or_start("7", sup, starts.new, starts.spec)
            assert await first.ask(Beat) == 1
            assert await runners.get_or_start("7", sup, starts.new, starts.spec) is first
            await first.tell(Offline())
            await trio.testing.wait_all_tasks_blocked()
            assert "7" not in runners and "runner:7" not in sup.statistics().children
            second = await runners.get_or_start("7", sup, starts.new, starts.spec)
            assert second is not first and await second.ask(Beat) == 1
        sup.stop()


async def test_a_stopping_child_is_replaced_once_it_has_drained() -> None:
    runners: Registry[str, ActorRef[RunnerMsg]] = Registry("runners")
    sup = Supervisor("runners")
    starts = Starts()
    got: list[ActorRef[RunnerMsg]] = []

    async def caller() -> None:
        got.append(await runners.get_or_start("7", sup, starts.new, starts.spec))

    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        with trio.fail_after(5):
            old = await runners.get_or_start("7", sup, starts.new, starts.spec)
            gate = trio.Event()
            await old.tell(Busy(gate))  # the old child is stopping, still busy
            old.stop()
            async with trio.open_nursery() as callers:
                callers.start_soon(caller)
                callers.start_soon(caller)
                await trio.testing.wait_all_tasks_blocked()
                assert got == [] and runners.get("7") is old  # waiting for it to end
                gate.set()
            assert len(starts.handles) == 2 and got == [starts.handles[1]] * 2
            assert old.statistics().running is False
            assert await got[0].ask(Beat) == 1
            assert runners.get("7") is got[0]
        sup.stop()


async def test_a_failed_start_unregisters_and_stops_the_handle() -> None:
    runners: Registry[str, ActorRef[RunnerMsg]] = Registry("runners")
    sup = Supervisor("runners")
    starts = Starts()
    with pytest.raises(SupervisorNotRunning):
        await runners.get_or_start("7", sup, starts.new, starts.spec)
    assert "7" not in runners and starts.handles[0].stopping
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        starts.fail = True
        with pytest.raises(Boom):
            await runners.get_or_start("7", sup, starts.new, starts.spec)
        assert "7" not in runners and starts.handles[1].stopping
        starts.fail = False
        with trio.fail_after(5):
            handle = await runners.get_or_start("7", sup, starts.new, starts.spec)
            assert await handle.ask(Beat) == 1
        sup.stop()
