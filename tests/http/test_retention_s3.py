"""The retention cleanup on S3 (a real S3-compatible server on loopback): an expired
artifact's object leaves the bucket and its link answers 410."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from oore.domain.artifact_storage import EnvironmentStorage
from oore.domain.crypto import SecretBox
from oore.domain.users import Role
from oore.runtime import Runtime
from oore.services.artifact_storage import ArtifactsConfig
from tests.http.artifacts_kit import running_job
from tests.http.builds_kit import Setup, repo, setup
from tests.http.conftest import FakeClock, UserFactory
from tests.s3_kit import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server, s3_server

__all__ = ["repo", "s3_server", "setup"]


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


@pytest.fixture
def artifacts_config(tmp_path: Path, s3_server: S3Server, bucket: str) -> ArtifactsConfig:
    """S3 from the environment; OORED_ARTIFACT_TTL_DAYS=1."""
    return ArtifactsConfig(
        data_dir=tmp_path / "data",
        secrets=SecretBox(bytes(32)),
        environment=EnvironmentStorage(
            bucket=bucket,
            access_key_id=ACCESS_KEY_ID,
            secret_access_key=SECRET_ACCESS_KEY,
            endpoint=s3_server.endpoint,
            region="us-east-1",
        ),
        ttl_days=1,
    )


async def test_an_expired_artifact_leaves_the_bucket(
    setup: Setup,
    runtime: Runtime,
    clock: FakeClock,
    make_user: UserFactory,
    s3_server: S3Server,
    bucket: str,
) -> None:
    job = await running_job(setup)
    artifacts = []
    async with httpx.AsyncClient() as http:
        for name in ("one.apk", "two.apk"):
            reserved = await job.reserve(name, file_size=4)
            assert reserved.status == 200, reserved.body
            put = await http.put(reserved.body["upload_url"], content=b"data")
            assert put.status_code == 200
            done = await job.finish(reserved.body["artifact"]["id"], "complete")
            artifacts.append(done.body["artifact"])
    assert len(await trio.to_thread.run_sync(s3_server.keys, bucket)) == 2
    assert (await job.runner.report(job.build_id, "succeeded", exit_code=0)).status == 200
    clock.advance(2 * 86400)
    admin = await make_user(Role.ADMIN)
    report = await runtime.retention.run()
    assert (report.artifacts_deleted, report.bytes_freed, report.builds_expired) == (2, 8, 1)
    assert report.errors == ()
    assert await trio.to_thread.run_sync(s3_server.keys, bucket) == []
    for artifact in artifacts:
        link = await job.link(artifact["id"], admin.token)
        assert (link.status, link.code) == (410, "artifact_expired")
    build = await setup.api.get(f"/v1/builds/{job.build_id}", token=admin.token)
    assert build.body["build"]["status"] == "expired"
