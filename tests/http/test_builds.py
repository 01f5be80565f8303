"""Builds: trigger, claim, report, cancel, rerun, labels, long polls and lost runners."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from oore.domain.builds import Build, BuildStatus, Transition
from oore.domain.users import Role
from oore.eventlog import event_of
from oore.scheduling import SchedulingConfig
from oore.services.git import resolve_commit
from oore.store import Store
from oore.store.projects import NewProject, ProjectChanges
from tests.http.builds_kit import Setup, eventually, git, make_setup, repo, setup
from tests.http.conftest import Api, FakeClock, UserFactory
from tests.http.test_projects import CALLERS, add_build, add_member

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


async def test_the_runner_of_a_canceled_build_hears_who_canceled_it(setup: Setup) -> None:
    build = await setup.trigger()
    runner = await setup.runner("holder")
    other = await setup.runner("other")
    await runner.claim()
    await runner.report(build["id"], "running")
    await setup.api.post(f"/v1/builds/{build['id']}/cancel", token=setup.token)
    for reply in (await runner.job(build["id"]), await runner.report(build["id"], "failed")):
        assert (reply.status, reply.code) == (403, "runner_mismatch")
        assert reply.body["error"] == "The build was canceled by owner@local"
        assert reply.body["details"] == "canceled"
    stranger = await other.job(build["id"])
    assert (stranger.status, stranger.code) == (403, "runner_mismatch")
    assert "canceled" not in stranger.body["error"] and "details" not in stranger.body


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


async def test_a_runner_is_judged_by_its_current_record_not_a_remembered_one(
    setup: Setup,
) -> None:
    # Each change lands after the runner has made calls (so its token is remembered).
    build = await setup.trigger()
    runner = await setup.runner(labels=["linux"])
    assert await runner.claim() is not None
    await runner.report(build["id"], "running")
    await runner.report(build["id"], "succeeded", exit_code=0)
    beat = f"/v1/runners/{runner.id}/heartbeat"
    reply = await setup.api.post(beat, json={"status": "draining"}, token=runner.token)
    assert reply.status == 204
    await setup.trigger()
    assert await runner.claim() is None
    reply = await setup.api.post(beat, json={"status": "online"}, token=runner.token)
    assert reply.status == 204
    second = await runner.claim()
    assert second is not None
    await runner.report(second["build_id"], "running")
    await runner.report(second["build_id"], "succeeded", exit_code=0)
    renamed = await setup.api.call(
        "PATCH", f"/v1/runners/{runner.id}", json={"max_concurrent": 2}, token=setup.token
    )
    assert renamed.body["runner"]["max_concurrent"] == 2
    await setup.trigger()
    await setup.trigger()
    assert await runner.claim() is not None
    assert await runner.claim() is not None


async def test_a_deleted_runner_token_stops_working_at_once(setup: Setup) -> None:
    runner = await setup.runner()
    assert await runner.claim() is None
    gone = await setup.api.call("DELETE", f"/v1/runners/{runner.id}", token=setup.token)
    assert gone.status == 204
    reply = await setup.api.post(
        f"/v1/runners/{runner.id}/claim",
        json={"protocol_version": 4, "wait_seconds": 0},
        token=runner.token,
    )
    assert (reply.status, reply.code) == (401, "invalid_token")


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


# -- documented errors, one table per endpoint group ---------------------------------------------

MISSING = "00000000-0000-4000-8000-000000000000"


async def test_every_route_needs_a_live_session(
    setup: Setup, refused_sessions: list[tuple[str | None, str]]
) -> None:
    build = await setup.trigger()
    calls: list[tuple[str, str, Any]] = [
        ("POST", f"/v1/projects/{setup.project_id}/builds", {"pipeline_id": setup.pipeline_id}),
        ("GET", "/v1/builds", None),
        ("GET", f"/v1/builds/{build['id']}", None),
        ("POST", f"/v1/builds/{build['id']}/cancel", None),
        ("POST", f"/v1/builds/{build['id']}/rerun", None),
    ]
    for method, path, body in calls:
        for token, code in refused_sessions:
            reply = await setup.api.call(method, path, json=body, token=token)
            assert (reply.status, reply.code) == (401, code), (method, path, token)
    listed = await setup.api.get("/v1/builds", token=setup.token)
    assert [b["status"] for b in listed.body["builds"]] == ["queued"]


# Expected statuses per caller, in CALLERS order (owner, admin, dev maintainer, dev developer,
# dev viewer, dev not a member, qa viewer, no token).
BUILD_RBAC: list[tuple[str, list[int]]] = [
    ("get", [200, 200, 200, 200, 200, 404, 200, 401]),
    ("trigger", [201, 201, 201, 201, 403, 404, 403, 401]),
    ("cancel", [200, 200, 200, 200, 403, 404, 403, 401]),
    ("rerun", [201, 201, 201, 201, 403, 404, 403, 401]),
]


@pytest.mark.parametrize("who", list(CALLERS))
async def test_build_permissions(setup: Setup, make_user: UserFactory, who: str) -> None:
    role, membership = CALLERS[who]
    waiting = await setup.trigger()
    finished = await setup.trigger()
    await setup.api.post(f"/v1/builds/{finished['id']}/cancel", token=setup.token)
    token: str | None = setup.token
    if role is None:
        token = None
    elif role is not Role.OWNER:
        user = await make_user(role)
        token = user.token
        if membership is not None:
            await add_member(setup.api, setup.token, setup.project_id, user.user.id, membership)
    column = list(CALLERS).index(who)
    codes = {401: "missing_auth", 403: "permission_denied", 404: "not_found"}
    for action, statuses in BUILD_RBAC:
        expected = statuses[column]
        if action == "get":
            reply = await setup.api.get(f"/v1/builds/{waiting['id']}", token=token)
        elif action == "trigger":
            reply = await setup.api.post(
                f"/v1/projects/{setup.project_id}/builds",
                json={"pipeline_id": setup.pipeline_id},
                token=token,
            )
        elif action == "cancel":
            reply = await setup.api.post(f"/v1/builds/{waiting['id']}/cancel", token=token)
        else:
            reply = await setup.api.post(f"/v1/builds/{finished['id']}/rerun", token=token)
        assert reply.status == expected, (action, reply.body)
        if expected in codes:
            assert reply.code == codes[expected], (action, reply.body)
    status = (await setup.build(waiting["id"]))["build"]["status"]
    assert status == ("canceled" if BUILD_RBAC[2][1][column] == 200 else "queued")


async def test_unknown_builds_and_projects_are_not_found(setup: Setup) -> None:
    mine = await setup.api.get(f"/v1/projects/{setup.project_id}", token=setup.token)
    other = await setup.api.post(
        "/v1/projects",
        json={"name": "other", "repository_id": mine.body["project"]["repository_id"]},
        token=setup.token,
    )
    assert other.status == 201, other.body
    foreign = await setup.api.post(
        f"/v1/projects/{other.body['project']['id']}/pipelines",
        json={"name": "theirs"},
        token=setup.token,
    )
    cases: list[tuple[str, str, Any]] = [
        ("GET", f"/v1/builds/{MISSING}", None),
        ("GET", "/v1/builds/not-a-uuid", None),
        ("POST", f"/v1/builds/{MISSING}/cancel", None),
        ("POST", f"/v1/builds/{MISSING}/rerun", None),
        ("POST", f"/v1/projects/{MISSING}/builds", {"pipeline_id": setup.pipeline_id}),
        ("POST", "/v1/projects/nope/builds", {"pipeline_id": setup.pipeline_id}),
        # A pipeline of another project is not this project's pipeline.
        (
            "POST",
            f"/v1/projects/{setup.project_id}/builds",
            {"pipeline_id": foreign.body["pipeline"]["id"]},
        ),
    ]
    for method, path, body in cases:
        reply = await setup.api.call(method, path, json=body, token=setup.token)
        assert (reply.status, reply.code) == (404, "not_found"), (method, path, reply.body)
    # The changelog limit is checked before the project is looked up.
    long = await setup.api.post(
        f"/v1/projects/{MISSING}/builds",
        json={"pipeline_id": setup.pipeline_id, "changelog": "x" * 4001},
        token=setup.token,
    )
    assert (long.status, long.code) == (400, "invalid_input")


async def test_too_many_status_values_are_refused(setup: Setup) -> None:
    await setup.trigger()
    ten = ",".join([*(status.value for status in BuildStatus), "lost"])
    reply = await setup.api.get(f"/v1/builds?status={ten}", token=setup.token)
    assert (reply.status, reply.code) == (400, "invalid_input")
    commas = await setup.api.get("/v1/builds?status=,,", token=setup.token)
    assert commas.status == 200 and commas.body["total"] == 0
    nine = ",".join(status.value for status in BuildStatus)
    everything = await setup.api.get(f"/v1/builds?status={nine}", token=setup.token)
    assert everything.body["total"] == 1


async def test_a_trigger_needs_a_branch_when_the_project_has_no_default(
    api: Api, owner_token: str, repo: Path
) -> None:
    git(repo, "checkout", "-q", "--detach")
    setup = await make_setup(api, owner_token, repo)
    path = f"/v1/projects/{setup.project_id}/builds"
    no_branch = await api.post(path, json={"pipeline_id": setup.pipeline_id}, token=owner_token)
    assert (no_branch.status, no_branch.code) == (400, "invalid_input")
    blank = await api.post(
        path, json={"pipeline_id": setup.pipeline_id, "branch": "  "}, token=owner_token
    )
    assert (blank.status, blank.code) == (400, "invalid_input")
    by_commit = await setup.trigger(commit_sha=setup.head)
    assert (by_commit["commit_sha"], by_commit.get("branch")) == (setup.head, None)


async def test_a_repository_git_cannot_read_is_a_git_error(setup: Setup, repo: Path) -> None:
    shutil.rmtree(repo)
    reply = await setup.api.post(
        f"/v1/projects/{setup.project_id}/builds",
        json={"pipeline_id": setup.pipeline_id, "branch": "main"},
        token=setup.token,
    )
    assert (reply.status, reply.code) == (500, "git_error")
    # A given commit is not verified, so git is not needed then.
    assert (await setup.trigger(commit_sha="a" * 40))["commit_sha"] == "a" * 40


async def test_a_project_without_a_source_cannot_build(
    setup: Setup, store: Store, clock: FakeClock
) -> None:
    me = (await setup.api.get("/v1/users/me", token=setup.token)).body["user"]
    bare = await store.projects.create(
        NewProject(
            name="orphan",
            description=None,
            repository_id=None,
            default_branch="main",
            created_by=me["id"],
            now=clock.now(),
        )
    )
    pipeline = await setup.api.post(
        f"/v1/projects/{bare.id}/pipelines", json={"name": "ci"}, token=setup.token
    )
    assert pipeline.status == 201, pipeline.body
    reply = await setup.api.post(
        f"/v1/projects/{bare.id}/builds",
        json={"pipeline_id": pipeline.body["pipeline"]["id"], "commit_sha": "a" * 40},
        token=setup.token,
    )
    assert (reply.status, reply.code) == (409, "source_not_configured")
    old = await add_build(store, clock, bare.id, status=BuildStatus.CANCELED)
    rerun = await setup.api.post(f"/v1/builds/{old}/rerun", token=setup.token)
    assert (rerun.status, rerun.code) == (409, "source_changed")


@pytest.fixture
def other_repo(repo: Path, tmp_path: Path) -> Path:
    """A second local repository, for a project to be relinked to."""
    path = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(repo), str(path)], check=True)
    return path


async def test_a_source_change_refuses_reruns_of_older_builds(
    setup: Setup, other_repo: Path
) -> None:
    build = await setup.trigger()
    await setup.api.post(f"/v1/builds/{build['id']}/cancel", token=setup.token)
    moved = await make_setup(setup.api, setup.token, other_repo)
    new_source = (await setup.api.get(f"/v1/projects/{moved.project_id}", token=setup.token)).body[
        "project"
    ]["repository_id"]
    relinked = await setup.api.call(
        "PATCH",
        f"/v1/projects/{setup.project_id}",
        json={"repository_id": new_source},
        token=setup.token,
    )
    assert relinked.status == 200, relinked.body
    reply = await setup.api.post(f"/v1/builds/{build['id']}/rerun", token=setup.token)
    assert (reply.status, reply.code) == (409, "source_changed")
    assert (await setup.trigger())["config_snapshot"]["repository_id"] == new_source


async def test_a_source_change_during_a_trigger_is_refused(
    setup: Setup, other_repo: Path, store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    moved = await make_setup(setup.api, setup.token, other_repo)
    new_source = (await setup.api.get(f"/v1/projects/{moved.project_id}", token=setup.token)).body[
        "project"
    ]["repository_id"]

    async def racing(path: str, ref: str) -> str:
        # The source changes after the trigger read the project, before its insert.
        head = await resolve_commit(path, ref)
        await store.projects.update(
            setup.project_id,
            ProjectChanges(repository_id=new_source),
            cancel_reason="test",
            now=clock.now(),
        )
        return head

    monkeypatch.setattr("oore.services.git.resolve_commit", racing)
    reply = await setup.api.post(
        f"/v1/projects/{setup.project_id}/builds",
        json={"pipeline_id": setup.pipeline_id},
        token=setup.token,
    )
    assert (reply.status, reply.code) == (409, "source_changed")
    listed = await setup.api.get(f"/v1/builds?project_id={setup.project_id}", token=setup.token)
    assert listed.body["total"] == 0


async def test_a_cancel_that_keeps_losing_the_race_is_a_conflict(
    setup: Setup, store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = await setup.trigger()
    real = store.builds.transition

    async def racing(t: Transition) -> Build:
        # Every attempt to cancel finds the build moved on since it was read.
        if t.target is BuildStatus.CANCELED:
            current = await store.builds.get(t.build_id)
            assert current is not None
            moved = (
                BuildStatus.SCHEDULED
                if current.status is BuildStatus.QUEUED
                else BuildStatus.QUEUED
            )
            await real(Transition(t.build_id, current.status, moved, "test", "race", clock.now()))
        return await real(t)

    monkeypatch.setattr(store.builds, "transition", racing)
    reply = await setup.api.post(f"/v1/builds/{build['id']}/cancel", token=setup.token)
    assert (reply.status, reply.code) == (409, "concurrent_modification")
    assert (await setup.build(build["id"]))["build"]["status"] in ("queued", "scheduled")


@pytest.mark.parametrize("state", ["assigned", "running"])
async def test_a_canceled_job_is_closed_to_its_runner(setup: Setup, state: str) -> None:
    build = await setup.trigger()
    runner = await setup.runner()
    await runner.claim()
    if state == "running":
        await runner.report(build["id"], "running")
    assert (await setup.build(build["id"]))["build"]["status"] == state
    canceled = await setup.api.post(f"/v1/builds/{build['id']}/cancel", token=setup.token)
    assert (canceled.status, canceled.body["build"]["status"]) == (200, "canceled")
    for reply in (
        await runner.job(build["id"]),
        await runner.report(build["id"], "succeeded", exit_code=0),
        await runner.logs(build["id"], [{"sequence": 0, "content": "x", "stream": "stdout"}]),
    ):
        assert (reply.status, reply.code) == (403, "runner_mismatch")
    assert (await setup.build(build["id"]))["build"]["status"] == "canceled"


@pytest.mark.parametrize("final", ["succeeded", "failed"])
async def test_a_finished_build_cannot_be_canceled_but_can_be_rerun(
    setup: Setup, final: str
) -> None:
    build = await setup.trigger()
    runner = await setup.runner()
    await runner.claim()
    await runner.report(build["id"], "running")
    await runner.report(build["id"], final, exit_code=0 if final == "succeeded" else 1)
    reply = await setup.api.post(f"/v1/builds/{build['id']}/cancel", token=setup.token)
    assert (reply.status, reply.code) == (409, "invalid_transition")
    assert (await setup.build(build["id"]))["build"]["status"] == final
    rerun = await setup.api.post(f"/v1/builds/{build['id']}/rerun", token=setup.token)
    assert rerun.status == 201, rerun.body


async def test_a_queued_build_says_why_no_runner_takes_it(
    api: Api,
    owner_token: str,
    repo: Path,
    clock: FakeClock,
    scheduling_config: SchedulingConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    setup = await make_setup(api, owner_token, repo, runner_labels=["macos", "gpu"])

    async def heartbeat(runner: Any, status: str = "online") -> None:
        beat = await api.post(
            f"/v1/runners/{runner.id}/heartbeat", json={"status": status}, token=runner.token
        )
        assert beat.status == 204, beat.body

    async def reason(build_id: str) -> Any:
        shown = (await setup.build(build_id))["build"]["waiting_reason"]
        [listed] = [
            b
            for b in (await api.get("/v1/builds", token=owner_token)).body["builds"]
            if b["id"] == build_id
        ]
        assert listed["waiting_reason"] == shown
        return shown

    with caplog.at_level("WARNING", logger="oore.scheduling.waiting"):
        build = await setup.trigger()
        nobody = await reason(build["id"])
        assert nobody == {
            "code": "no_runner_online",
            "message": "no runner is online (the build needs the labels gpu, macos)",
        }
        plain = await setup.runner("plain", labels=["linux"])
        await heartbeat(plain)
        assert await reason(build["id"]) == {
            "code": "no_runner_with_labels",
            "message": "no online runner has the labels gpu, macos",
        }
        mac = await setup.runner("mac", labels=["macos", "gpu", "arm64"])
        await heartbeat(mac)
        assert await reason(build["id"]) is None
        drained = await api.post(f"/v1/runners/{mac.id}/drain", token=owner_token)
        assert drained.status == 200
        assert (await reason(build["id"]))["code"] == "no_runner_with_labels"
        await api.post(f"/v1/runners/{mac.id}/undrain", token=owner_token)
        assert await reason(build["id"]) is None
        clock.advance(int(scheduling_config.runner_lease) + 1)  # not heard from since: offline
        assert (await reason(build["id"]))["code"] == "no_runner_online"
    told = [found for r in caplog.records if (found := event_of(r)) and found[0] == "build.waiting"]
    assert [(fields["build_id"], fields["reason"], fields["message"]) for _, fields in told] == [
        (build["id"], nobody["code"], nobody["message"])
    ]
    # Only queued builds wait.
    job = await mac.claim()
    assert job is not None
    assert "waiting_reason" not in (await setup.build(build["id"]))["build"]


async def test_a_queued_build_only_paused_runners_could_take_says_instance_paused(
    api: Api, owner_token: str, repo: Path
) -> None:
    setup = await make_setup(api, owner_token, repo, runner_labels=["xcode"])
    anywhere = await api.post(
        f"/v1/projects/{setup.project_id}/pipelines",
        json={"name": "lint", "execution_config": {"commands": {"build": ["true"]}}},
        token=owner_token,
    )
    assert anywhere.status == 201, anywhere.body

    async def online(name: str, os_name: str, labels: list[str]) -> None:
        runner = await setup.runner(name, labels=labels, capabilities={"os": os_name})
        beat = await api.post(
            f"/v1/runners/{runner.id}/heartbeat", json={"status": "online"}, token=runner.token
        )
        assert beat.status == 204, beat.body

    async def pause(paused: bool) -> None:
        reply = await api.call(
            "PUT",
            "/v1/settings/preferences",
            json={"key_storage_mode": "file", "direct_macos_runner_paused": paused},
            token=owner_token,
        )
        assert reply.status == 200, reply.body

    async def blocked(build_id: str) -> Any:
        shown = (await setup.build(build_id))["build"].get("runner_policy_block_reason")
        [listed] = [
            b
            for b in (await api.get("/v1/builds", token=owner_token)).body["builds"]
            if b["id"] == build_id
        ]
        assert listed.get("runner_policy_block_reason") == shown
        return shown

    await online("mac", "darwin", ["xcode"])
    await online("linux", "linux", [])
    await pause(True)
    xcode = await setup.trigger()
    assert xcode["runner_policy_block_reason"] == "instance_paused"  # the create answer too
    lint = await setup.trigger(pipeline_id=anywhere.body["pipeline"]["id"])
    assert "runner_policy_block_reason" not in lint
    assert await blocked(xcode["id"]) == "instance_paused"
    assert await blocked(lint["id"]) is None  # the Linux runner can take it
    assert (await setup.build(xcode["id"]))["build"]["waiting_reason"] is None
    await online("linux-xcode", "linux", ["xcode"])
    assert await blocked(xcode["id"]) is None  # now a runner the pause spares can
    await pause(False)
    assert await blocked(xcode["id"]) is None
