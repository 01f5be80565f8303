"""Supervision: restart policies, restart budget, escalation, ordered start and stop."""

from __future__ import annotations

import contextvars
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, assert_never

import pytest
import trio
import trio.testing

from oore.actors import (
    Actor,
    ActorCrashed,
    ActorRef,
    ActorStatistics,
    ActorStopped,
    ChildSpec,
    Restart,
    Supervisor,
    SupervisorEscalation,
    SupervisorNotRunning,
    actor_spec,
    supervisor_spec,
)
from oore.actors.supervisor import OUTAGE_BACKOFF_INITIAL, OUTAGE_BACKOFF_MAX
from oore.errors import StoreUnavailable
from tests.actors.kit import Add, Boom, Explode, Hold, Total


@dataclass(frozen=True)
class ExplodeAfter:
    gate: trio.Event


@dataclass(frozen=True)
class Quit:
    pass


Msg = Add | Total | Explode | ExplodeAfter | Hold | Quit


class Counter(Actor[Msg]):
    """Per-incarnation total; crashes on demand; may close its own mailbox."""

    def __init__(self, ref: ActorRef[Msg], log: list[str] | None = None) -> None:
        super().__init__(ref)
        self.total = 0
        self.log = log if log is not None else []

    async def on_start(self) -> None:
        self.log.append(f"{self.ref.name} begin")
        await trio.lowlevel.checkpoint()
        self.log.append(f"{self.ref.name} end")

    async def on_stop(self) -> None:
        self.log.append(f"{self.ref.name} drained {self.total}")

    async def handle(self, msg: Msg) -> None:
        match msg:
            case Add(n):
                self.total += n
            case Total(reply):
                reply.send(self.total)
            case Explode():
                raise Boom("explode")
            case ExplodeAfter(gate):
                await gate.wait()
                raise Boom("explode after")
            case Hold(gate):
                await gate.wait()
            case Quit():
                self.ref.stop()
            case _:
                assert_never(msg)


Spec = ChildSpec[ActorRef[Msg]]


def counter(name: str, log: list[str] | None = None) -> tuple[ActorRef[Msg], Spec]:
    """A counter's ref and a permanent spec for it."""
    ref = ActorRef[Msg](name, capacity=16)
    return ref, actor_spec(ref, lambda ref: Counter(ref, log))


Order = Literal["return", "raise", "unavailable", "unavailable_cause"]


class Probe:
    """A scripted plain child: each incarnation obeys the next order, or a stop."""

    def __init__(
        self,
        name: str,
        log: list[str] | None = None,
        *,
        orders: Sequence[Order] = (),
        delay: float = 0.0,
        ignore_stop: bool = False,
        raise_on_cancel: bool = False,
    ) -> None:
        self.name = name
        self.log = log if log is not None else []
        self.starts = 0
        self.exits = 0
        self.orders: deque[Order] = deque(orders)
        self.delay = delay
        self.ignore_stop = ignore_stop
        self.raise_on_cancel = raise_on_cancel
        self._stopping = False
        self._poked = trio.Event()
        self._changed = trio.Event()

    def stop(self) -> None:
        self._stopping = True
        self._poke()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(self.name, 0, 0, 0, 0, self.starts - 1, 0.0, True, self._stopping)

    def order(self, order: Order) -> None:
        self.orders.append(order)
        self._poke()

    async def wait_until(self, condition: Callable[[Probe], bool]) -> None:
        while not condition(self):
            await self._changed.wait()

    def spec(self, restart: Restart = Restart.PERMANENT, grace: float = 1.0) -> ChildSpec[Probe]:
        return ChildSpec(id=self.name, start=self.run, restart=restart, grace=grace)

    def _poke(self) -> None:
        self._poked.set()
        self._poked = trio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[Probe] = trio.TASK_STATUS_IGNORED) -> None:
        self.starts += 1
        self._notify()
        task_status.started(self)
        try:
            while True:
                if self.orders:
                    order = self.orders.popleft()
                    await trio.sleep(self.delay)
                    if order == "raise":
                        raise Boom(self.name)
                    if order == "unavailable":
                        raise StoreUnavailable()
                    if order == "unavailable_cause":
                        raise Boom(self.name) from StoreUnavailable()
                    return
                if self._stopping and not self.ignore_stop:
                    return
                await self._poked.wait()
        except trio.Cancelled:
            self.log.append(f"{self.name} cancelled")
            if self.raise_on_cancel:
                raise Boom("misbehaving cleanup") from None  # an adversarial child
            raise
        finally:
            self.exits += 1
            self.log.append(f"{self.name} ended")
            self._notify()


