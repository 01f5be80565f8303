"""Runner leases: ``last_seen`` reaches PostgreSQL in batches, and at stop."""

from __future__ import annotations

from pathlib import Path

import trio

from oore.domain.runners import RunnerStatus
from oore.scheduling import SchedulingConfig
from oore.store import Store
from tests.scheduling.kit import BOUND, runners, runtime

RUNNERS = 40


async def last_seen(store: Store, ids: list[str]) -> list[int | None]:
    found = [await store.runners.get(runner_id) for runner_id in ids]
    return [None if r is None else r.last_heartbeat_at for r in found]


async def test_last_seen_is_written_at_stop_in_one_statement(store: Store, tmp_path: Path) -> None:
    fleet = [r.id for r in await runners(store, RUNNERS)]
    config = SchedulingConfig(last_seen_every=3600)
    async with runtime(store, tmp_path, config) as rt:
        leases = rt.scheduling.leases
        for _ in range(3):
            for runner_id in fleet:
                await rt.scheduling.runner_seen(runner_id)
        assert await last_seen(store, fleet) == [None] * RUNNERS  # not one write per call
    assert None not in await last_seen(store, fleet)
    assert leases.flushes == 1


async def test_last_seen_is_written_every_interval(store: Store, tmp_path: Path) -> None:
    fleet = [r.id for r in await runners(store, RUNNERS)]
    config = SchedulingConfig(last_seen_every=0.2)
    async with runtime(store, tmp_path, config) as rt:
        for runner_id in fleet:
            await rt.scheduling.runner_seen(runner_id)
        with trio.fail_after(BOUND):
            while None in await last_seen(store, fleet):  # noqa: ASYNC110 (a database poll)
                await trio.sleep(0.05)
        assert rt.scheduling.leases.flushes >= 1


async def test_a_heartbeat_that_changes_nothing_is_not_committed(
    store: Store, tmp_path: Path
) -> None:
    [runner] = await runners(store, 1)
    async with runtime(store, tmp_path, SchedulingConfig()) as rt:
        scheduling = rt.scheduling
        await scheduling.heartbeat(runner.id, RunnerStatus.ONLINE, {"os": "linux"})
        online = await store.runners.get(runner.id)
        assert online is not None and online.status is RunnerStatus.ONLINE  # before answering
        committed = scheduling.heartbeats.statistics().rows
        for _ in range(5):
            await scheduling.heartbeat(runner.id, RunnerStatus.ONLINE, {"os": "linux"})
        assert scheduling.heartbeats.statistics().rows == committed
        await scheduling.heartbeat(runner.id, RunnerStatus.BUSY, None)
        busy = await store.runners.get(runner.id)
        assert busy is not None and busy.status is RunnerStatus.BUSY
