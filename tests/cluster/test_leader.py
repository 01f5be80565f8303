"""Leadership: one daemon of several holds the maintenance lease and runs the duties;
when it stops or dies, another takes over."""

from __future__ import annotations

import trio

from oore.cluster import Leadership
from oore.cluster.leader import DUTIES
from oore.store import Store, open_store
from tests.scheduling.kit import BOUND, until

LEASE = 0.6


class Duties:
    def __init__(self) -> None:
        self.running = 0
        self.started = 0

    async def __call__(self) -> None:
        self.running += 1
        self.started += 1
        try:
            await trio.sleep_forever()
        finally:
            self.running -= 1


async def test_one_daemon_leads_and_another_takes_over_when_it_stops(
    database_url: str, store: Store
) -> None:
    duties = [Duties(), Duties(), Duties()]
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            scopes = []
            leaders = []
            for i, work in enumerate(duties):
                leader = Leadership(store, f"daemon-{i}", work, lease=LEASE)
                scope = trio.CancelScope()
                leaders.append(leader)
                scopes.append(scope)
                nursery.start_soon(_within, scope, leader.run)
            await until(lambda: sum(d.running for d in duties) == 1)
            await trio.sleep(LEASE * 3)  # renewals keep it where it is
            assert sum(d.running for d in duties) == 1
            assert sum(d.started for d in duties) == 1
            first = next(i for i, d in enumerate(duties) if d.running)
            assert leaders[first].leading
            assert await store.cluster.lease_holder(DUTIES) == f"daemon-{first}"

            scopes[first].cancel()  # it stops, giving the lease up
            await until(lambda: duties[first].running == 0)
            await until(lambda: sum(d.running for d in duties) == 1)
            second = next(i for i, d in enumerate(duties) if d.running)
            assert second != first
            assert await store.cluster.lease_holder(DUTIES) == f"daemon-{second}"
            nursery.cancel_scope.cancel()


async def test_a_dead_leader_is_replaced_once_its_lease_runs_out(
    database_url: str, store: Store
) -> None:
    # A daemon that dies gives nothing up: its row stays until it runs out.
    assert await store.cluster.hold_lease(DUTIES, "dead", LEASE)
    assert not await store.cluster.hold_lease(DUTIES, "alive", LEASE)
    work = Duties()
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(Leadership(store, "alive", work, lease=LEASE).run)
            await until(lambda: work.running == 1)
            assert await store.cluster.lease_holder(DUTIES) == "alive"
            nursery.cancel_scope.cancel()


async def test_a_leader_that_cannot_renew_steps_down(database_url: str) -> None:
    work = Duties()
    with trio.fail_after(BOUND):
        async with open_store(database_url, pool_size=2) as store:
            leader = Leadership(store, "cut-off", work, lease=LEASE)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(leader.run)
                await until(lambda: work.running == 1)
                # From now on its renewals fail, as when the database cannot be reached.
                store.db._down_since = trio.current_time()
                await until(lambda: work.running == 0)
                assert not leader.leading
                store.db._down_since = None
                await until(lambda: work.running == 1)
                nursery.cancel_scope.cancel()


async def _within(scope: trio.CancelScope, run: object) -> None:
    with scope:
        await run()  # type: ignore[operator]
