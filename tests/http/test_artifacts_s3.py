"""Artifacts in S3 (a real S3-compatible server on loopback): configured from the
environment or the settings API, presigned uploads and downloads (contract §7.1, §7.2)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trio

from oore.domain.artifact_storage import EnvironmentStorage
from oore.domain.crypto import SecretBox
from oore.runtime import Runtime
from oore.services.artifact_storage import ArtifactsConfig, ArtifactStorageService
from oore.store import AuditEntry, Store
from tests.http.artifacts_kit import running_job, upload
from tests.http.builds_kit import Setup, repo, setup
from tests.http.conftest import FakeClock
from tests.s3_kit import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server, s3_server

__all__ = ["repo", "s3_server", "setup"]


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


@pytest.fixture
def artifacts_config(tmp_path: Path, s3_server: S3Server, bucket: str) -> ArtifactsConfig:
    """Storage configured the way an operator would with OORE_S3_* and AWS_* variables."""
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
    )


def expires(url: str) -> str:
    return parse_qs(urlsplit(url).query)["X-Amz-Expires"][0]


async def test_artifacts_go_to_the_bucket_through_presigned_urls(
    setup: Setup, s3_server: S3Server, bucket: str
) -> None:
    settings = await setup.api.get("/v1/settings/artifact-storage", token=setup.token)
    assert settings.body["settings"] == {
        "provider": "s3",
        "s3_bucket": bucket,
        "s3_region": "us-east-1",
        "s3_endpoint": s3_server.endpoint,
        "has_access_key_id": True,
        "has_secret_access_key": True,
        "source": "environment",
    }
    job = await running_job(setup)
    reserved = await job.reserve("app release.apk", artifact_type="apk")
    artifact, put_url = reserved.body["artifact"], reserved.body["upload_url"]
    parts = urlsplit(put_url)
    assert f"{parts.scheme}://{parts.netloc}" == s3_server.endpoint
    assert parts.path == f"/{bucket}/{artifact['file_path'].replace(' ', '%20')}"
    assert expires(put_url) == "1800"
    body = bytes(range(256)) * 1000
    async with httpx.AsyncClient() as http:
        assert (await http.put(put_url, content=body)).status_code == 200
        done = await job.finish(artifact["id"], "complete")
        assert done.body["artifact"]["state"] == "available"
        link = await job.link(artifact["id"])
        assert link.status == 200, link.body
        get_url = link.body["download_url"]
        assert expires(get_url) == "900"
        fetched = await http.get(get_url)
        assert fetched.status_code == 200 and fetched.content == body
        assert fetched.headers["Content-Disposition"].startswith(
            'attachment; filename="app release.apk"'
        )
        ranged = await http.get(get_url, headers={"Range": "bytes=10-19"})
        assert ranged.status_code == 206 and ranged.content == body[10:20]

        aborted = await job.reserve("broken.bin")
        assert (await http.put(aborted.body["upload_url"], content=b"half")).status_code == 200
        keys = await trio.to_thread.run_sync(s3_server.keys, bucket)
        assert sorted(keys) == sorted(
            [artifact["file_path"], aborted.body["artifact"]["file_path"]]
        )
        await job.finish(aborted.body["artifact"]["id"], "abort", error_message="upload broke")
    assert await trio.to_thread.run_sync(s3_server.keys, bucket) == [artifact["file_path"]]


async def test_deleting_the_project_deletes_its_objects_and_kills_its_links(
    setup: Setup, s3_server: S3Server, bucket: str
) -> None:
    job = await running_job(setup)
    api, token = setup.api, setup.token
    paths = []
    async with httpx.AsyncClient() as http:
        for name in ("one.apk", "two.bin"):
            reserved = await job.reserve(name)
            put = await http.put(reserved.body["upload_url"], content=name.encode())
            assert put.status_code == 200
            done = await job.finish(reserved.body["artifact"]["id"], "complete")
            paths.append(done.body["artifact"]["file_path"])
            if name == "one.apk":
                first = done.body["artifact"]["id"]
        assert (await job.runner.report(job.build_id, "succeeded", exit_code=0)).status == 200
        link = (await job.link(first)).body["download_url"]
        assert (await http.get(link)).content == b"one.apk"
        minted = await api.post(f"/v1/artifacts/{first}/scoped-token", json={}, token=token)
        scoped = minted.body["token"]
        assert (await api.get(f"/install/artifact/{scoped}")).status == 307
        assert await trio.to_thread.run_sync(s3_server.keys, bucket) == sorted(paths)

        deleted = await api.call("DELETE", f"/v1/projects/{setup.project_id}", token=token)
        assert (deleted.status, deleted.body) == (200, {"ok": True})
        assert await trio.to_thread.run_sync(s3_server.keys, bucket) == []
        # The presigned URL cannot be recalled, but its object is gone: S3 answers 404
        # (or 403 without list rights; moto answers 403 for a missing key).
        gone = await http.get(link)
        assert gone.status_code in (403, 404) and b"one.apk" not in gone.content
    refused = await api.get(f"/install/artifact/{scoped}")
    assert (refused.status, refused.code) == (401, "invalid_token")


async def test_a_failed_bucket_delete_leaves_the_project_and_a_retry_finishes(
    setup: Setup, s3_server: S3Server, bucket: str
) -> None:
    job = await running_job(setup)
    reserved = await job.reserve("kept.bin")
    async with httpx.AsyncClient() as http:
        assert (await http.put(reserved.body["upload_url"], content=b"kept")).status_code == 200
    await job.finish(reserved.body["artifact"]["id"], "complete")
    assert (await job.runner.report(job.build_id, "succeeded", exit_code=0)).status == 200

    def drop_bucket() -> None:
        client = s3_server.client()
        client.delete_object(Bucket=bucket, Key=reserved.body["artifact"]["file_path"])
        client.delete_bucket(Bucket=bucket)

    await trio.to_thread.run_sync(drop_bucket)
    path = f"/v1/projects/{setup.project_id}"
    failed = await setup.api.call("DELETE", path, token=setup.token)
    assert (failed.status, failed.code) == (500, "storage_error")
    assert (await setup.api.get(path, token=setup.token)).status == 200
    listed = await setup.api.get(f"/v1/builds/{job.build_id}/artifacts", token=setup.token)
    assert [a["name"] for a in listed.body["artifacts"]] == ["kept.bin"]

    await trio.to_thread.run_sync(lambda: s3_server.client().create_bucket(Bucket=bucket))
    retried = await setup.api.call("DELETE", path, token=setup.token)
    assert (retried.status, retried.body) == (200, {"ok": True})
    assert (await setup.api.get(path, token=setup.token)).status == 404


async def test_saved_settings_win_over_the_environment_at_once(
    setup: Setup, s3_server: S3Server, bucket: str, runtime: Runtime, tmp_path: Path
) -> None:
    job = await running_job(setup)
    api, token = setup.api, setup.token
    local = await api.call(
        "PUT",
        "/v1/settings/artifact-storage",
        json={"provider": "local", "local_base_dir": str(tmp_path / "local")},
        token=token,
    )
    assert local.body["settings"]["source"] == "database"
    local_reservation = await job.reserve("local.bin")
    assert "/v1/artifacts/local-upload/" in local_reservation.body["upload_url"]

    other = await trio.to_thread.run_sync(s3_server.new_bucket)
    r2 = {
        "provider": "r2",
        "s3_bucket": other,
        "s3_endpoint": s3_server.endpoint,
        "s3_region": "auto",
        "access_key_id": ACCESS_KEY_ID,
        "secret_access_key": SECRET_ACCESS_KEY,
    }
    saved = await api.call("PUT", "/v1/settings/artifact-storage", json=r2, token=token)
    assert saved.status == 200 and saved.body["settings"]["source"] == "database"
    assert runtime.artifacts.storage.backend.provider == "r2"
    # A local upload token is worthless once storage is not local.
    stale = await upload(api, local_reservation.body["upload_url"], b"x")
    assert (stale.status, stale.code) == (401, "invalid_upload_token")
    reserved = await job.reserve("r2.bin")
    assert urlsplit(reserved.body["upload_url"]).path.startswith(f"/{other}/")
    async with httpx.AsyncClient() as http:
        assert (await http.put(reserved.body["upload_url"], content=b"r2!")).status_code == 200
    assert (
        await trio.to_thread.run_sync(s3_server.read, other, reserved.body["artifact"]["file_path"])
        == b"r2!"
    )
    assert await trio.to_thread.run_sync(s3_server.keys, bucket) == []


class Audit:
    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    async def submit_one(self, row: AuditEntry) -> None:
        self.entries.append(row)


async def test_environment_without_keys_disables_storage(
    store: Store, s3_server: S3Server, bucket: str, clock: FakeClock
) -> None:
    config = ArtifactsConfig(
        environment=EnvironmentStorage(bucket=bucket, endpoint=s3_server.endpoint)
    )
    service = ArtifactStorageService(store, clock, Audit(), config)
    backend = await service.reload()
    assert backend.provider == "disabled"
