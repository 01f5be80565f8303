"""Settings API: artifact storage (contract §10.1), keys encrypted at rest (§8.4), and
the backend reloaded at once (§7.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oore.domain.crypto import SecretBox
from oore.domain.users import Role
from oore.runtime import Runtime
from oore.services.artifact_storage import ArtifactsConfig
from oore.store import Store
from tests.http.artifacts_kit import download, running_job, upload
from tests.http.builds_kit import Setup, repo, setup
from tests.http.conftest import Api, FakeClock, UserFactory

__all__ = ["repo", "setup"]

PATH = "/v1/settings/artifact-storage"
KEYS = {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "very-secret"}


async def put(api: Api, token: str, body: Any) -> Any:
    return await api.call("PUT", PATH, json=body, token=token)


async def test_the_default_is_local_under_the_data_directory(
    api: Api, owner_token: str, artifacts_config: ArtifactsConfig
) -> None:
    reply = await api.get(PATH, token=owner_token)
    assert reply.status == 200
    assert reply.body == {
        "settings": {
            "provider": "local",
            "local_base_dir": str(artifacts_config.data_dir / "artifacts"),  # type: ignore[operator]
            "has_access_key_id": False,
            "has_secret_access_key": False,
            "source": "default",
        }
    }


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.QA_VIEWER])
async def test_only_owner_and_admin_may_read_or_change_it(
    api: Api, make_user: UserFactory, role: Role
) -> None:
    user = await make_user(role)
    for reply in (
        await api.get(PATH, token=user.token),
        await put(api, user.token, {"provider": "disabled"}),
    ):
        assert (reply.status, reply.code) == (403, "permission_denied")
    admin = await make_user(Role.ADMIN)
    assert (await api.get(PATH, token=admin.token)).status == 200
    assert (await put(api, admin.token, {"provider": "disabled"})).status == 200
    assert (await api.get(PATH)).code == "missing_auth"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"provider": "local"}, "invalid_local_base_dir"),
        ({"provider": "local", "local_base_dir": "   "}, "invalid_local_base_dir"),
        ({"provider": "local", "local_base_dir": "relative/dir"}, "invalid_local_base_dir"),
        ({"provider": "s3", **KEYS}, "invalid_s3_bucket"),
        ({"provider": "s3", "s3_bucket": " ", **KEYS}, "invalid_s3_bucket"),
        ({"provider": "r2", "s3_bucket": "b", **KEYS}, "invalid_s3_endpoint"),
        ({"provider": "s3", "s3_bucket": "b"}, "missing_s3_credentials"),
        (
            {
                "provider": "r2",
                "s3_bucket": "b",
                "s3_endpoint": "https://r2.example",
                "access_key_id": "k",
            },
            "missing_s3_credentials",
        ),
        (
            {"provider": "s3", "s3_bucket": "b", "access_key_id": "k", "secret_access_key": ""},
            "missing_s3_credentials",
        ),
        ({"provider": "gcs"}, "invalid_request"),
        ({}, "invalid_request"),
        ({"provider": "local", "local_base_dir": 7}, "invalid_request"),
        ({"provider": "disabled", "colour": "red"}, "invalid_request"),
    ],
)
async def test_invalid_settings_are_refused(
    api: Api, owner_token: str, body: Any, code: str
) -> None:
    reply = await put(api, owner_token, body)
    assert (reply.status, reply.code) == (400, code)
    assert (await api.get(PATH, token=owner_token)).body["settings"]["source"] == "default"


async def test_s3_keys_are_encrypted_and_kept_when_omitted(
    api: Api, owner_token: str, store: Store, artifacts_config: ArtifactsConfig, clock: FakeClock
) -> None:
    body = {"provider": "s3", "s3_bucket": " builds ", "s3_endpoint": "https://s3.example", **KEYS}
    reply = await put(api, owner_token, body)
    assert reply.status == 200
    expected = {
        "provider": "s3",
        "s3_bucket": "builds",
        "s3_region": "us-east-1",
        "s3_endpoint": "https://s3.example",
        "has_access_key_id": True,
        "has_secret_access_key": True,
        "source": "database",
        "updated_at": clock.now(),
    }
    assert reply.body == {"settings": expected}
    assert (await api.get(PATH, token=owner_token)).body == {"settings": expected}
    row = await store.artifacts.storage_settings()
    assert row is not None and row.access_key_id_encrypted and row.secret_access_key_encrypted
    assert "very-secret" not in row.secret_access_key_encrypted
    box = artifacts_config.secrets
    assert isinstance(box, SecretBox)
    assert box.decrypt(row.access_key_id_encrypted) == "AKIAEXAMPLE"
    assert box.decrypt(row.secret_access_key_encrypted) == "very-secret"
    clock.advance(10)
    kept = await put(
        api,
        owner_token,
        {
            "provider": "r2",
            "s3_bucket": "b2",
            "s3_endpoint": "https://r2.example",
            "s3_region": "auto",
        },
    )
    assert kept.status == 200, kept.body
    assert (
        kept.body["settings"]["has_access_key_id"]
        and kept.body["settings"]["has_secret_access_key"]
    )
    assert kept.body["settings"]["s3_region"] == "auto"
    again = await store.artifacts.storage_settings()
    assert (
        again is not None and again.secret_access_key_encrypted == row.secret_access_key_encrypted
    )
    changed = await put(
        api, owner_token, {"provider": "s3", "s3_bucket": "b", "secret_access_key": "new"}
    )
    assert changed.status == 200
    latest = await store.artifacts.storage_settings()
    assert latest is not None and box.decrypt(latest.secret_access_key_encrypted or "") == "new"
    assert latest.access_key_id_encrypted == row.access_key_id_encrypted


async def test_local_and_disabled_clear_what_they_do_not_use(
    api: Api, owner_token: str, tmp_path: Path, store: Store
) -> None:
    await put(api, owner_token, {"provider": "s3", "s3_bucket": "b", **KEYS})
    local = await put(
        api,
        owner_token,
        {"provider": "local", "local_base_dir": str(tmp_path / "x"), "s3_bucket": "ignored"},
    )
    assert local.status == 200
    assert set(local.body["settings"]) == {
        "provider",
        "local_base_dir",
        "has_access_key_id",
        "has_secret_access_key",
        "source",
        "updated_at",
    }
    assert not local.body["settings"]["has_access_key_id"]
    missing = await put(api, owner_token, {"provider": "s3", "s3_bucket": "b"})
    assert (missing.status, missing.code) == (400, "missing_s3_credentials")  # keys were cleared
    disabled = await put(api, owner_token, {"provider": "disabled", "local_base_dir": "/x"})
    assert set(disabled.body["settings"]) == {
        "provider",
        "has_access_key_id",
        "has_secret_access_key",
        "source",
        "updated_at",
    }
    actions = [e.action for e in await store.audit.recent()]
    assert actions.count("artifact_storage_settings_updated") == 3


async def test_a_change_takes_effect_at_once(
    setup: Setup, tmp_path: Path, runtime: Runtime, artifacts_config: ArtifactsConfig
) -> None:
    job = await running_job(setup)
    api, token = setup.api, setup.token
    before = await job.publish("before.txt", b"old place")
    link_before = (await job.link(before["id"])).body["download_url"]

    elsewhere = tmp_path / "elsewhere"
    assert (
        await put(api, token, {"provider": "local", "local_base_dir": str(elsewhere)})
    ).status == 200
    after = await job.publish("after.txt", b"new place")
    assert (elsewhere / after["file_path"]).read_bytes() == b"new place"
    assert (
        await download(api, (await job.link(after["id"])).body["download_url"])
    ).body == b"new place"
    missing = await download(api, link_before)  # its file is in the old directory
    assert missing.status == 404

    assert (await put(api, token, {"provider": "disabled"})).status == 200
    reserved = await job.reserve("nowhere.txt")
    assert reserved.status == 200 and reserved.body["upload_url"] == ""
    assert reserved.body["artifact"]["state"] == "pending"
    link = await job.link(after["id"])
    assert (link.status, link.code) == (503, "storage_not_configured")


async def test_settings_that_cannot_work_disable_storage_but_are_reported(
    setup: Setup, tmp_path: Path, runtime: Runtime
) -> None:
    job = await running_job(setup)
    api, token = setup.api, setup.token
    bad = {"provider": "s3", "s3_bucket": "b", "s3_endpoint": "http://s3.example.com", **KEYS}
    saved = await put(api, token, bad)
    assert saved.status == 200
    assert (await api.get(PATH, token=token)).body["settings"][
        "s3_endpoint"
    ] == "http://s3.example.com"
    assert runtime.artifacts.storage.backend.provider == "disabled"
    assert (await job.reserve("x.txt")).body["upload_url"] == ""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    await put(api, token, {"provider": "local", "local_base_dir": str(blocker / "below")})
    assert runtime.artifacts.storage.backend.provider == "disabled"
    upload_url = (await job.reserve("y.txt")).body["upload_url"]
    assert upload_url == ""
    await put(api, token, {"provider": "local", "local_base_dir": str(tmp_path / "fine")})
    assert runtime.artifacts.storage.backend.provider == "local"
    reserved = await job.reserve("z.txt")
    assert (await upload(api, reserved.body["upload_url"], b"z")).status == 200
