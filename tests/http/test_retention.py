"""Retention API: the instance's settings, the last cleanup run, and project overrides
(contract §2.14): shapes, defaults, validation, roles, audit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oore.domain.crypto import SecretBox
from oore.domain.users import Role
from oore.services.artifact_storage import ArtifactsConfig
from tests.http.builds_kit import Setup, repo, setup
from tests.http.conftest import Api, UserFactory

__all__ = ["repo", "setup"]

SETTINGS = "/v1/settings/retention"
LAST = "/v1/settings/retention/last-cleanup"
UNKNOWN = "00000000-0000-4000-8000-000000000001"


@pytest.fixture
def artifacts_config(tmp_path: Path) -> ArtifactsConfig:
    """The daemon runs with OORED_ARTIFACT_TTL_DAYS=14."""
    return ArtifactsConfig(data_dir=tmp_path / "data", secrets=SecretBox(bytes(32)), ttl_days=14)


def project_path(setup: Setup) -> str:
    return f"/v1/projects/{setup.project_id}/retention"


async def put(api: Api, path: str, token: str, body: Any) -> Any:
    return await api.call("PUT", path, json=body, token=token)


async def actions(api: Api, token: str) -> list[str]:
    audit = await api.get("/v1/audit-logs?limit=200", token=token)
    assert audit.status == 200, audit.body
    return [e["action"] for e in audit.body["entries"] if "retention" in e["action"]]


async def test_the_defaults_then_a_partial_update(api: Api, owner_token: str) -> None:
    first = await api.get(SETTINGS, token=owner_token)
    assert first.status == 200, first.body
    assert first.body == {
        "settings": {
            "artifact_retention_days": 14,
            "log_retention_days": None,
            "build_retention_days": None,
            "keep_last_builds": None,
            "target": "artifacts_only",
            "cleanup_interval_secs": 3600,
            "source": "default",
        }
    }
    saved = await put(
        api, SETTINGS, owner_token, {"log_retention_days": 30, "cleanup_interval_secs": 60}
    )
    assert saved.status == 200, saved.body
    settings = saved.body["settings"]
    assert settings["source"] == "database" and isinstance(settings["updated_at"], int)
    assert (settings["artifact_retention_days"], settings["log_retention_days"]) == (14, 30)
    assert settings["cleanup_interval_secs"] == 60
    forever = await put(
        api, SETTINGS, owner_token, {"artifact_retention_days": None, "target": "full"}
    )
    assert forever.body["settings"]["artifact_retention_days"] is None
    assert forever.body["settings"]["log_retention_days"] == 30
    assert forever.body["settings"]["target"] == "full"
    again = await api.get(SETTINGS, token=owner_token)
    assert again.body == forever.body
    assert await actions(api, owner_token) == ["retention_settings_updated"] * 2


BAD_SETTINGS: list[dict[str, Any]] = [
    {"artifact_retention_days": 0},
    {"log_retention_days": -1},
    {"build_retention_days": "30"},
    {"keep_last_builds": 1.5},
    {"keep_last_builds": False},
    {"cleanup_interval_secs": 59},
    {"cleanup_interval_secs": None},
    {"target": "all"},
]


async def test_bad_values_are_400_validation_error_naming_the_field(
    api: Api, owner_token: str
) -> None:
    for body in BAD_SETTINGS:
        reply = await put(api, SETTINGS, owner_token, body)
        assert (reply.status, reply.code) == (400, "validation_error"), reply.body
        assert next(iter(body)) in reply.body["error"]
    assert (await api.get(SETTINGS, token=owner_token)).body["settings"]["source"] == "default"
    undecodable: list[Any] = [{"retention_days": 3}, [1], "x"]
    for body in undecodable:
        reply = await put(api, SETTINGS, owner_token, body)
        assert (reply.status, reply.code) == (400, "invalid_request"), reply.body


async def test_only_owner_and_admin_read_and_write(
    api: Api, owner_token: str, make_user: UserFactory
) -> None:
    admin = await make_user(Role.ADMIN)
    assert (await put(api, SETTINGS, admin.token, {"keep_last_builds": 5})).status == 200
    assert (await api.get(LAST, token=admin.token)).status == 200
    for role in (Role.DEVELOPER, Role.QA_VIEWER):
        someone = await make_user(role)
        for reply in (
            await api.get(SETTINGS, token=someone.token),
            await put(api, SETTINGS, someone.token, {"keep_last_builds": 1}),
            await api.get(LAST, token=someone.token),
        ):
            assert (reply.status, reply.code) == (403, "permission_denied"), reply.body
    assert (await api.get(SETTINGS)).code == "missing_auth"
    settings = (await api.get(SETTINGS, token=owner_token)).body["settings"]
    assert settings["keep_last_builds"] == 5


async def test_before_any_run_the_last_cleanup_is_null(api: Api, owner_token: str) -> None:
    reply = await api.get(LAST, token=owner_token)
    assert reply.status == 200 and reply.body == {"cleanup": None}


async def test_a_project_override_merges_with_the_instance_and_can_be_removed(
    setup: Setup,
) -> None:
    api, token, path = setup.api, setup.token, project_path(setup)
    first = await api.get(path, token=token)
    assert first.status == 200, first.body
    assert first.body == {
        "project_id": setup.project_id,
        "settings": {},
        "effective": {
            "artifact_retention_days": 14,
            "log_retention_days": None,
            "build_retention_days": None,
            "keep_last_builds": None,
            "target": "artifacts_only",
        },
        "inherited": True,
    }
    assert (await put(api, SETTINGS, token, {"log_retention_days": 7})).status == 200
    saved = await put(api, path, token, {"artifact_retention_days": None, "keep_last_builds": 3})
    assert saved.status == 200, saved.body
    assert saved.body["settings"] == {"artifact_retention_days": None, "keep_last_builds": 3}
    assert saved.body["effective"] == {
        "artifact_retention_days": None,
        "log_retention_days": 7,
        "build_retention_days": None,
        "keep_last_builds": 3,
        "target": "artifacts_only",
    }
    assert saved.body["inherited"] is False
    assert (await api.get(path, token=token)).body == saved.body
    replaced = await put(api, path, token, {"target": "full"})
    assert replaced.body["settings"] == {"target": "full"}
    assert replaced.body["effective"]["artifact_retention_days"] == 14
    removed = await api.call("DELETE", path, token=token)
    assert removed.status == 200, removed.body
    inherited = {**first.body["effective"], "log_retention_days": 7}
    assert removed.body == {**first.body, "effective": inherited}
    assert (await api.call("DELETE", path, token=token)).body["inherited"] is True
    empty = await put(api, path, token, {})
    assert empty.status == 200 and empty.body["inherited"] is True
    assert sorted(await actions(api, token)) == sorted(
        ["retention_settings_updated"]
        + ["project_retention_updated"] * 3
        + ["project_retention_deleted"] * 2
    )


async def test_bad_override_values_are_400_validation_error(setup: Setup) -> None:
    for body in (
        {"build_retention_days": 0},
        {"keep_last_builds": "3"},
        {"target": None},
        {"log_retention_days": [1]},
    ):
        reply = await put(setup.api, project_path(setup), setup.token, body)
        assert (reply.status, reply.code) == (400, "validation_error"), reply.body
    assert (await setup.api.get(project_path(setup), token=setup.token)).body["inherited"]
    unknown = await put(setup.api, project_path(setup), setup.token, {"cleanup_interval_secs": 60})
    assert (unknown.status, unknown.code) == (400, "invalid_request")


async def test_members_read_maintainers_write_strangers_see_nothing(
    setup: Setup, make_user: UserFactory
) -> None:
    api, path = setup.api, project_path(setup)
    developer = await make_user(Role.DEVELOPER)
    for method in ("GET", "PUT", "DELETE"):
        hidden = await api.call(method, path, json={}, token=developer.token)
        assert (hidden.status, hidden.code) == (404, "not_found"), (method, hidden.body)
        unknown = await api.call(
            method, f"/v1/projects/{UNKNOWN}/retention", json={}, token=setup.token
        )
        assert (unknown.status, unknown.code) == (404, "not_found")
    for role in ("viewer", "developer", "maintainer"):
        member = await make_user(Role.DEVELOPER)
        added = await api.post(
            f"/v1/projects/{setup.project_id}/members",
            json={"user_id": member.user.id, "role": role},
            token=setup.token,
        )
        assert added.status == 201, added.body
        assert (await api.get(path, token=member.token)).status == 200
        written = await put(api, path, member.token, {"keep_last_builds": 2})
        removed = await api.call("DELETE", path, token=member.token)
        if role == "maintainer":
            assert (written.status, removed.status) == (200, 200)
        else:
            assert (written.status, written.code) == (403, "permission_denied")
            assert (removed.status, removed.code) == (403, "permission_denied")