async def test_a_crashed_actor_restarts_and_handles_what_queued_meanwhile() -> None:
    ref, spec = counter("counter")
    sup = Supervisor("root", [spec])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await ref.tell(Add(5))
        gate = trio.Event()
        await ref.tell(ExplodeAfter(gate))
        await ref.tell(Add(1))  # queued while the doomed incarnation is busy
        await ref.tell(Add(2))
        gate.set()
        with trio.fail_after(1):
            assert await ref.ask(Total) == 3  # a fresh incarnation, the same mailbox
        stats = ref.statistics()
        assert (stats.restarts, stats.processed) == (1, 5)
        assert sup.statistics().children["counter"].restarts == 1
        sup.stop()


async def test_ask_to_a_crashing_actor_raises_and_the_next_ask_works() -> None:
    ref, spec = counter("counter")
    sup = Supervisor("root", [spec])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        with trio.fail_after(1):
            with pytest.raises(ActorCrashed) as info:
                await ref.ask(Explode)
            assert isinstance(info.value.__cause__, Boom)
            assert await ref.ask(Total) == 0
        sup.stop()


async def test_exceeding_the_budget_escalates_after_stopping_the_others_in_reverse() -> None:
    log: list[str] = []
    first, second = Probe("first", log), Probe("second", log)
    crasher = Probe("crasher", log, orders=["raise"] * 10)
    sup = Supervisor(
        "root", [first.spec(), second.spec(), crasher.spec()], max_restarts=2, period=10
    )
    with pytest.raises(SupervisorEscalation) as info:
        await sup.run()
    assert info.value.child == "crasher"
    assert isinstance(info.value.__cause__, Boom)
    assert crasher.starts == 3  # the first run and two restarts
    others = [line for line in log if not line.startswith("crasher")]
    assert others == ["second cancelled", "second ended", "first cancelled", "first ended"]
    assert not first.stopping and not second.stopping  # left for a restarted parent
    assert sup.statistics().escalations == 1


