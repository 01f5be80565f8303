"""Bound builds without a task each: one heap of deadlines, watchers answered at once."""

from __future__ import annotations

from pathlib import Path

import trio

from oore.domain.builds import Build, BuildStatus
from oore.scheduling import Job, SchedulingConfig
from oore.store import Store
from tests.scheduling.kit import BOUND, runners, runtime, until, world

BUILDS = 12


async def test_one_heap_times_out_every_bound_build(store: Store, tmp_path: Path) -> None:
    config = SchedulingConfig(assign_timeout=1, build_timeout=1, runner_lease=600)
    w = await world(store)
    [runner] = await runners(store, 1, slots=BUILDS)
    async with runtime(store, tmp_path, config) as rt:
        scheduling = rt.scheduling
        for _ in range(BUILDS):
            await scheduling.queue(w.build())
        jobs: list[Job] = []
        with trio.fail_after(BOUND):
            # Half are started as soon as they are claimed: their assign timeout (1 s) must
            # not pass first, even on a busy machine; the other half wait it out.
            for number in range(BUILDS):
                job = await scheduling.claim(runner, 0)
                assert job is not None
                jobs.append(job)
                if number < BUILDS // 2:
                    await scheduling.report(runner.id, job.build, BuildStatus.RUNNING)
            started = jobs[: BUILDS // 2]
            ended: dict[str, Build] = {}
            while len(ended) < BUILDS:
                for job in jobs:
                    now = await store.builds.get(job.build.id)
                    assert now is not None
                    if not now.status.active:
                        ended[now.id] = now
                await trio.sleep(0.05)
        assert scheduling.deadlines.fired >= BUILDS
        assert len(scheduling.builds) == 0  # no state left for builds off their runner
    for job in started:
        assert ended[job.build.id].status is BuildStatus.TIMED_OUT
    for job in jobs[BUILDS // 2 :]:
        requeued = ended[job.build.id]
        assert (requeued.status, requeued.attempt) == (BuildStatus.QUEUED, 2)


async def test_a_cancel_answers_a_watching_runner_at_once(store: Store, tmp_path: Path) -> None:
    w = await world(store)
    [runner] = await runners(store, 1)
    async with runtime(store, tmp_path, SchedulingConfig()) as rt:
        scheduling = rt.scheduling
        await scheduling.queue(w.build())
        job = await scheduling.claim(runner, 0)
        assert job is not None
        heard: list[Build] = []

        async def watch() -> None:
            heard.append(await scheduling.job_state(job.build, 60))

        with trio.fail_after(BOUND):  # far below the watch's own 60 s
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                await until(lambda: scheduling.builds.watching(job.build.id) == 1)
                canceled = await scheduling.cancel(job.build, actor="o@example.com", reason="no")
        assert canceled.status is BuildStatus.CANCELED
        assert [b.status for b in heard] == [BuildStatus.CANCELED]


async def test_a_lost_runners_builds_are_requeued_by_the_lease_heap(
    store: Store, tmp_path: Path
) -> None:
    w = await world(store)
    lost, alive = await runners(store, 2)
    config = SchedulingConfig(runner_lease=0.5)
    async with runtime(store, tmp_path, config) as rt:
        scheduling = rt.scheduling
        await scheduling.queue(w.build())
        job = await scheduling.claim(lost, 0)
        assert job is not None
        with trio.fail_after(BOUND):
            while True:
                build = await store.builds.get(job.build.id)
                assert build is not None
                if build.status is BuildStatus.QUEUED:
                    break
                await scheduling.runner_seen(alive.id)  # the other runner keeps calling
                await trio.sleep(0.05)
            again = await scheduling.claim(alive, BOUND)
        assert again is not None and again.build.id == job.build.id
        assert again.build.attempt == 2
        gone = await store.runners.get(lost.id)
        assert gone is not None and gone.status.value == "offline"
        assert scheduling.leases.lost >= 1


async def test_a_restart_recovers_deadlines_and_leases(store: Store, tmp_path: Path) -> None:
    w = await world(store)
    holder, idle = await runners(store, 2)
    async with runtime(store, tmp_path, SchedulingConfig()) as rt:
        await rt.scheduling.queue(w.build())
        job = await rt.scheduling.claim(holder, 0)
        assert job is not None
        await rt.scheduling.runner_seen(idle.id)
    async with runtime(store, tmp_path, SchedulingConfig()) as rt:
        scheduling = rt.scheduling
        assert scheduling.deadlines.armed(job.build.id) is not None
        assert scheduling.leases.expires_in(holder.id) is not None  # a fresh lease
        assert scheduling.leases.expires_in(idle.id) is None  # holds nothing: no lease yet
        # The held count came back too: the holder (one slot) gets nothing more.
        await scheduling.queue(w.build())
        assert await scheduling.claim(holder, 0) is None
        again = await scheduling.claim(idle, 0)
        assert again is not None


async def test_a_change_read_before_a_report_here_does_not_undo_it(
    store: Store, tmp_path: Path
) -> None:
    """Another daemon's notice makes this one read the build and apply what it read. A
    runner's report committed here between that read and its application must stand: the
    build is read again under the build's lock (before, the stale read moved the build
    back to assigned here, and the runner's next report was refused with 409)."""
    w = await world(store)
    [runner] = await runners(store, 1)
    async with runtime(store, tmp_path, SchedulingConfig()) as rt:
        scheduling = rt.scheduling
        with trio.fail_after(BOUND):
            await scheduling.queue(w.build())
            job = await scheduling.claim(runner, 0)
            assert job is not None and job.build.status is BuildStatus.ASSIGNED
            read_before = await store.builds.get(job.build.id)
            assert read_before is not None
            running, events = await scheduling.report(runner.id, job.build, BuildStatus.RUNNING)
            # the events come with the report, the new one last
            assert [e.to_status for e in events][-2:] == [BuildStatus.ASSIGNED, BuildStatus.RUNNING]
            await scheduling.builds.refresh(read_before)
            assert scheduling.builds.status_of(job.build.id) is BuildStatus.RUNNING
            done, _ = await scheduling.report(
                runner.id, running, BuildStatus.SUCCEEDED, exit_code=0
            )
            assert done.status is BuildStatus.SUCCEEDED
