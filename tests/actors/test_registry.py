"""Registries: lookups by id, and dynamic actors leaving the registry when they finish."""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

import pytest
import trio

from oore.actors import (
    Actor,
    ActorRef,
    AlreadyRegistered,
    NotRegistered,
    Registry,
    Reply,
    Restart,
    Supervisor,
    actor_spec,
)


@dataclass(frozen=True)
class Beat:
    reply: Reply[int]


@dataclass(frozen=True)
class Offline:
    pass


RunnerMsg = Beat | Offline


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


async def test_a_dynamic_actor_leaves_the_registry_when_it_finishes() -> None:
    runners: Registry[str, ActorRef[RunnerMsg]] = Registry("runners")
    sup = Supervisor("runners")
    gone = trio.Event()

    async def runner_for(runner_id: str) -> ActorRef[RunnerMsg]:
        ref = runners.get(runner_id)
        if ref is None:
            ref = ActorRef[RunnerMsg](f"runner:{runner_id}", capacity=8)
            runners.register(runner_id, ref)

            def unregister(ref: ActorRef[RunnerMsg] = ref) -> None:
                runners.unregister(runner_id, ref)
                gone.set()

            await sup.start_child(
                actor_spec(ref, Runner, restart=Restart.TRANSIENT, on_exit=unregister)
            )
        return ref

    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        with trio.fail_after(1):
            assert await (await runner_for("7")).ask(Beat) == 1
            assert await (await runner_for("7")).ask(Beat) == 2
            assert len(runners) == 1
            await runners["7"].tell(Offline())
            await gone.wait()
        assert "7" not in runners
        assert "runner:7" not in sup.statistics().children
        sup.stop()
