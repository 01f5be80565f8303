"""Artifacts that run out of time: stale upload reservations (failed by the reservation
timer, objects deleted) and artifacts past their retention (410 ``artifact_expired``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from oore.domain.artifacts import ArtifactState
from oore.domain.crypto import SecretBox
from oore.domain.users import Role
from oore.services.artifact_storage import ArtifactsConfig
from oore.store import Store
from tests.http.artifacts_kit import running_job, upload
from tests.http.builds_kit import Setup, repo, setup
from tests.http.conftest import FakeClock, UserFactory

__all__ = ["repo", "setup"]

PENDING_TTL = 1


class RunningClock(FakeClock):
    """The real wall clock, which the test may still move forward."""

    def __init__(self) -> None:
        super().__init__(0)

    def now(self) -> int:
        return int(time.time()) + self.value


@pytest.fixture
def clock() -> FakeClock:
    return RunningClock()


@pytest.fixture
def artifacts_config(tmp_path: Path) -> ArtifactsConfig:
    return ArtifactsConfig(
        data_dir=tmp_path / "data",
        secrets=SecretBox(bytes(32)),
        ttl_days=1,
        pending_ttl=PENDING_TTL,
    )


async def test_a_stale_reservation_is_failed_and_its_object_deleted(
    setup: Setup, store: Store, artifacts_config: ArtifactsConfig
) -> None:
    job = await running_job(setup)
    kept = await job.publish("kept.txt", b"kept")
    stale = await job.reserve("stale.txt")
    artifact = stale.body["artifact"]
    assert (await upload(job.api, stale.body["upload_url"], b"never completed")).status == 200
    assert artifacts_config.data_dir is not None
    on_disk = artifacts_config.data_dir / "artifacts" / artifact["file_path"]
    assert on_disk.exists()
    # The sweep fails the reservation first (no upload can complete it after that), then
    # deletes its object.
    with trio.fail_after(10):
        while True:
            row = await store.artifacts.get(artifact["id"])
            if row is None or (row.state is not ArtifactState.PENDING and not on_disk.exists()):
                break
            await trio.sleep(0.05)
    assert row is not None and row.state is ArtifactState.FAILED
    assert row.error_message == "upload reservation expired"
    late = await job.finish(artifact["id"], "complete")
    assert (late.status, late.code) == (409, "artifact_not_pending")
    survivor = await store.artifacts.get(kept["id"])
    assert survivor is not None and survivor.state is ArtifactState.AVAILABLE
    assert (artifacts_config.data_dir / "artifacts" / kept["file_path"]).read_bytes() == b"kept"


async def test_an_artifact_past_its_retention_is_gone(
    setup: Setup, clock: FakeClock, make_user: UserFactory
) -> None:
    job = await running_job(setup)
    artifact = await job.publish("old.apk", b"x")
    assert artifact["expires_at"] == artifact["created_at"] + 86400
    assert (await job.link(artifact["id"])).status == 200
    clock.advance(86400)
    admin = await make_user(Role.ADMIN)  # sessions made before now have expired too
    reply = await job.link(artifact["id"], admin.token)
    assert (reply.status, reply.code) == (410, "artifact_expired")
