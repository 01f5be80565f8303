"""The retention cleanup on local storage (contract §4.2, §12): what a run removes, what
it never touches, what it reports, and that its record and schedule survive a restart."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import trio

from oore.domain.crypto import SecretBox
from oore.domain.users import Role
from oore.http.app import create_app
from oore.runtime import Runtime, open_runtime
from oore.scheduling import SchedulingConfig
from oore.services.artifact_storage import ArtifactsConfig
from oore.services.events import EventsConfig
from oore.services.logs import LogConfig
from oore.services.network import NetworkDefaults
from oore.store import Store
from tests.http.artifacts_kit import Job, running_job
from tests.http.builds_kit import Setup, repo, setup
from tests.http.conftest import Api, FakeClock, UserFactory

__all__ = ["repo", "setup"]

DAY = 86400
LAST = "/v1/settings/retention/last-cleanup"


@pytest.fixture
def artifacts_config(tmp_path: Path) -> ArtifactsConfig:
    """Local storage; the daemon runs with OORED_ARTIFACT_TTL_DAYS=1."""
    return ArtifactsConfig(data_dir=tmp_path / "data", secrets=SecretBox(bytes(32)), ttl_days=1)


def on_disk(config: ArtifactsConfig, artifact: dict[str, Any]) -> Path:
    assert config.data_dir is not None
    return config.data_dir / "artifacts" / str(artifact["file_path"])


def lines(start: int, count: int) -> list[dict[str, Any]]:
    return [
        {"sequence": n, "content": f"line {n}", "stream": "stdout"}
        for n in range(start, start + count)
    ]


async def finished(setup: Setup, name: str, data: bytes, log_lines: int = 0) -> tuple[Job, Any]:
    """A build that published one artifact (and logged) and succeeded."""
    job = await running_job(setup, name)
    artifact = await job.publish(f"{name}.apk", data, file_size=len(data))
    if log_lines:
        assert (await job.runner.logs(job.build_id, lines(0, log_lines))).status == 200
    done = await job.runner.report(job.build_id, "succeeded", exit_code=0)
    assert done.status == 200, done.body
    return job, artifact


async def status_of(setup: Setup, build_id: str, token: str) -> int | str:
    reply = await setup.api.get(f"/v1/builds/{build_id}", token=token)
    return reply.body["build"]["status"] if reply.status == 200 else reply.status


async def log_count(setup: Setup, build_id: str, token: str) -> int:
    reply = await setup.api.get(f"/v1/builds/{build_id}/logs", token=token)
    assert reply.status == 200, reply.body
    return len(reply.body["logs"])


async def test_a_run_deletes_what_is_past_its_time_and_nothing_of_a_running_build(
    setup: Setup,
    runtime: Runtime,
    clock: FakeClock,
    make_user: UserFactory,
    artifacts_config: ArtifactsConfig,
) -> None:
    api = setup.api
    saved = await api.call(
        "PUT", "/v1/settings/retention", json={"log_retention_days": 1}, token=setup.token
    )
    assert saved.status == 200, saved.body
    old, old_artifact = await finished(setup, "old", b"old bytes", log_lines=5)
    live = await running_job(setup, "live")
    live_artifact = await live.publish("live.apk", b"live bytes", file_size=10)
    assert (await live.runner.logs(live.build_id, lines(0, 3))).status == 200
    clock.advance(2 * DAY)
    admin = await make_user(Role.ADMIN)  # sessions made before now have expired
    report = await runtime.retention.run()

    assert not on_disk(artifacts_config, old_artifact).exists()
    assert on_disk(artifacts_config, live_artifact).read_bytes() == b"live bytes"
    gone = await old.link(old_artifact["id"], admin.token)
    assert (gone.status, gone.code) == (410, "artifact_expired")
    detail = await api.get(f"/v1/builds/{old.build_id}", token=admin.token)
    assert detail.body["build"]["status"] == "expired"
    last_event = detail.body["events"][-1]
    assert (last_event["from_status"], last_event["to_status"]) == ("succeeded", "expired")
    assert last_event["reason"] == "retention: artifacts expired"
    assert await log_count(setup, old.build_id, admin.token) == 0
    assert await status_of(setup, live.build_id, admin.token) == "running"
    assert await log_count(setup, live.build_id, admin.token) == 3
    # The running build's artifact is past its expiry (410) but its object stays.
    assert (await live.link(live_artifact["id"], admin.token)).code == "artifact_expired"

    cleanup = (await api.get(LAST, token=admin.token)).body["cleanup"]
    assert cleanup == {
        "started_at": clock.now(),
        "finished_at": clock.now(),
        "duration_ms": report.duration_ms,
        "artifacts_deleted": 1,
        "bytes_freed": len(b"old bytes"),
        "builds_expired": 1,
        "builds_deleted": 0,
        "log_lines_deleted": 5,
        "errors": [],
        "next_run_at": clock.now() + 3600,
    }
    metrics = (await api.get("/metrics")).body
    assert "oore_retention_artifacts_deleted_total 1.0" in metrics
    assert "oore_retention_bytes_freed_total 9.0" in metrics
    assert "oore_retention_builds_expired_total 1.0" in metrics
    assert "oore_retention_log_lines_deleted_total 5.0" in metrics
    assert 'oore_retention_runs_total{outcome="ok"} 1.0' in metrics
    finished_at = re.search(
        r"^oore_retention_last_run_finished_timestamp_seconds (\S+)$", metrics, re.M
    )
    assert finished_at is not None and float(finished_at[1]) == clock.now()

    # Once the live build ends, the next run takes its artifact; nothing is counted twice.
    assert (await live.runner.report(live.build_id, "failed", exit_code=1)).status == 200
    again = await runtime.retention.run()
    assert (again.artifacts_deleted, again.builds_expired, again.log_lines_deleted) == (1, 1, 0)
    assert not on_disk(artifacts_config, live_artifact).exists()
    assert await status_of(setup, live.build_id, admin.token) == "expired"
    assert (await runtime.retention.run()).artifacts_deleted == 0


async def test_a_full_target_deletes_ended_builds_beyond_the_newest_kept(
    setup: Setup, runtime: Runtime, artifacts_config: ArtifactsConfig
) -> None:
    api, token = setup.api, setup.token
    running = await running_job(setup, "first")
    older, older_artifact = await finished(setup, "older", b"older", log_lines=4)
    newest, newest_artifact = await finished(setup, "newest", b"newest")
    override = await api.call(
        "PUT",
        f"/v1/projects/{setup.project_id}/retention",
        json={"keep_last_builds": 1, "target": "full", "artifact_retention_days": None},
        token=token,
    )
    assert override.status == 200, override.body
    report = await runtime.retention.run()
    assert (report.builds_deleted, report.artifacts_deleted, report.log_lines_deleted) == (1, 1, 4)
    assert report.bytes_freed == len(b"older") and report.builds_expired == 0
    assert await status_of(setup, older.build_id, token) == 404
    assert not on_disk(artifacts_config, older_artifact).exists()
    assert await status_of(setup, running.build_id, token) == "running"
    assert await status_of(setup, newest.build_id, token) == "succeeded"
    assert on_disk(artifacts_config, newest_artifact).read_bytes() == b"newest"
    # The same limit with artifacts_only: the builds stay, expired, without their objects.
    assert (await running.runner.report(running.build_id, "failed", exit_code=1)).status == 200
    await api.call(
        "PUT",
        f"/v1/projects/{setup.project_id}/retention",
        json={"keep_last_builds": 1, "artifact_retention_days": None},
        token=token,
    )
    again = await runtime.retention.run()
    assert (again.builds_deleted, again.builds_expired) == (0, 1)
    assert await status_of(setup, running.build_id, token) == "expired"
    assert await status_of(setup, newest.build_id, token) == "succeeded"


async def test_an_object_that_cannot_be_deleted_is_reported_and_retried(
    setup: Setup, runtime: Runtime, clock: FakeClock, artifacts_config: ArtifactsConfig
) -> None:
    _, stuck_artifact = await finished(setup, "stuck", b"stuck")
    path = on_disk(artifacts_config, stuck_artifact)
    path.unlink()
    (path / "in-the-way").mkdir(parents=True)  # a directory where the file was: unlink fails
    clock.advance(2 * DAY)
    first = await runtime.retention.run()
    assert first.artifacts_deleted == 0 and first.builds_expired == 0
    assert len(first.errors) == 1 and stuck_artifact["id"] in first.errors[0]
    assert first.outcome == "partial"
    shutil.rmtree(path)
    second = await runtime.retention.run()
    assert (second.artifacts_deleted, second.builds_expired, second.errors) == (1, 1, ())


async def test_the_last_run_and_the_next_survive_a_restart(
    setup: Setup,
    runtime: Runtime,
    store: Store,
    clock: FakeClock,
    scheduling_config: SchedulingConfig,
    log_config: LogConfig,
    artifacts_config: ArtifactsConfig,
    network_defaults: NetworkDefaults,
    events_config: EventsConfig,
) -> None:
    await setup.api.call(
        "PUT", "/v1/settings/retention", json={"cleanup_interval_secs": 600}, token=setup.token
    )
    await finished(setup, "old", b"old")
    clock.advance(2 * DAY)
    token = (await setup.api.post("/v1/auth/local/login", json={})).body["session_token"]
    await runtime.retention.run()
    before = (await setup.api.get(LAST, token=token)).body["cleanup"]
    assert before["artifacts_deleted"] == 1 and before["next_run_at"] == clock.now() + 600
    clock.advance(5)
    async with open_runtime(
        store,
        clock,
        scheduling_config,
        log_config,
        artifacts_config,
        network_defaults,
        events_config=events_config,
    ) as restarted:
        api = Api(create_app(restarted.app_services(store)))
        assert (await api.get(LAST, token=token)).body["cleanup"] == before


async def test_the_leader_runs_the_cleanup_when_it_falls_due(
    setup: Setup, runtime: Runtime, clock: FakeClock, artifacts_config: ArtifactsConfig
) -> None:
    api, token = setup.api, setup.token
    _, artifact = await finished(setup, "old", b"old")
    assert (await api.get(LAST, token=token)).body == {"cleanup": None}
    clock.advance(2 * DAY)
    token = (await api.post("/v1/auth/local/login", json={})).body["session_token"]
    # Saving the settings wakes the leader, which finds the first run due.
    saved = await api.call(
        "PUT", "/v1/settings/retention", json={"cleanup_interval_secs": 60}, token=token
    )
    assert saved.status == 200, saved.body
    with trio.fail_after(10):
        # The run is the leader's own; the database is where it shows.
        while (cleanup := (await api.get(LAST, token=token)).body["cleanup"]) is None:  # noqa: ASYNC110
            await trio.sleep(0.05)
    assert cleanup["artifacts_deleted"] == 1 and cleanup["next_run_at"] == clock.now() + 60
    assert not on_disk(artifacts_config, artifact).exists()


async def test_a_new_artifact_expires_by_its_projects_policy(setup: Setup) -> None:
    path = f"/v1/projects/{setup.project_id}/retention"
    job = await running_job(setup)
    by_default = (await job.reserve("a.apk")).body["artifact"]
    assert by_default["expires_at"] == by_default["created_at"] + DAY  # the daemon's TTL
    for days in (3, None):
        saved = await setup.api.call(
            "PUT", path, json={"artifact_retention_days": days}, token=setup.token
        )
        assert saved.status == 200, saved.body
        artifact = (await job.reserve(f"{days}.apk")).body["artifact"]
        if days is None:
            assert "expires_at" not in artifact
        else:
            assert artifact["expires_at"] == artifact["created_at"] + days * DAY


async def test_two_daemons_running_at_once_remove_everything_once(
    setup: Setup,
    runtime: Runtime,
    store: Store,
    clock: FakeClock,
    scheduling_config: SchedulingConfig,
    log_config: LogConfig,
    artifacts_config: ArtifactsConfig,
    network_defaults: NetworkDefaults,
    events_config: EventsConfig,
) -> None:
    job = await running_job(setup)
    published = [await job.publish(f"{n}.apk", b"x" * n, file_size=n) for n in range(1, 6)]
    assert (await job.runner.report(job.build_id, "succeeded", exit_code=0)).status == 200
    clock.advance(2 * DAY)
    async with open_runtime(
        store,
        clock,
        scheduling_config,
        log_config,
        artifacts_config,
        network_defaults,
        events_config=events_config,
    ) as other:
        reports = []

        async def run(daemon: Runtime) -> None:
            reports.append(await daemon.retention.run())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, runtime)
            nursery.start_soon(run, other)
    assert sum(r.artifacts_deleted for r in reports) == 5
    assert sum(r.bytes_freed for r in reports) == 15
    assert sum(r.builds_expired for r in reports) == 1
    assert all(r.errors == () for r in reports)
    assert not any(on_disk(artifacts_config, a).exists() for a in published)
