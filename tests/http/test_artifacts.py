"""Artifacts with local storage: reservations, uploads, listings, links and downloads
(contract §6.5, §7.1, §7.2)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from oore.domain.artifacts import ArtifactState, ArtifactType
from oore.domain.users import Role
from oore.runtime import Runtime
from oore.services.artifact_storage import ArtifactsConfig
from oore.store import Store
from oore.store.artifacts import NewArtifact
from tests.http.artifacts_kit import Job, download, local_path, running_job, upload
from tests.http.builds_kit import Setup, repo, setup
from tests.http.conftest import FakeClock, UserFactory

__all__ = ["repo", "setup"]

UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
async def job(setup: Setup) -> Job:
    return await running_job(setup)


def artifacts_dir(config: ArtifactsConfig) -> Path:
    assert config.data_dir is not None
    return config.data_dir / "artifacts"


async def test_reserve_upload_complete_list_and_download(
    job: Job, artifacts_config: ArtifactsConfig, clock: FakeClock, store: Store
) -> None:
    reserved = await job.reserve("app-release.apk", artifact_type="apk", file_size=5)
    assert reserved.status == 200, reserved.body
    artifact = reserved.body["artifact"]
    assert artifact == {
        "id": artifact["id"],
        "build_id": job.build_id,
        "name": "app-release.apk",
        "artifact_type": "apk",
        "file_path": f"artifacts/{job.build_id}/{artifact['id']}/app-release.apk",
        "file_size": 5,
        "checksum": None,
        "metadata": None,
        "created_at": clock.now(),
        "state": "pending",
    }
    url = reserved.body["upload_url"]
    assert url.startswith("http://127.0.0.1:8787/v1/artifacts/local-upload/")
    listing = f"/v1/builds/{job.build_id}/artifacts"
    assert (await job.api.get(listing, token=job.setup.token)).body == {"artifacts": []}

    stored = await upload(job.api, url, b"hello")
    assert (stored.status, stored.body) == (200, None)
    on_disk = artifacts_dir(artifacts_config) / artifact["file_path"]
    assert on_disk.read_bytes() == b"hello"
    done = await job.finish(artifact["id"], "complete")
    assert done.status == 200 and done.body["artifact"] == {**artifact, "state": "available"}

    listed = await job.api.get(listing, token=job.setup.token)
    assert listed.body == {"artifacts": [done.body["artifact"]]}
    link = await job.link(artifact["id"])
    assert link.status == 200, link.body
    assert link.body["expires_at"] == clock.now() + 900
    assert link.body["download_url"].startswith("http://127.0.0.1:8787/v1/artifacts/download/")
    got = await download(job.api, link.body["download_url"])
    assert (got.status, got.body) == (200, b"hello")
    assert got.headers["Content-Type"] == "application/octet-stream"
    assert got.headers["Content-Disposition"] == 'attachment; filename="app-release.apk"'
    assert got.headers["Content-Length"] == "5"
    assert got.headers["Accept-Ranges"] == "bytes"
    alias = link.body["download_url"].replace("/download/", "/local-download/")
    assert (await download(job.api, alias)).body == b"hello"
    recorded = [e for e in await store.audit.recent() if e.action.startswith("artifact_")]
    assert [(e.action, e.resource_id) for e in recorded] == [
        ("artifact_download_link_generated", artifact["id"])
    ]
    assert recorded[0].details == {
        "artifact_id": artifact["id"],
        "file_path": artifact["file_path"],
        "expires_at": link.body["expires_at"],
        "build_id": job.build_id,
        "name": "app-release.apk",
    }


async def test_metadata_is_kept_as_given(job: Job) -> None:
    meta = {"version": "1.2.3", "ios_app": {"bundle_id": "x"}, "list": [1, None]}
    reserved = await job.reserve("a.ipa", artifact_type="ipa", metadata=meta)
    assert reserved.body["artifact"]["metadata"] == meta


async def test_reserve_checks_in_the_documented_order(setup: Setup, job: Job) -> None:
    other = await setup.runner("other")
    second = await running_job(setup, "second")
    bad_type = {"name": "a/b", "artifact_type": "zip"}
    cases: list[tuple[str, str | None, dict[str, Any], int, str]] = [
        (job.path(), None, bad_type, 401, "missing_auth"),
        (job.path(), "f" * 64, bad_type, 401, "invalid_token"),
        (job.path(), other.token, bad_type, 403, "runner_mismatch"),  # the path first
        (job.path(), job.runner.token, bad_type, 400, "invalid_artifact_type"),
        (
            f"/v1/runners/{job.runner.id}/jobs/{UNKNOWN}/artifacts",
            job.runner.token,
            {"name": "a/b", "artifact_type": "apk"},
            400,
            "invalid_name",
        ),
        (
            f"/v1/runners/{job.runner.id}/jobs/{UNKNOWN}/artifacts",
            job.runner.token,
            {"name": "a", "artifact_type": "apk"},
            404,
            "not_found",
        ),
        (
            f"/v1/runners/{job.runner.id}/jobs/nonsense/artifacts",
            job.runner.token,
            {"name": "a", "artifact_type": "apk"},
            404,
            "not_found",
        ),
        (
            f"/v1/runners/{job.runner.id}/jobs/{second.build_id}/artifacts",
            job.runner.token,
            {"name": "a", "artifact_type": "apk"},
            403,
            "runner_mismatch",  # the build is bound to another runner
        ),
        (job.path(), job.runner.token, {"artifact_type": "apk"}, 400, "invalid_request"),
        (
            job.path(),
            job.runner.token,
            {"name": "a", "artifact_type": "apk", "file_size": "5"},
            400,
            "invalid_request",
        ),
        (
            job.path(),
            job.runner.token,
            {"name": "a", "artifact_type": "apk", "file_size": -1},
            400,
            "invalid_input",
        ),
        (
            job.path(),
            job.runner.token,
            {"name": "a", "artifact_type": "apk", "extra": 1},
            400,
            "invalid_request",
        ),
    ]
    for path, token, body, status, code in cases:
        reply = await job.api.post(path, json=body, token=token)
        assert (reply.status, reply.code) == (status, code), (path, body)
    for name in ("", "   ", "a\\b", "..", "x" * 256):
        reply = await job.reserve(name)
        assert (reply.status, reply.code) == (400, "invalid_name"), name
    trimmed = await job.reserve("  spaced.txt  ")
    assert trimmed.body["artifact"]["name"] == "spaced.txt"


async def test_a_known_checksum_answers_the_available_artifact(job: Job, store: Store) -> None:
    first = await job.publish("app.apk", b"bytes", checksum=" abc123 ")
    assert first["checksum"] == "abc123"
    again = await job.reserve("renamed.apk", checksum="abc123")
    assert again.status == 200
    assert again.body == {"artifact": first, "upload_url": ""}
    pending = await job.reserve("p.apk", checksum="def")
    twin = await job.reserve("p.apk", checksum="def")  # a pending twin is not a match
    assert twin.body["artifact"]["id"] != pending.body["artifact"]["id"]
    assert twin.body["upload_url"] != ""
    blank = await job.reserve("b.apk", checksum="   ")
    assert blank.body["artifact"]["checksum"] is None
    listed = await job.api.get(f"/v1/builds/{job.build_id}/artifacts", token=job.setup.token)
    assert [a["id"] for a in listed.body["artifacts"]] == [first["id"]]


async def test_complete_and_abort_need_a_pending_artifact_of_the_bound_build(
    setup: Setup, job: Job, artifacts_config: ArtifactsConfig, store: Store
) -> None:
    second = await running_job(setup, "second")
    elsewhere = (await second.reserve("x.txt")).body["artifact"]["id"]
    done = await job.publish("done.txt", b"1")
    aborted = (await job.reserve("aborted.txt")).body["artifact"]["id"]
    gone = await job.finish(aborted, "abort", error_message="disk full")
    assert gone.status == 200 and gone.body["artifact"]["state"] == "failed"
    row = await store.artifacts.get(aborted)
    assert row is not None and row.error_message == "disk full"
    for artifact_id in (UNKNOWN, "not-a-uuid", elsewhere, done["id"], aborted):
        for action in ("complete", "abort"):
            reply = await job.finish(artifact_id, action)
            assert (reply.status, reply.code) == (409, "artifact_not_pending"), (
                artifact_id,
                action,
            )
    mine = (await job.reserve("mine.txt")).body["artifact"]["id"]
    foreign = await job.api.post(job.path(f"/{mine}/complete"), json={}, token=second.runner.token)
    assert (foreign.status, foreign.code) == (403, "runner_mismatch")
    no_body = await job.api.post(job.path(f"/{mine}/complete"), token=job.runner.token)
    assert no_body.status == 200 and no_body.body["artifact"]["state"] == "available"
    # Once the build is finished its binding is gone: nothing is pending for this runner.
    late = (await job.reserve("late.txt")).body["artifact"]["id"]
    assert (await job.runner.report(job.build_id, "succeeded", exit_code=0)).status == 200
    reply = await job.finish(late, "complete")
    assert (reply.status, reply.code) == (409, "artifact_not_pending")
    refused = await job.reserve("after.txt")
    assert (refused.status, refused.code) == (403, "runner_mismatch")


async def test_abort_removes_what_was_uploaded(
    job: Job, artifacts_config: ArtifactsConfig, store: Store
) -> None:
    reserved = await job.reserve("partial.bin")
    artifact = reserved.body["artifact"]
    await upload(job.api, reserved.body["upload_url"], b"partial")
    on_disk = artifacts_dir(artifacts_config) / artifact["file_path"]
    assert on_disk.exists()
    aborted = await job.finish(artifact["id"], "abort")
    assert aborted.status == 200
    assert not on_disk.exists()
    row = await store.artifacts.get(artifact["id"])
    assert row is not None and row.error_message == "upload aborted by the runner"


async def test_upload_tokens_are_single_use_and_expire(job: Job, clock: FakeClock) -> None:
    first = await job.reserve("one.bin")
    url = first.body["upload_url"]
    assert (await upload(job.api, url, b"1")).status == 200
    used = await upload(job.api, url, b"2")
    assert (used.status, used.code) == (401, "invalid_upload_token")
    for token in ("nope", "f" * 64, "F" * 64):
        unknown = await job.api.call("PUT", f"/v1/artifacts/local-upload/{token}", data=b"x")
        assert (unknown.status, unknown.code) == (401, "invalid_upload_token")
    aborted = await job.reserve("aborted.bin")
    await job.finish(aborted.body["artifact"]["id"], "abort")
    late = await upload(job.api, aborted.body["upload_url"], b"x")
    assert (late.status, late.code) == (401, "invalid_upload_token")  # no longer pending
    expiring = await job.reserve("slow.bin")
    clock.advance(1800)
    expired = await upload(job.api, expiring.body["upload_url"], b"x")
    assert (expired.status, expired.code) == (401, "invalid_upload_token")


async def test_user_listings(setup: Setup, job: Job, clock: FakeClock) -> None:
    first = await job.publish("first.txt", b"1")
    clock.advance(1)
    second = await job.publish("second.txt", b"2")
    await job.reserve("pending.txt")
    other = await running_job(setup, "other")
    clock.advance(1)
    third = await other.publish("third.txt", b"3")
    api, token = setup.api, setup.token
    by_build = await api.get(f"/v1/builds/{job.build_id}/artifacts", token=token)
    assert [a["id"] for a in by_build.body["artifacts"]] == [first["id"], second["id"]]
    project = f"/v1/projects/{setup.project_id}/artifacts"
    newest = await api.get(project, token=token)
    assert [a["id"] for a in newest.body["artifacts"]] == [third["id"], second["id"], first["id"]]
    assert [
        a["id"] for a in (await api.get(f"{project}?limit=2", token=token)).body["artifacts"]
    ] == [
        third["id"],
        second["id"],
    ]
    assert len((await api.get(f"{project}?limit=5000", token=token)).body["artifacts"]) == 3
    queried = await api.post(
        "/v1/artifacts/query",
        json={"build_ids": [job.build_id, " ", other.build_id, UNKNOWN, "junk", job.build_id]},
        token=token,
    )
    assert queried.status == 200
    assert [a["id"] for a in queried.body["artifacts"]] == [third["id"], second["id"], first["id"]]
    empty = await api.post("/v1/artifacts/query", json={"build_ids": []}, token=token)
    assert empty.body == {"artifacts": []}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/v1/projects/{project}/artifacts?limit=0", None, 400, "invalid_input"),
        ("GET", "/v1/projects/{project}/artifacts?limit=-1", None, 400, "invalid_input"),
        ("GET", "/v1/projects/{project}/artifacts?limit=ten", None, 400, "invalid_request"),
        ("GET", f"/v1/projects/{UNKNOWN}/artifacts", None, 404, "not_found"),
        ("GET", f"/v1/builds/{UNKNOWN}/artifacts", None, 404, "not_found"),
        ("GET", "/v1/builds/junk/artifacts", None, 404, "not_found"),
        ("POST", "/v1/artifacts/query", {"build_ids": ["x"] * 201}, 400, "too_many_build_ids"),
        ("POST", "/v1/artifacts/query", {"build_ids": "x"}, 400, "invalid_request"),
        ("POST", f"/v1/artifacts/{UNKNOWN}/download-link", None, 404, "not_found"),
        ("POST", "/v1/artifacts/junk/download-link", None, 404, "not_found"),
        ("GET", "/v1/artifacts/download/" + "f" * 64, None, 404, "not_found"),
        ("GET", "/v1/artifacts/local-download/nope", None, 404, "not_found"),
    ],
)
async def test_user_side_errors(
    setup: Setup, method: str, path: str, body: Any, status: int, code: str
) -> None:
    reply = await setup.api.call(
        method, path.format(project=setup.project_id), json=body, token=setup.token
    )
    assert (reply.status, reply.code) == (status, code)


async def test_user_endpoints_need_a_session(setup: Setup) -> None:
    for method, path in (
        ("GET", f"/v1/builds/{UNKNOWN}/artifacts"),
        ("GET", f"/v1/projects/{UNKNOWN}/artifacts"),
        ("POST", "/v1/artifacts/query"),
        ("POST", f"/v1/artifacts/{UNKNOWN}/download-link"),
    ):
        reply = await setup.api.call(method, path, json={"build_ids": []})
        assert (reply.status, reply.code) == (401, "missing_auth"), path


async def test_reads_follow_project_membership(
    setup: Setup, job: Job, make_user: UserFactory
) -> None:
    artifact = await job.publish("app.apk", b"x")
    outsider = await make_user(Role.DEVELOPER)
    api = setup.api
    for path in (
        f"/v1/builds/{job.build_id}/artifacts",
        f"/v1/projects/{setup.project_id}/artifacts",
    ):
        hidden = await api.get(path, token=outsider.token)
        assert (hidden.status, hidden.code) == (404, "not_found"), path
    link = await job.link(artifact["id"], outsider.token)
    assert (link.status, link.code) == (404, "not_found")
    queried = await api.post(
        "/v1/artifacts/query", json={"build_ids": [job.build_id]}, token=outsider.token
    )
    assert queried.body == {"artifacts": []}
    qa = await make_user(Role.QA_VIEWER)
    for who in (outsider, qa):
        added = await api.post(
            f"/v1/projects/{setup.project_id}/members",
            json={"user_id": who.user.id, "role": "viewer"},
            token=setup.token,
        )
        assert added.status == 201, added.body
        listed = await api.get(f"/v1/builds/{job.build_id}/artifacts", token=who.token)
        assert [a["id"] for a in listed.body["artifacts"]] == [artifact["id"]]
        queried = await api.post(
            "/v1/artifacts/query", json={"build_ids": [job.build_id]}, token=who.token
        )
        assert [a["id"] for a in queried.body["artifacts"]] == [artifact["id"]]
        link = await job.link(artifact["id"], who.token)
        assert link.status == 200, link.body


async def test_download_links_only_for_available_artifacts(job: Job) -> None:
    pending = (await job.reserve("pending.bin")).body["artifact"]["id"]
    failed = (await job.reserve("failed.bin")).body["artifact"]["id"]
    await job.finish(failed, "abort")
    for artifact_id in (pending, failed):
        reply = await job.link(artifact_id)
        assert (reply.status, reply.code) == (404, "not_found")


async def test_download_link_with_disabled_storage_is_503(job: Job) -> None:
    artifact = await job.publish("app.apk", b"x")
    put = await job.api.call(
        "PUT", "/v1/settings/artifact-storage", json={"provider": "disabled"}, token=job.setup.token
    )
    assert put.status == 200
    reply = await job.link(artifact["id"])
    assert (reply.status, reply.code) == (503, "storage_not_configured")


async def test_a_storage_failure_is_a_500_storage_error(
    job: Job, store: Store, clock: FakeClock
) -> None:
    # A row whose object key would leave the storage directory (a damaged database): the
    # storage refuses it rather than serving another file.
    await store.artifacts.insert(
        NewArtifact(
            UNKNOWN,
            job.build_id,
            "x",
            ArtifactType.GENERIC,
            "artifacts/../../etc/passwd",
            None,
            None,
            None,
            None,
            clock.now(),
        )
    )
    await store.artifacts.finish(
        UNKNOWN, job.build_id, job.runner.id, ArtifactState.AVAILABLE, None, clock.now()
    )
    reply = await job.link(UNKNOWN)
    assert (reply.status, reply.code) == (500, "storage_error")


async def test_ranges_and_expiry_of_download_links(
    job: Job, artifacts_config: ArtifactsConfig, clock: FakeClock
) -> None:
    data = os.urandom(200_000)
    artifact = await job.publish("data.bin", data)
    url = (await job.link(artifact["id"])).body["download_url"]
    whole = await download(job.api, url)
    assert whole.status == 200 and whole.body == data
    for header, start, end in (
        ("bytes=100-199", 100, 199),
        ("bytes=150000-", 150_000, 199_999),
        ("bytes=-10", 199_990, 199_999),
        ("bytes=199990-500000", 199_990, 199_999),
    ):
        part = await download(job.api, url, {"Range": header})
        assert part.status == 206, header
        assert part.body == data[start : end + 1]
        assert part.headers["Content-Range"] == f"bytes {start}-{end}/200000"
        assert part.headers["Content-Length"] == str(end - start + 1)
    refused = await download(job.api, url, {"Range": "bytes=200000-"})
    assert refused.status == 416
    assert refused.headers["Content-Range"] == "bytes */200000"
    assert json.loads(refused.body)["code"] == "range_not_satisfiable"
    several = await download(job.api, url, {"Range": "bytes=0-1,5-6"})
    assert several.status == 200 and several.body == data
    clock.advance(899)
    assert (await download(job.api, url)).status == 200  # reusable until it expires
    clock.advance(1)
    expired = await download(job.api, url)
    assert expired.status == 404 and json.loads(expired.body)["code"] == "not_found"


async def test_a_missing_file_is_404(job: Job, artifacts_config: ArtifactsConfig) -> None:
    artifact = await job.publish("gone.bin", b"x")
    url = (await job.link(artifact["id"])).body["download_url"]
    (artifacts_dir(artifacts_config) / artifact["file_path"]).unlink()
    missing = await download(job.api, url)
    assert missing.status == 404 and json.loads(missing.body)["code"] == "not_found"


async def test_the_upload_url_is_a_local_path_of_this_server(job: Job, runtime: Runtime) -> None:
    runtime.artifacts.storage.listening_on("http://0.0.0.0:9999")
    reserved = await job.reserve("x.bin")
    assert reserved.body["upload_url"].startswith(
        "http://127.0.0.1:9999/v1/artifacts/local-upload/"
    )
    assert local_path(reserved.body["upload_url"]).startswith("/v1/artifacts/local-upload/")
