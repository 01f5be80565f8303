"""Two daemons on one database: a build queued through one is claimed by a runner parked
on the other, a cancel through one answers the runner watching on the other, and a
backlog drained through both gives every build to exactly one runner."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from oore.domain.builds import BuildStatus
from oore.runtime import Runtime
from oore.scheduling import Job, SchedulingConfig
from oore.store import open_store
from tests.scheduling.kit import BOUND, runners, runtime, until, world


@asynccontextmanager
async def daemon(url: str, tmp_path: Path, name: str) -> AsyncIterator[Runtime]:
    async with (
        open_store(url, pool_size=4) as store,
        runtime(store, tmp_path / name, SchedulingConfig()) as rt,
    ):
        await until(lambda: rt.notices.listening)
        yield rt


async def test_a_build_queued_on_one_daemon_goes_to_a_runner_parked_on_another(
    database_url: str, tmp_path: Path
) -> None:
    with trio.fail_after(BOUND):
        async with (
            daemon(database_url, tmp_path, "a") as a,
            daemon(database_url, tmp_path, "b") as b,
        ):
            w = await world(a.scheduling.store)
            [runner] = await runners(a.scheduling.store, 1)
            got: list[Job | None] = []

            async def park() -> None:
                got.append(await b.scheduling.claim(runner, 60))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(park)
                await until(lambda: b.scheduling.depth()[1] == 1)
                build = await a.scheduling.queue(w.build())
            assert build is not None and build.status is BuildStatus.QUEUED
            [job] = got
            assert job is not None and job.build.id == build.id
            assert job.build.runner_id == runner.id
            # The daemon that queued it hears it was claimed: it leaves its index.
            await until(lambda: a.scheduling.depth()[0] == 0)


async def test_a_cancel_through_one_daemon_answers_the_runner_watching_on_another(
    database_url: str, tmp_path: Path
) -> None:
    with trio.fail_after(BOUND):
        async with (
            daemon(database_url, tmp_path, "a") as a,
            daemon(database_url, tmp_path, "b") as b,
        ):
            w = await world(a.scheduling.store)
            [runner] = await runners(a.scheduling.store, 1)
            await b.scheduling.queue(w.build())
            job = await b.scheduling.claim(runner, 5)
            assert job is not None
            running, _ = await b.scheduling.report(runner.id, job.build, BuildStatus.RUNNING)
            heard: list[BuildStatus] = []

            async def watch() -> None:
                heard.append((await b.scheduling.job_state(running, 60)).status)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                await until(lambda: b.scheduling.builds.watching(running.id) == 1)
                current = await a.scheduling.store.builds.get(running.id)
                assert current is not None
                await a.scheduling.cancel(current, actor="user:o", reason="canceled by user")
            assert heard == [BuildStatus.CANCELED]


async def test_a_backlog_drained_through_two_daemons_gives_each_build_once(
    database_url: str, tmp_path: Path
) -> None:
    builds = 400
    with trio.fail_after(BOUND * 2):
        async with (
            daemon(database_url, tmp_path, "a") as a,
            daemon(database_url, tmp_path, "b") as b,
        ):
            store = a.scheduling.store
            w = await world(store)
            for _ in range(builds):
                await a.scheduling.queue(w.build())
            fleet = await runners(store, 16, slots=64)
            claimed: Counter[str] = Counter()
            through: Counter[str] = Counter()

            async def drain(rt: Runtime, name: str, runner_index: int) -> None:
                runner = fleet[runner_index]
                while True:
                    job = await rt.scheduling.claim(runner, 0.5)
                    if job is None:
                        return
                    claimed[job.build.id] += 1
                    through[name] += 1

            async with trio.open_nursery() as nursery:
                for i in range(16):
                    rt, name = (a, "a") if i % 2 else (b, "b")
                    nursery.start_soon(drain, rt, name, i)
            assert len(claimed) == builds
            assert set(claimed.values()) == {1}
            assert through["a"] > 0 and through["b"] > 0
            assert await store.builds.queued() == []
