"""Deleting a project or a pipeline deletes its artifacts: the objects first, then the
rows, and every link and token handed out for them stops working (contract §2.5, §7)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oore.domain.artifacts import ArtifactState, ArtifactType, object_key
from oore.domain.ids import new_id
from oore.services.artifact_storage import ArtifactsConfig
from oore.services.artifacts import PURGE_BATCH
from oore.store import Store
from oore.store.artifacts import NewArtifact
from tests.http.artifacts_kit import Job, download, running_job, upload
from tests.http.builds_kit import Setup, repo, setup
from tests.http.conftest import Api, FakeClock, Reply

__all__ = ["repo", "setup"]


def artifacts_dir(config: ArtifactsConfig) -> Path:
    assert config.data_dir is not None
    return config.data_dir / "artifacts"


async def finished_job(setup: Setup, files: dict[str, bytes]) -> tuple[Job, list[dict[str, Any]]]:
    """A build that published ``files`` and succeeded."""
    job = await running_job(setup)
    published = [await job.publish(name, data) for name, data in files.items()]
    done = await job.runner.report(job.build_id, "succeeded", exit_code=0)
    assert done.status == 200, done.body
    return job, published


async def scoped_token(api: Api, artifact_id: str, token: str) -> str:
    minted = await api.post(f"/v1/artifacts/{artifact_id}/scoped-token", json={}, token=token)
    assert minted.status == 200, minted.body
    value: str = minted.body["token"]
    return value


async def delete_project(setup: Setup) -> Reply:
    return await setup.api.call("DELETE", f"/v1/projects/{setup.project_id}", token=setup.token)


async def test_deleting_a_project_deletes_its_files_and_kills_its_links(
    setup: Setup, artifacts_config: ArtifactsConfig, store: Store
) -> None:
    job, artifacts = await finished_job(setup, {"app.apk": b"apk bytes", "notes.txt": b"notes"})
    files = [artifacts_dir(artifacts_config) / a["file_path"] for a in artifacts]
    assert [f.read_bytes() for f in files] == [b"apk bytes", b"notes"]
    link = (await job.link(artifacts[0]["id"])).body["download_url"]
    assert (await download(setup.api, link)).body == b"apk bytes"
    scoped = await scoped_token(setup.api, artifacts[1]["id"], setup.token)
    redeemed = await setup.api.get(f"/install/artifact/{scoped}")
    assert redeemed.status == 307
    delivery = redeemed.headers["Location"]

    deleted = await delete_project(setup)
    assert (deleted.status, deleted.body) == (200, {"ok": True})

    assert not any(f.exists() for f in files)
    assert not (artifacts_dir(artifacts_config) / "artifacts" / job.build_id).exists()
    for url in (link, delivery):
        gone = await download(setup.api, url)
        assert gone.status == 404 and json.loads(gone.body)["code"] == "not_found"
    refused = await setup.api.get(f"/install/artifact/{scoped}")
    assert (refused.status, refused.code) == (401, "invalid_token")
    for artifact in artifacts:
        assert await store.artifacts.get(artifact["id"]) is None
        again = await job.link(artifact["id"])
        assert again.status == 404


async def test_a_failed_object_delete_leaves_the_project_and_a_retry_finishes(
    setup: Setup, artifacts_config: ArtifactsConfig
) -> None:
    job, artifacts = await finished_job(setup, {"a.bin": b"a", "b.bin": b"b", "c.bin": b"c"})
    files = [artifacts_dir(artifacts_config) / a["file_path"] for a in artifacts]
    # The object of b.bin cannot be unlinked: a non-empty directory stands at its path.
    files[1].unlink()
    (files[1] / "inside").mkdir(parents=True)

    failed = await delete_project(setup)
    assert (failed.status, failed.code) == (500, "storage_error")
    project = await setup.api.get(f"/v1/projects/{setup.project_id}", token=setup.token)
    assert project.status == 200
    # What is left is whole: b.bin's row still names its object; a and c went, both ways.
    listed = await setup.api.get(f"/v1/builds/{job.build_id}/artifacts", token=setup.token)
    assert [a["name"] for a in listed.body["artifacts"]] == ["b.bin"]
    assert [f.exists() for f in files] == [False, True, False]

    (files[1] / "inside").rmdir()
    files[1].rmdir()
    retried = await delete_project(setup)
    assert (retried.status, retried.body) == (200, {"ok": True})
    gone = await setup.api.get(f"/v1/projects/{setup.project_id}", token=setup.token)
    assert gone.status == 404


async def test_with_storage_disabled_nothing_is_deleted(
    setup: Setup, artifacts_config: ArtifactsConfig
) -> None:
    job, artifacts = await finished_job(setup, {"kept.bin": b"kept"})
    disabled = await setup.api.call(
        "PUT", "/v1/settings/artifact-storage", json={"provider": "disabled"}, token=setup.token
    )
    assert disabled.status == 200
    failed = await delete_project(setup)
    assert (failed.status, failed.code) == (500, "storage_error")
    assert (artifacts_dir(artifacts_config) / artifacts[0]["file_path"]).read_bytes() == b"kept"
    build = await setup.api.get(f"/v1/builds/{job.build_id}", token=setup.token)
    assert build.status == 200


async def test_active_builds_refuse_the_delete_before_any_object_goes(
    setup: Setup, artifacts_config: ArtifactsConfig
) -> None:
    job = await running_job(setup)
    artifact = await job.publish("early.bin", b"early")
    refused = await delete_project(setup)
    assert (refused.status, refused.code) == (409, "active_builds")
    assert (artifacts_dir(artifacts_config) / artifact["file_path"]).read_bytes() == b"early"
    assert (await job.link(artifact["id"])).status == 200


async def test_many_artifacts_go_in_batches(
    setup: Setup, artifacts_config: ArtifactsConfig, store: Store, clock: FakeClock
) -> None:
    job, published = await finished_job(setup, {"first.bin": b"1"})
    count = 2 * PURGE_BATCH + 1
    keys = []
    for n in range(count):
        artifact_id = new_id()
        key = object_key(job.build_id, artifact_id, f"f{n}.bin")
        keys.append(key)
        await store.artifacts.insert(
            NewArtifact(
                artifact_id,
                job.build_id,
                f"f{n}.bin",
                ArtifactType.GENERIC,
                key,
                1,
                None,
                None,
                None,
                clock.now(),
            )
        )
        if n % 50 == 0:
            path = artifacts_dir(artifacts_config) / key
            path.parent.mkdir(parents=True)
            path.write_bytes(b"x")
    deleted = await delete_project(setup)
    assert deleted.status == 200, deleted.body
    assert not any((artifacts_dir(artifacts_config) / key).exists() for key in keys)
    assert not (artifacts_dir(artifacts_config) / "artifacts" / job.build_id).exists()
    assert await store.artifacts.get(published[0]["id"]) is None


async def test_deleting_a_pipeline_deletes_its_artifacts(
    setup: Setup, artifacts_config: ArtifactsConfig, store: Store
) -> None:
    job, artifacts = await finished_job(setup, {"pipe.bin": b"pipe"})
    link = (await job.link(artifacts[0]["id"])).body["download_url"]
    path = artifacts_dir(artifacts_config) / artifacts[0]["file_path"]
    assert path.exists()
    deleted = await setup.api.call(
        "DELETE", f"/v1/pipelines/{setup.pipeline_id}", token=setup.token
    )
    assert deleted.status == 200, deleted.body
    assert not path.exists()
    assert (await download(setup.api, link)).status == 404
    assert await store.artifacts.get(artifacts[0]["id"]) is None
    assert (await delete_project(setup)).status == 200


async def test_failed_and_pending_leftovers_of_finished_builds_go_too(
    setup: Setup, artifacts_config: ArtifactsConfig, store: Store
) -> None:
    job = await running_job(setup)
    kept = await job.publish("kept.bin", b"kept")
    aborted = await job.reserve("aborted.bin")
    await job.finish(aborted.body["artifact"]["id"], "abort")
    pending = await job.reserve("pending.bin")
    assert (await job.runner.report(job.build_id, "failed", exit_code=1)).status == 200
    states = {
        a: (await store.artifacts.get(a))
        for a in (kept["id"], aborted.body["artifact"]["id"], pending.body["artifact"]["id"])
    }
    assert {s.state for s in states.values() if s is not None} == {
        ArtifactState.AVAILABLE,
        ArtifactState.FAILED,
        ArtifactState.PENDING,
    }
    deleted = await delete_project(setup)
    assert deleted.status == 200, deleted.body
    for artifact_id in states:
        assert await store.artifacts.get(artifact_id) is None
    assert not (artifacts_dir(artifacts_config) / "artifacts" / job.build_id).exists()
    late = await upload(setup.api, pending.body["upload_url"], b"late")
    assert (late.status, late.code) == (401, "invalid_upload_token")