async def test_restarts_spread_out_in_time_stay_within_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    crasher = Probe("crasher", orders=["raise"] * 4, delay=6)  # one crash every 6 s
    sup = Supervisor("root", [crasher.spec()], max_restarts=1, period=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await crasher.wait_until(lambda probe: probe.starts == 5)
        assert trio.current_time() == pytest.approx(24)
        sup.stop()
    assert sup.statistics().restarts == 4


async def test_crashes_while_the_database_is_away_back_off_and_never_escalate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    orders: list[Order] = ["unavailable", "unavailable_cause"] * 6
    crasher = Probe("crasher", orders=orders)
    sup = Supervisor("root", [crasher.spec()], max_restarts=2, period=1000)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await crasher.wait_until(lambda probe: probe.starts == len(orders) + 1)
        delays = [
            min(OUTAGE_BACKOFF_INITIAL * 2**n, OUTAGE_BACKOFF_MAX) for n in range(len(orders))
        ]
        assert trio.current_time() == pytest.approx(sum(delays))  # backing off, not spinning
        crasher.order("raise")  # an ordinary crash still counts, and the budget is intact
        crasher.order("raise")
        await crasher.wait_until(lambda probe: probe.starts == len(orders) + 3)
        assert sup.statistics().escalations == 0
        sup.stop()


async def test_a_parent_restarts_an_escalating_supervisor_and_its_mailboxes_survive() -> None:
    ref, counter_spec = counter("counter")
    crasher = Probe("crasher")
    inner = Supervisor("inner", [counter_spec, crasher.spec()], max_restarts=0)
    outer = Supervisor("outer", [supervisor_spec(inner)], max_restarts=3)
    async with trio.open_nursery() as nursery:
        await nursery.start(outer.run)
        await ref.tell(Hold(trio.Event()))  # never released: the escalation cancels it
        await ref.tell(Add(1))
        await ref.tell(Add(2))
        crasher.order("raise")
        with trio.fail_after(1):
            await crasher.wait_until(lambda probe: probe.starts == 2)
            assert await ref.ask(Total) == 3
        assert outer.statistics().children["inner"].restarts == 1
        assert ref.statistics().restarts == 1
        flat = dict(outer.statistics().actors())
        assert set(flat) == {"inner/counter", "inner/crasher"}
        assert flat["inner/counter"].mailbox_capacity == 16
        outer.stop()
    assert ref.stopping  # stopped for good with its parents


async def test_escalation_climbs_nested_supervisors() -> None:
    crasher = Probe("crasher", orders=["raise"])
    inner = Supervisor("inner", [crasher.spec()], max_restarts=0)
    outer = Supervisor("outer", [supervisor_spec(inner)], max_restarts=0)
    with pytest.raises(SupervisorEscalation) as info:
        await outer.run()
    assert info.value.supervisor == "outer"
    cause = info.value.__cause__
    assert isinstance(cause, SupervisorEscalation) and cause.supervisor == "inner"


async def test_a_static_child_that_cannot_start_escalates() -> None:
    def broken(ref: ActorRef[Msg]) -> Counter:
        raise Boom("no database")

    ok_ref, ok_spec = counter("ok")
    bad = ActorRef[Msg]("bad", capacity=1)
    sup = Supervisor("root", [ok_spec, actor_spec(bad, broken)])
    async with trio.open_nursery() as nursery:
        with pytest.raises(SupervisorEscalation) as info:
            await nursery.start(sup.run)
    assert info.value.child == "bad" and isinstance(info.value.__cause__, Boom)
    assert not ok_ref.statistics().running


async def test_stop_goes_in_reverse_order_and_is_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    ref, counter_spec = counter("counter", log)
    stubborn = Probe("stubborn", log, ignore_stop=True)
    polite = Probe("polite", log)
    sup = Supervisor("root", [counter_spec, stubborn.spec(grace=3), polite.spec()])
    ended: list[float] = []

    async def run_and_time(*, task_status: trio.TaskStatus[Supervisor]) -> None:
        await sup.run(task_status=task_status)
        ended.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        await nursery.start(run_and_time)
        await ref.tell(Add(7))
        log.clear()
        begin = trio.current_time()
        sup.stop()
    assert ended[0] - begin == pytest.approx(3)  # bounded by the stubborn child's grace
    assert log == [
        "polite ended",
        "stubborn cancelled",
        "stubborn ended",
        "counter drained 7",
    ]
    assert ref.stopping
    with pytest.raises(ActorStopped):
        await ref.tell(Add(1))


async def test_cancelling_the_supervisor_stops_it_and_restarts_nothing() -> None:
    log: list[str] = []
    ref, counter_spec = counter("counter", log)
    probe = Probe("probe", log)
    rude = Probe("rude", log, raise_on_cancel=True)
    sup = Supervisor("root", [counter_spec, probe.spec(), rude.spec()])
    scope = trio.CancelScope()

    async def run_in_scope(*, task_status: trio.TaskStatus[Supervisor]) -> None:
        with scope:
            await sup.run(task_status=task_status)

    async with trio.open_nursery() as nursery:
        await nursery.start(run_in_scope)
        scope.cancel()
    assert scope.cancelled_caught  # Cancelled reached the scope: nobody swallowed it
    assert (probe.starts, rude.starts, ref.statistics().restarts) == (1, 1, 0)
    assert "probe cancelled" in log and "rude cancelled" in log
    assert not sup.statistics().running and not sup.statistics().children
    assert not ref.stopping  # a cancelled supervisor may be run again


@pytest.mark.parametrize(
    ("policy", "order", "restarted"),
    [
        (Restart.PERMANENT, "return", True),
        (Restart.PERMANENT, "raise", True),
        (Restart.TRANSIENT, "return", False),
        (Restart.TRANSIENT, "raise", True),
        (Restart.TEMPORARY, "return", False),
        (Restart.TEMPORARY, "raise", False),
    ],
)
async def test_restart_policies(policy: Restart, order: Order, restarted: bool) -> None:
    probe = Probe("probe")
    sup = Supervisor("root")
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        assert await sup.start_child(probe.spec(policy)) is probe
        probe.order(order)
        with trio.fail_after(1):
            await probe.wait_until(lambda probe: probe.exits == 1)
        await trio.testing.wait_all_tasks_blocked()
        assert probe.starts == (2 if restarted else 1)
        assert ("probe" in sup.statistics().children) is restarted
        sup.stop()


async def test_a_permanent_actor_that_closes_its_mailbox_is_finished() -> None:
    finished = trio.Event()
    ref = ActorRef[Msg]("quitter", capacity=4)
    sup = Supervisor("root")
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await sup.start_child(actor_spec(ref, Counter, on_exit=finished.set))
        await ref.tell(Quit())
        with trio.fail_after(1):
            await finished.wait()
        assert "quitter" not in sup.statistics().children
        assert ref.statistics().restarts == 0
        sup.stop()


async def test_dynamic_children_start_stop_and_clean_up() -> None:
    exits: list[str] = []
    log: list[str] = []
    sup = Supervisor("root")
    ref = ActorRef[Msg]("runner:1", capacity=4)
    spec = actor_spec(
        ref,
        lambda ref: Counter(ref, log),
        restart=Restart.TRANSIENT,
        on_exit=lambda: exits.append("runner:1"),
    )
    with pytest.raises(SupervisorNotRunning):
        await sup.start_child(spec)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        assert await sup.start_child(spec) is ref
        assert sup.child("runner:1") is ref
        with pytest.raises(ValueError, match="already has a child"):
            await sup.start_child(spec)
        await ref.tell(Add(4))
        assert await sup.stop_child("runner:1")
        assert log[-1] == "runner:1 drained 4" and exits == ["runner:1"]
        assert not await sup.stop_child("runner:1")
        assert "runner:1" not in sup.statistics().children

        def broken(ref: ActorRef[Msg]) -> Counter:
            raise Boom("cannot start")

        other = ActorRef[Msg]("runner:2", capacity=4)
        with pytest.raises(Boom):
            await sup.start_child(
                actor_spec(other, broken, on_exit=lambda: exits.append("runner:2"))
            )
        assert exits == ["runner:1", "runner:2"] and other.stopping
        sup.stop()


class Unreachable(Exception):
    """What any dependency may raise: the kernel knows it only by its ``outage`` flag."""

    outage = True


async def test_any_exception_marked_as_an_outage_backs_off_even_inside_a_group(
    autojump_clock: trio.testing.MockClock,
) -> None:
    crashes = 0

    async def flaky(*, task_status: trio.TaskStatus[Probe]) -> None:
        nonlocal crashes
        task_status.started(probe)
        await trio.sleep(1)
        if crashes < 6:
            crashes += 1
            raise ExceptionGroup("several", [Boom("x"), Unreachable()])
        await trio.sleep_forever()

    probe = Probe("flaky")
    sup = Supervisor("root", [ChildSpec(id="flaky", start=flaky)], max_restarts=1, period=1000)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(60)
        assert crashes == 6 and sup.statistics().escalations == 0
        sup.stop()


REQUEST = contextvars.ContextVar[str | None]("request", default=None)
TENANT = contextvars.ContextVar[str]("tenant")


async def test_a_child_runs_in_its_supervisors_context_not_in_its_starters() -> None:
    seen: list[tuple[str | None, str]] = []

    async def child(*, task_status: trio.TaskStatus[Probe]) -> None:
        seen.append((REQUEST.get(), TENANT.get("unset")))
        task_status.started(probe)
        await trio.sleep_forever()

    probe = Probe("child")
    TENANT.set("daemon")
    sup = Supervisor("root")
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)

        async def serve_request() -> None:
            REQUEST.set("req-1")  # a request starts a child that outlives it
            TENANT.set("request's")
            await sup.start_child(ChildSpec(id="child", start=child))

        async with trio.open_nursery() as requests:
            requests.start_soon(serve_request)
        assert seen == [(None, "daemon")]
        sup.stop()


