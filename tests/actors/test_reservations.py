"""The reservation timer: sweeps exactly when a reservation falls due, and never idly."""

from __future__ import annotations

import math

import trio
import trio.testing

from oore.actors import Supervisor
from oore.actors.reservations import ReservationTimerHandle, reservation_timer_spec

TTL = 1800.0


class FakeReservations:
    """Pending reservations by trio due time, like the store would answer."""

    def __init__(self, due: list[float]) -> None:
        self.due = sorted(due)
        self.sweeps: list[float] = []
        self.loads = 0

    def reserve(self) -> None:
        self.due.append(trio.current_time() + TTL)

    async def first_due(self) -> float | None:
        self.loads += 1
        return self.due[0] - trio.current_time() if self.due else None

    async def sweep(self) -> float | None:
        now = trio.current_time()
        self.sweeps.append(now)
        self.due = [d for d in self.due if d > now]
        return await self.first_due()


async def start(
    reservations: FakeReservations, nursery: trio.Nursery
) -> tuple[ReservationTimerHandle, Supervisor]:
    handle = ReservationTimerHandle()
    root = Supervisor(
        "root",
        [
            reservation_timer_spec(
                handle, first_due=reservations.first_due, sweep=reservations.sweep
            )
        ],
    )
    await nursery.start(root.run)
    return handle, root


async def test_nothing_pending_means_no_deadline_and_no_sweep(
    autojump_clock: trio.testing.MockClock,
) -> None:
    reservations = FakeReservations([])
    async with trio.open_nursery() as nursery:
        handle, root = await start(reservations, nursery)
        assert await handle.next_sweep() == math.inf
        await trio.sleep(10 * TTL)
        assert reservations.sweeps == [] and reservations.loads == 1
        root.stop()


async def test_reservations_known_at_start_are_swept_when_due(
    autojump_clock: trio.testing.MockClock,
) -> None:
    began = trio.current_time()
    reservations = FakeReservations([began + 100, began + 100, began + 700])
    async with trio.open_nursery() as nursery:
        handle, root = await start(reservations, nursery)
        assert await handle.next_sweep() == 100
        await trio.sleep(1000)
        assert [s - began for s in reservations.sweeps] == [100, 700]
        assert reservations.due == []
        assert await handle.next_sweep() == math.inf
        root.stop()


async def test_a_new_reservation_sets_the_deadline_only_when_it_is_the_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    began = trio.current_time()
    reservations = FakeReservations([])
    async with trio.open_nursery() as nursery:
        handle, root = await start(reservations, nursery)
        reservations.reserve()
        handle.reserved(TTL)
        assert await handle.next_sweep() == TTL
        await trio.sleep(600)
        reservations.reserve()
        handle.reserved(TTL)  # later than the one known: the deadline stays
        assert await handle.next_sweep() == TTL - 600
        await trio.sleep(2 * TTL)
        assert [s - began for s in reservations.sweeps] == [TTL, TTL + 600]
        root.stop()


async def test_a_reservation_told_late_is_swept_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    began = trio.current_time()
    reservations = FakeReservations([])
    async with trio.open_nursery() as nursery:
        handle, root = await start(reservations, nursery)
        handle.reserved(-5)  # already due (the tell was late)
        await trio.sleep(1)
        assert [s - began for s in reservations.sweeps] == [0]
        root.stop()


async def test_a_crashed_timer_restarts_from_the_store(
    autojump_clock: trio.testing.MockClock,
) -> None:
    began = trio.current_time()
    reservations = FakeReservations([began + 50])
    failures = [RuntimeError("database blip")]
    real_sweep = reservations.sweep

    async def flaky_sweep() -> float | None:
        if failures:
            raise failures.pop()
        return await real_sweep()

    reservations.sweep = flaky_sweep  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        _, root = await start(reservations, nursery)
        await trio.sleep(100)
        # The first sweep crashed the timer; its restart loaded the store again and swept.
        assert reservations.loads >= 2
        assert reservations.due == []
        assert root.statistics().children["artifact-reservations"].restarts == 1
        root.stop()
