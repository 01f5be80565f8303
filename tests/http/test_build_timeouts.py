"""Build deadlines: a build that never starts is requeued, one that runs too long times out."""

from __future__ import annotations

import pytest

from oore.scheduling import SchedulingConfig
from tests.http.builds_kit import Setup, eventually, repo, setup

__all__ = ["repo", "setup"]


@pytest.fixture
def scheduling_config() -> SchedulingConfig:
    return SchedulingConfig(assign_timeout=0.3, build_timeout=0.3, runner_lease=60)


async def test_a_build_that_runs_too_long_times_out(setup: Setup) -> None:
    build = await setup.trigger()
    runner = await setup.runner()
    await runner.claim()
    await runner.report(build["id"], "running")
    await eventually(setup, build["id"], "timed_out")
    detail = await setup.build(build["id"])
    assert detail["events"][-1]["reason"] == "build timeout exceeded"
    assert "finished_at" in detail["build"]
    gone = await runner.job(build["id"])
    assert (gone.status, gone.code) == (403, "runner_mismatch")
    late = await runner.report(build["id"], "succeeded", exit_code=0)
    assert (late.status, late.code) == (403, "runner_mismatch")
    cancel = await setup.api.post(f"/v1/builds/{build['id']}/cancel", token=setup.token)
    assert (cancel.status, cancel.code) == (409, "invalid_transition")
    rerun = await setup.api.post(f"/v1/builds/{build['id']}/rerun", token=setup.token)
    assert rerun.status == 201, rerun.body


async def test_a_claimed_build_that_never_starts_goes_back_to_the_queue(setup: Setup) -> None:
    build = await setup.trigger()
    first = await setup.runner("slow")
    assert await first.claim() is not None
    await eventually(setup, build["id"], "queued")
    second = await setup.runner("fast")
    job = await second.claim()
    assert job is not None and job["build_id"] == build["id"] and job["attempt"] == 2
    late = await first.report(build["id"], "running")
    assert (late.status, late.code) == (403, "runner_mismatch")
