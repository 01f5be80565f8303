"""Builds: trigger, claim, report, cancel, rerun, labels, long polls and lost runners."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from oore.domain.users import Role
from oore.services.scheduling import SchedulingConfig
from tests.http.builds_kit import Setup, eventually, make_setup, repo, setup
from tests.http.conftest import Api, UserFactory

__all__ = ["repo", "setup"]

LEASE = 0.5


@pytest.fixture
def scheduling_config() -> SchedulingConfig:
    return SchedulingConfig(runner_lease=LEASE)


async def test_a_triggered_build_is_queued_with_a_snapshot(setup: Setup, repo: Path) -> None:
    build = await setup.trigger(branch="main", platforms=["ios"], changelog="fixes")
    assert build["status"] == "queued"
    assert build["build_number"] == 1
    assert build["trigger_type"] == "manual"
    assert build["trigger_actor"] == "owner@local"
    assert build["commit_sha"] == setup.head
    assert build["branch"] == build["trigger_ref"] == "main"
    snapshot = build["config_snapshot"]
    assert snapshot["snapshot_version"] == 2
    assert snapshot["repo_url"] == str(repo)
    assert snapshot["selected_platforms"] == ["ios"]
    assert snapshot["ui_execution_config"]["commands"]["build"] == ["true"]
    second = await setup.trigger()
    assert second["build_number"] == 2
    assert second["branch"] == "main"  # the project's default branch
    detail = await setup.build(build["id"])
    assert [e["to_status"] for e in detail["events"]] == ["queued"]
    assert detail["events"][0]["reason"] == "build created"
    assert detail["build"]["context"]["pipeline_name"] == "ci"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"changelog": "x" * 4001}, 400, "invalid_input"),
        ({"branch": "nope"}, 400, "invalid_ref"),
        ({"platforms": []}, 400, "invalid_input"),
        ({"platforms": ["macos"]}, 400, "invalid_input"),
        ({"platforms": ["ios", "ios"]}, 400, "invalid_input"),
        ({"pipeline_id": "00000000-0000-4000-8000-000000000000"}, 404, "not_found"),
        ({"pipeline_id": 7}, 400, "invalid_request"),
    ],
)
async def test_trigger_refuses_bad_requests(
    setup: Setup, body: dict[str, Any], status: int, code: str
) -> None:
    reply = await setup.api.post(
        f"/v1/projects/{setup.project_id}/builds",
        json={"pipeline_id": setup.pipeline_id, **body},
        token=setup.token,
    )
    assert (reply.status, reply.code) == (status, code)


async def test_a_claimed_build_runs_to_success(setup: Setup) -> None:
    build = await setup.trigger()
    runner = await setup.runner()
    job = await runner.claim()
    assert job is not None
    assert (job["build_id"], job["build_number"], job["commit_sha"]) == (
        build["id"],
        1,
        setup.head,
    )
    assert len(job["signing_token"]) == 64 and job["attempt"] == 1
    assert await runner.claim() is None
    running = await runner.report(build["id"], "running")
    assert running.status == 200 and running.body["build"]["status"] == "running"
    state = await runner.job(build["id"])
    assert state.body == {"status": "running"}
    step = {
        "name": "build[0]",
        "status": "succeeded",
        "exit_code": 0,
        "started_at": 1,
        "finished_at": 2,
        "duration_ms": 1000,
    }
    done = await runner.report(build["id"], "succeeded", exit_code=0, steps=[step])
    assert done.status == 200, done.body
    assert done.body["build"]["status"] == "succeeded"
    assert done.body["build"]["step_results"] == [step]
    assert "runner_id" not in done.body["build"]
    events = [(e.get("from_status"), e["to_status"]) for e in done.body["events"]]
    assert events == [
        (None, "queued"),
        ("queued", "scheduled"),
        ("scheduled", "assigned"),
        ("assigned", "running"),
        ("running", "succeeded"),
    ]
    after = await runner.job(build["id"])
    assert (after.status, after.code) == (403, "runner_mismatch")
    late = await runner.report(build["id"], "failed")
    assert (late.status, late.code) == (403, "runner_mismatch")


async def test_runner_reports_are_checked(setup: Setup) -> None:
    build = await setup.trigger()
    runner = await setup.runner("a")
    other = await setup.runner("b")
    await runner.claim()
    cases = [
        (runner, "exploded", 400, "invalid_status"),
        (runner, "canceled", 400, "invalid_runner_status"),
        (runner, "succeeded", 409, "invalid_transition"),
        (other, "running", 403, "runner_mismatch"),
    ]
    for who, status, code_status, code in cases:
        reply = await who.report(build["id"], status)
        assert (reply.status, reply.code) == (code_status, code), status
    missing = await runner.report("00000000-0000-4000-8000-000000000000", "running")
    assert (missing.status, missing.code) == (404, "not_found")
    first = await runner.report(build["id"], "running")
    repeated = await runner.report(build["id"], "running")
    assert first.status == repeated.status == 200
    # A repeat whose first answer was lost is acknowledged, not recorded twice.
    assert [e["to_status"] for e in repeated.body["events"]].count("running") == 1


async def test_cancel_a_queued_build_and_refuse_a_finished_one(setup: Setup) -> None:
    build = await setup.trigger()
    canceled = await setup.api.post(f"/v1/builds/{build['id']}/cancel", token=setup.token)
    assert canceled.status == 200 and canceled.body["build"]["status"] == "canceled"
    again = await setup.api.post(f"/v1/builds/{build['id']}/cancel", token=setup.token)
    assert (again.status, again.code) == (409, "invalid_transition")
    runner = await setup.runner()
    assert await runner.claim() is None


async def test_a_cancel_reaches_a_waiting_job_poll_at_once(setup: Setup) -> None:
    build = await setup.trigger()
    runner = await setup.runner()
    await runner.claim()
    await runner.report(build["id"], "running")
    answers: list[Any] = []

    async def poll() -> None:
        answers.append(await runner.job(build["id"], wait=30))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            await trio.sleep(0.2)
            assert answers == []
            canceled = await setup.api.post(f"/v1/builds/{build['id']}/cancel", token=setup.token)
            assert canceled.body["build"]["status"] == "canceled"
    assert (answers[0].status, answers[0].code) == (403, "runner_mismatch")
    detail = await setup.build(build["id"])
    assert detail["events"][-1]["actor"] == "owner@local"


async def test_a_parked_claim_gets_a_build_queued_later(setup: Setup) -> None:
    runner = await setup.runner()
    jobs: list[dict[str, Any] | None] = []

    async def claim() -> None:
        jobs.append(await runner.claim(wait=30))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(claim)
            await trio.sleep(0.2)
            build = await setup.trigger()
    assert jobs[0] is not None and jobs[0]["build_id"] == build["id"]


async def test_labels_decide_which_runner_gets_a_build(
    api: Api, owner_token: str, repo: Path
) -> None:
    setup = await make_setup(api, owner_token, repo, runner_labels=["gpu"])
    build = await setup.trigger()
    assert build["runner_labels"] == ["gpu"]
    plain = await setup.runner("plain", labels=["linux"])
    assert await plain.claim() is None
    gpu = await setup.runner("gpu", labels=["gpu", "linux"])
    job = await gpu.claim()
    assert job is not None and job["build_id"] == build["id"]


async def test_max_concurrent_and_drain_limit_what_a_runner_gets(setup: Setup) -> None:
    first = await setup.trigger()
    await setup.trigger()
    runner = await setup.runner(max_concurrent=1)
    assert (await runner.claim())["build_id"] == first["id"]  # type: ignore[index]
    assert await runner.claim() is None
    await runner.report(first["id"], "running")
    await runner.report(first["id"], "failed", exit_code=2, error_message="tests failed")
    await setup.api.post(f"/v1/runners/{runner.id}/drain", token=setup.token)
    assert await runner.claim() is None
    await setup.api.post(f"/v1/runners/{runner.id}/undrain", token=setup.token)
    assert await runner.claim() is not None
    failed = await setup.build(first["id"])
    assert failed["build"]["exit_code"] == 2
    assert failed["events"][-1]["reason"] == "tests failed"


async def test_a_lost_runner_gives_its_build_back_then_fails_it_after_three_attempts(
    setup: Setup,
) -> None:
    build = await setup.trigger()
    for attempt in (1, 2, 3):
        runner = await setup.runner(f"r{attempt}")
        job = await runner.claim()
        assert job is not None and job["attempt"] == attempt
        await runner.report(build["id"], "running")
        expected = "queued" if attempt < 3 else "failed"
        await eventually(setup, build["id"], expected)
    detail = await setup.build(build["id"])
    assert "runner lost 3 times" in detail["events"][-1]["reason"]
    reasons = [e["reason"] for e in detail["events"] if e["to_status"] == "queued"]
    assert any("requeued for attempt 2" in (r or "") for r in reasons)


async def test_heartbeats_keep_a_runner_and_its_build(setup: Setup) -> None:
    build = await setup.trigger()
    runner = await setup.runner()
    await runner.claim()
    await runner.report(build["id"], "running")
    for _ in range(6):
        await trio.sleep(LEASE / 3)
        beat = await setup.api.post(
            f"/v1/runners/{runner.id}/heartbeat", json={"status": "busy"}, token=runner.token
        )
        assert beat.status == 204
    assert (await setup.build(build["id"]))["build"]["status"] == "running"


async def test_rerun_copies_a_finished_build(setup: Setup) -> None:
    build = await setup.trigger(branch="main")
    early = await setup.api.post(f"/v1/builds/{build['id']}/rerun", token=setup.token)
    assert (early.status, early.code) == (409, "build_not_terminal")
    await setup.api.post(f"/v1/builds/{build['id']}/cancel", token=setup.token)
    rerun = await setup.api.post(f"/v1/builds/{build['id']}/rerun", token=setup.token)
    assert rerun.status == 201
    copy = rerun.body["build"]
    assert copy["source_build_id"] == build["id"]
    assert copy["trigger_event"] == "rerun"
    assert copy["build_number"] == 2
    assert copy["config_snapshot"] == build["config_snapshot"]
    detail = await setup.build(copy["id"])
    assert detail["events"][0]["reason"] == "re-run of build #1"


async def test_cancel_previous_supersedes_older_builds(
    api: Api, owner_token: str, repo: Path
) -> None:
    setup = await make_setup(api, owner_token, repo, concurrency={"cancel_previous": True})
    older = await setup.trigger()
    await setup.trigger()
    detail = await setup.build(older["id"])
    assert detail["build"]["status"] == "canceled"
    assert detail["events"][-1]["reason"] == "superseded by new build"


async def test_log_lines_are_stored_once_in_order_and_cut_to_4096_bytes(setup: Setup) -> None:
    build = await setup.trigger()
    runner = await setup.runner()
    await runner.claim()
    long_line = "é" * 3000  # 6000 bytes
    first = await runner.logs(
        build["id"],
        [
            {"sequence": 1, "content": "second", "stream": "stderr"},
            {"sequence": 0, "content": "first", "stream": "stdout"},
            {"sequence": 2, "content": long_line, "stream": "stdout"},
        ],
    )
    assert first.body == {"appended": 3}
    again = await runner.logs(build["id"], [{"sequence": 0, "content": "x", "stream": "stdout"}])
    assert again.body == {"appended": 0}
    bad = await runner.logs(build["id"], [{"sequence": 5, "content": "x", "stream": "stdin"}])
    assert (bad.status, bad.code) == (400, "invalid_input")
    logs = await setup.api.get(f"/v1/builds/{build['id']}/logs", token=setup.token)
    assert [line["content"][:6] for line in logs.body["logs"]] == ["first", "second", "éééééé"]
    assert len(logs.body["logs"][2]["content"].encode()) == 4096
    assert logs.body["total"] == 3
    after = await setup.api.get(
        f"/v1/builds/{build['id']}/logs?after_sequence=0&limit=1", token=setup.token
    )
    assert [line["sequence"] for line in after.body["logs"]] == [1]
    assert after.body["total"] == 3


async def test_listing_filters_and_pages_stably(setup: Setup) -> None:
    ids = [(await setup.trigger())["id"] for _ in range(5)]
    await setup.api.post(f"/v1/builds/{ids[0]}/cancel", token=setup.token)
    page = await setup.api.get("/v1/builds?limit=2&offset=0", token=setup.token)
    rest = await setup.api.get("/v1/builds?limit=10&offset=2", token=setup.token)
    seen = [b["id"] for b in page.body["builds"] + rest.body["builds"]]
    assert seen == list(reversed(ids)) and page.body["total"] == 5
    canceled = await setup.api.get("/v1/builds?status=canceled,failed", token=setup.token)
    assert [b["id"] for b in canceled.body["builds"]] == [ids[0]]
    for query, code in [
        ("status=bogus", "invalid_input"),
        ("limit=0", "invalid_input"),
        ("offset=-1", "invalid_input"),
        ("sort=size", "invalid_input"),
        ("direction=up", "invalid_input"),
        ("limit=many", "invalid_request"),
    ]:
        reply = await setup.api.get(f"/v1/builds?{query}", token=setup.token)
        assert (reply.status, reply.code) == (400, code), query


async def test_build_access_follows_project_roles(setup: Setup, make_user: UserFactory) -> None:
    build = await setup.trigger()
    outsider = await make_user(Role.DEVELOPER)
    hidden = await setup.api.get(f"/v1/builds/{build['id']}", token=outsider.token)
    assert (hidden.status, hidden.code) == (404, "not_found")
    listed = await setup.api.get("/v1/builds", token=outsider.token)
    assert listed.body == {"builds": [], "total": 0}
    cancel = await setup.api.post(f"/v1/builds/{build['id']}/cancel", token=outsider.token)
    assert (cancel.status, cancel.code) == (404, "not_found")
    assert (await setup.api.get("/v1/builds")).code == "missing_auth"