async def test_children_start_in_order_each_after_the_previous_started() -> None:
    log: list[str] = []
    specs = [counter(name, log)[1] for name in ("a", "b", "c")]
    sup = Supervisor("root", specs)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        assert log == ["a begin", "a end", "b begin", "b end", "c begin", "c end"]
        assert list(sup.statistics().children) == ["a", "b", "c"]
        sup.stop()


async def test_statistics_report_mailbox_depth_and_restarts() -> None:
    ref, spec = counter("counter")
    sup = Supervisor("root", [spec])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        gate = trio.Event()
        await ref.tell(Hold(gate))
        await ref.tell(Add(1))
        await ref.tell(Add(2))
        await trio.testing.wait_all_tasks_blocked()
        child = sup.statistics().children["counter"]
        assert isinstance(child.details, ActorStatistics)
        assert (child.details.mailbox_depth, child.details.mailbox_capacity) == (2, 16)
        assert (child.running, child.restarts, child.restart) == (True, 0, Restart.PERMANENT)
        gate.set()
        sup.stop()


def test_specs_are_validated() -> None:
    probe = Probe("probe")
    with pytest.raises(ValueError, match="grace"):
        ChildSpec(id="probe", start=probe.run, grace=math.inf)
    with pytest.raises(ValueError, match="duplicate"):
        Supervisor("root", [probe.spec(), probe.spec()])
