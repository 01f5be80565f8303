"""Pipelines API (contract §2.6, §8.1, §8.2)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from oore.domain import pipeline_config
from oore.domain.builds import BuildStatus, Transition
from oore.domain.pipeline_config import MAX_REPOSITORY_YAML_BYTES
from oore.domain.users import Role
from oore.store import Store
from tests.http.conftest import Api, FakeClock, Reply, UserFactory
from tests.http.test_projects import (
    CALLERS,
    add_build,
    add_member,
    create_project,
    delete,
    make_repo,
    patch,
)

ENV_CONFIG: dict[str, Any] = {
    "platforms": ["android", "ios"],
    "flutter_version": "3.22.0",
    "commands": {"pre_build": ["flutter pub get"], "build": ["make"], "post_build": []},
    "env": [{"key": "API_KEY", "value": "s3cret"}],
    "artifact_patterns": ["build/**/*.apk"],
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "app")


@pytest.fixture
async def project(api: Api, owner_token: str, repo: Path) -> dict[str, Any]:
    return await create_project(api, owner_token, repo)


async def create_pipeline(api: Api, token: str | None, project_id: str, **body: Any) -> Reply:
    return await api.post(
        f"/v1/projects/{project_id}/pipelines", json={"name": "ci", **body}, token=token
    )


async def test_create_with_defaults(
    api: Api, owner_token: str, project: dict[str, Any], store: Store, clock: FakeClock
) -> None:
    reply = await create_pipeline(api, owner_token, project["id"], name="  ci  ")
    assert reply.status == 201, reply.body
    pipeline = reply.body["pipeline"]
    uuid.UUID(pipeline["id"])
    assert pipeline == {
        "id": pipeline["id"],
        "project_id": project["id"],
        "name": "ci",
        "config_path": ".oore.yaml",
        "config_path_explicit": False,
        "execution_config": pipeline["execution_config"],
        "trigger_config": {"events": [], "branches": []},
        "concurrency": {"cancel_previous": False, "max_concurrent": None},
        "runner_labels": [],
        "enabled": True,
        "created_at": clock.now(),
        "updated_at": clock.now(),
    }
    execution = pipeline["execution_config"]
    assert execution["platforms"] == ["android"]
    assert execution["artifact_patterns"] == ["build/app/outputs/flutter-apk/*.apk"]
    assert execution["commands"] == {"pre_build": [], "build": [], "post_build": []}
    assert execution["env"] == []
    assert "pipeline_created" in [entry.action for entry in await store.audit.recent()]


async def test_create_with_every_field(
    api: Api, owner_token: str, project: dict[str, Any], store: Store
) -> None:
    reply = await create_pipeline(
        api,
        owner_token,
        project["id"],
        config_path="ci/app.yaml",
        config_path_explicit=True,
        execution_config=ENV_CONFIG,
        trigger_config={"events": [], "branches": []},
        concurrency={"cancel_previous": True, "max_concurrent": 2},
        runner_labels=["macos", "xcode-15"],
    )
    assert reply.status == 201, reply.body
    pipeline = reply.body["pipeline"]
    assert (pipeline["config_path"], pipeline["config_path_explicit"]) == ("ci/app.yaml", True)
    assert pipeline["concurrency"] == {"cancel_previous": True, "max_concurrent": 2}
    assert pipeline["runner_labels"] == ["macos", "xcode-15"]
    assert pipeline["execution_config"]["env"] == [{"key": "API_KEY", "value": "s3cret"}]
    assert pipeline["execution_config"]["platforms"] == ["android", "ios"]
    stored = await store.pipelines.get(pipeline["id"])
    assert stored is not None and stored.runner_labels == ("macos", "xcode-15")


# (label, body fields, status, code); the project is a local one (manual triggers only).
CREATE_ERRORS: list[tuple[str, dict[str, Any], int, str]] = [
    ("blank name", {"name": " "}, 400, "invalid_input"),
    ("missing name", {"name": None}, 400, "invalid_request"),
    (
        "events on a local project",
        {"trigger_config": {"events": ["push"], "branches": []}},
        400,
        "invalid_trigger_config",
    ),
    (
        "branches on a local project",
        {"trigger_config": {"events": [], "branches": ["main"]}},
        400,
        "invalid_trigger_config",
    ),
    (
        "unknown event",
        {"trigger_config": {"events": ["deploy"], "branches": []}},
        400,
        "invalid_trigger_config",
    ),
    (
        "max_concurrent 0",
        {"concurrency": {"cancel_previous": False, "max_concurrent": 0}},
        400,
        "invalid_concurrency",
    ),
    (
        "max_concurrent 101",
        {"concurrency": {"cancel_previous": False, "max_concurrent": 101}},
        400,
        "invalid_concurrency",
    ),
    ("path escapes", {"config_path": "../x.yaml"}, 400, "invalid_config_path"),
    ("absolute path", {"config_path": "/etc/x.yaml"}, 400, "invalid_config_path"),
    ("explicit without path", {"config_path_explicit": True}, 400, "invalid_config_path"),
    (
        "no platforms",
        {"execution_config": {**ENV_CONFIG, "platforms": []}},
        400,
        "invalid_execution_config",
    ),
    (
        "bad env key",
        {"execution_config": {**ENV_CONFIG, "env": [{"key": "1X", "value": ""}]}},
        400,
        "invalid_execution_config",
    ),
    ("blank label", {"runner_labels": [" "]}, 400, "invalid_runner_labels"),
    ("config not an object", {"execution_config": "android"}, 400, "invalid_request"),
    ("unknown field", {"colour": "red"}, 400, "invalid_request"),
]


async def test_create_errors(api: Api, owner_token: str, project: dict[str, Any]) -> None:
    path = f"/v1/projects/{project['id']}/pipelines"
    for label, fields, status, code in CREATE_ERRORS:
        body = {"name": "ci", **fields}
        if body["name"] is None:
            del body["name"]
        reply = await api.post(path, json=body, token=owner_token)
        assert (reply.status, reply.code) == (status, code), (label, reply.body)
    assert (await api.get(path, token=owner_token)).body["total"] == 0


async def test_create_checks_in_contract_order(
    api: Api, owner_token: str, project: dict[str, Any]
) -> None:
    missing = f"/v1/projects/{uuid.uuid4()}/pipelines"
    blank = await api.post(missing, json={"name": ""}, token=owner_token)
    assert (blank.status, blank.code) == (400, "invalid_input")
    unknown = await api.post(missing, json={"name": "ci"}, token=owner_token)
    assert (unknown.status, unknown.code) == (404, "not_found")
    everything_wrong = await create_pipeline(
        api,
        owner_token,
        project["id"],
        trigger_config={"events": ["deploy"], "branches": []},
        concurrency={"cancel_previous": False, "max_concurrent": 0},
        config_path="../x",
        execution_config={**ENV_CONFIG, "platforms": []},
    )
    assert everything_wrong.code == "invalid_trigger_config"
    no_trigger = await create_pipeline(
        api,
        owner_token,
        project["id"],
        concurrency={"cancel_previous": False, "max_concurrent": 0},
        config_path="../x",
    )
    assert no_trigger.code == "invalid_concurrency"
    two_problems = await create_pipeline(
        api,
        owner_token,
        project["id"],
        execution_config={**ENV_CONFIG, "platforms": [], "env": [{"key": "1X", "value": ""}]},
    )
    assert two_problems.code == "invalid_execution_config"
    assert "; " in two_problems.body["error"]


async def test_viewers_see_env_values_redacted(
    api: Api, owner_token: str, make_user: UserFactory, project: dict[str, Any]
) -> None:
    created = await create_pipeline(api, owner_token, project["id"], execution_config=ENV_CONFIG)
    pipeline_id = created.body["pipeline"]["id"]
    viewer = await make_user(Role.DEVELOPER)
    developer = await make_user(Role.DEVELOPER)
    qa = await make_user(Role.QA_VIEWER)
    await add_member(api, owner_token, project["id"], viewer.user.id, "viewer")
    await add_member(api, owner_token, project["id"], developer.user.id, "developer")
    await add_member(api, owner_token, project["id"], qa.user.id, "viewer")
    for token, value in (
        (owner_token, "s3cret"),
        (developer.token, "s3cret"),
        (viewer.token, "[REDACTED]"),
        (qa.token, "[REDACTED]"),
    ):
        one = await api.get(f"/v1/pipelines/{pipeline_id}", token=token)
        assert one.body["pipeline"]["execution_config"]["env"] == [
            {"key": "API_KEY", "value": value}
        ]
        listed = await api.get(f"/v1/projects/{project['id']}/pipelines", token=token)
        assert listed.body["pipelines"][0]["execution_config"]["env"][0]["value"] == value


async def test_list_pages_searches_and_sorts(
    api: Api, owner_token: str, project: dict[str, Any], clock: FakeClock
) -> None:
    for name in ("release", "nightly", "pull_requests", "nightly-ios"):
        assert (await create_pipeline(api, owner_token, project["id"], name=name)).status == 201
        clock.advance(5)
    base = f"/v1/projects/{project['id']}/pipelines"

    async def names(query: str) -> tuple[list[str], int]:
        reply = await api.get(f"{base}{query}", token=owner_token)
        assert reply.status == 200, reply.body
        return [p["name"] for p in reply.body["pipelines"]], reply.body["total"]

    assert await names("") == (["nightly-ios", "pull_requests", "nightly", "release"], 4)
    assert await names("?limit=1&offset=1") == (["pull_requests"], 4)
    assert await names("?sort=name&direction=asc&limit=-1") == (
        ["nightly", "nightly-ios", "pull_requests", "release"],
        4,
    )
    assert await names("?search=NIGHT&sort=created_at&direction=asc") == (
        ["nightly", "nightly-ios"],
        2,
    )
    assert await names("?search=%25") == ([], 0)
    for query in ("?sort=updated_at", "?direction=sideways"):
        reply = await api.get(f"{base}{query}", token=owner_token)
        assert (reply.status, reply.code) == (400, "invalid_input"), query
    for missing in (str(uuid.uuid4()), "nope"):
        gone = await api.get(f"/v1/projects/{missing}/pipelines", token=owner_token)
        assert (gone.status, gone.code) == (404, "not_found")


async def test_get_counts_builds(
    api: Api, owner_token: str, project: dict[str, Any], store: Store, clock: FakeClock
) -> None:
    created = await create_pipeline(api, owner_token, project["id"])
    pipeline_id = created.body["pipeline"]["id"]
    await add_build(store, clock, project["id"])
    reply = await api.get(f"/v1/pipelines/{pipeline_id}", token=owner_token)
    assert reply.status == 200
    assert reply.body["build_count"] == 1
    assert reply.body["pipeline"] == created.body["pipeline"]
    for missing in (str(uuid.uuid4()), "not-a-uuid"):
        gone = await api.get(f"/v1/pipelines/{missing}", token=owner_token)
        assert (gone.status, gone.code) == (404, "not_found")


async def test_patch_changes_only_given_fields(
    api: Api, owner_token: str, project: dict[str, Any], store: Store, clock: FakeClock
) -> None:
    created = (await create_pipeline(api, owner_token, project["id"])).body["pipeline"]
    path = f"/v1/pipelines/{created['id']}"
    clock.advance(30)
    reply = await patch(
        api,
        path,
        {
            "name": "renamed",
            "enabled": False,
            "runner_labels": ["linux"],
            "concurrency": {"cancel_previous": True, "max_concurrent": None},
            "execution_config": ENV_CONFIG,
        },
        owner_token,
    )
    assert reply.status == 200, reply.body
    changed = reply.body["pipeline"]
    assert (changed["name"], changed["enabled"], changed["runner_labels"]) == (
        "renamed",
        False,
        ["linux"],
    )
    assert changed["concurrency"]["cancel_previous"] is True
    assert changed["execution_config"]["env"][0]["value"] == "s3cret"
    assert changed["config_path"] == created["config_path"]
    assert changed["updated_at"] == created["updated_at"] + 30
    unchanged = await patch(api, path, {}, owner_token)
    assert unchanged.body["pipeline"] == changed
    nulls = await patch(api, path, {"name": None, "trigger_config": None}, owner_token)
    assert nulls.body["pipeline"] == changed
    explicit = await patch(api, path, {"config_path_explicit": True}, owner_token)
    assert explicit.body["pipeline"]["config_path_explicit"] is True
    assert "pipeline_updated" in [entry.action for entry in await store.audit.recent()]


PATCH_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"name": ""}, "invalid_input"),
    ({"trigger_config": {"events": ["push"], "branches": []}}, "invalid_trigger_config"),
    ({"concurrency": {"cancel_previous": False, "max_concurrent": 0}}, "invalid_concurrency"),
    ({"config_path": "a//b"}, "invalid_config_path"),
    ({"execution_config": {"platforms": ["windows"]}}, "invalid_execution_config"),
    ({"runner_labels": [""]}, "invalid_runner_labels"),
    ({"enabled": "yes"}, "invalid_request"),
]


async def test_patch_errors_change_nothing(
    api: Api, owner_token: str, project: dict[str, Any]
) -> None:
    created = (await create_pipeline(api, owner_token, project["id"])).body["pipeline"]
    path = f"/v1/pipelines/{created['id']}"
    for fields, code in PATCH_ERRORS:
        reply = await patch(api, path, fields, owner_token)
        assert (reply.status, reply.code) == (400, code), (fields, reply.body)
    after = await api.get(path, token=owner_token)
    assert after.body["pipeline"] == created


async def test_delete_refuses_while_a_build_is_unfinished(
    api: Api, owner_token: str, project: dict[str, Any], store: Store, clock: FakeClock
) -> None:
    created = (await create_pipeline(api, owner_token, project["id"])).body["pipeline"]
    path = f"/v1/pipelines/{created['id']}"
    finished = await add_build(store, clock, project["id"], status=BuildStatus.CANCELED)
    active = await add_build(store, clock, project["id"], status=BuildStatus.SCHEDULED)
    refused = await delete(api, path, owner_token)
    assert (refused.status, refused.code) == (409, "active_builds")
    await store.builds.transition(
        Transition(active, BuildStatus.SCHEDULED, BuildStatus.CANCELED, "t", "t", clock.now())
    )
    done = await delete(api, path, owner_token)
    assert (done.status, done.body) == (200, {"ok": True})
    assert await store.builds.get(finished) is None
    gone = await api.get(path, token=owner_token)
    assert (gone.status, gone.code) == (404, "not_found")
    again = await delete(api, path, owner_token)
    assert (again.status, again.code) == (404, "not_found")
    assert "pipeline_deleted" in [entry.action for entry in await store.audit.recent()]


# Expected statuses per caller, in CALLERS order (owner, admin, dev maintainer, dev developer,
# dev viewer, dev not a member, qa viewer, no token).
RBAC: list[tuple[str, list[int]]] = [
    ("list", [200, 200, 200, 200, 200, 404, 200, 401]),
    ("get", [200, 200, 200, 200, 200, 404, 200, 401]),
    ("create", [201, 201, 201, 201, 403, 404, 403, 401]),
    ("patch", [200, 200, 200, 200, 403, 404, 403, 401]),
    ("validate", [200, 200, 200, 200, 200, 200, 200, 401]),
    ("delete", [200, 200, 403, 403, 403, 403, 403, 401]),
]


@pytest.mark.parametrize("who", list(CALLERS))
async def test_pipeline_permissions(
    api: Api, owner_token: str, make_user: UserFactory, project: dict[str, Any], who: str
) -> None:
    role, membership = CALLERS[who]
    pid = project["id"]
    existing = (await create_pipeline(api, owner_token, pid, execution_config=ENV_CONFIG)).body
    pipeline_id = existing["pipeline"]["id"]
    token: str | None = owner_token
    if role is None:
        token = None
    elif role is not Role.OWNER:
        user = await make_user(role)
        token = user.token
        if membership is not None:
            await add_member(api, owner_token, pid, user.user.id, membership)
    column = list(CALLERS).index(who)
    for action, statuses in RBAC:
        expected = statuses[column]
        if action == "list":
            reply = await api.get(f"/v1/projects/{pid}/pipelines", token=token)
        elif action == "get":
            reply = await api.get(f"/v1/pipelines/{pipeline_id}", token=token)
        elif action == "create":
            reply = await create_pipeline(api, token, pid)
        elif action == "patch":
            reply = await patch(api, f"/v1/pipelines/{pipeline_id}", {"enabled": False}, token)
        elif action == "validate":
            reply = await api.post("/v1/pipelines/validate", json={}, token=token)
        else:
            reply = await delete(api, f"/v1/pipelines/{pipeline_id}", token)
        assert reply.status == expected, (action, reply.body)
        codes = {401: "missing_auth", 403: "permission_denied", 404: "not_found"}
        if expected in codes:
            assert reply.code == codes[expected], (action, reply.body)


async def test_every_route_needs_a_live_session(
    api: Api,
    owner_token: str,
    project: dict[str, Any],
    refused_sessions: list[tuple[str | None, str]],
) -> None:
    pipeline_id = (await create_pipeline(api, owner_token, project["id"])).body["pipeline"]["id"]
    # Bodies that decode: a body that does not is refused (400) before the session is read.
    calls: list[tuple[str, str, Any]] = [
        ("GET", f"/v1/projects/{project['id']}/pipelines", None),
        ("POST", f"/v1/projects/{project['id']}/pipelines", {"name": "ci"}),
        ("GET", f"/v1/pipelines/{pipeline_id}", None),
        ("PATCH", f"/v1/pipelines/{pipeline_id}", {"enabled": False}),
        ("DELETE", f"/v1/pipelines/{pipeline_id}", None),
        ("POST", "/v1/pipelines/validate", {}),
    ]
    for method, path, body in calls:
        for token, code in refused_sessions:
            reply = await api.call(method, path, json=body, token=token)
            assert (reply.status, reply.code) == (401, code), (method, path, token)
    after = await api.get(f"/v1/pipelines/{pipeline_id}", token=owner_token)
    assert after.body["pipeline"]["enabled"] is True


async def test_unknown_pipelines_are_not_found(api: Api, owner_token: str) -> None:
    for missing in (str(uuid.uuid4()), "not-a-uuid"):
        for method, body in (("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None)):
            reply = await api.call(method, f"/v1/pipelines/{missing}", json=body, token=owner_token)
            assert (reply.status, reply.code) == (404, "not_found"), (method, missing)


# -- validate ----------------------------------------------------------------------------------

VALID_YAML = """\
version: 1
platforms: [android]
commands:
  build: ["flutter build apk"]
"""


async def test_validate_accepts_a_good_config(api: Api, owner_token: str) -> None:
    reply = await api.post(
        "/v1/pipelines/validate",
        json={
            "config_path": "ci/oore.yaml",
            "config_path_explicit": True,
            "execution_config": ENV_CONFIG,
            "trigger_config": {"events": ["push", "tag_push"], "branches": ["main", "release/*"]},
            "concurrency": {"cancel_previous": True, "max_concurrent": 3},
            "runner_labels": ["macos"],
            "repository_yaml": VALID_YAML,
            "something_else": 1,
        },
        token=owner_token,
    )
    assert (reply.status, reply.body) == (200, {"valid": True, "errors": []})
    empty = await api.post("/v1/pipelines/validate", json={}, token=owner_token)
    assert empty.body == {"valid": True, "errors": []}


async def test_validate_collects_every_problem(api: Api, make_user: UserFactory) -> None:
    qa = await make_user(Role.QA_VIEWER)
    reply = await api.post(
        "/v1/pipelines/validate",
        json={
            "config_path_explicit": True,
            "execution_config": {"platforms": []},
            "trigger_config": {"events": ["deploy"], "branches": [""]},
            "concurrency": {"cancel_previous": False, "max_concurrent": 0},
            "runner_labels": [""],
            "repository_yaml": "version: 2\nplatforms: []\nextra: true\n",
        },
        token=qa.token,
    )
    assert reply.status == 200, reply.body
    assert reply.body["valid"] is False
    # explicit flag, execution, two trigger problems, concurrency, labels, and the YAML.
    assert len(reply.body["errors"]) >= 7, reply.body["errors"]


async def test_validate_reports_each_bad_field(api: Api, owner_token: str) -> None:
    for fields in (
        {"config_path": "../x"},
        {"config_path": 5},
        {"config_path_explicit": "yes"},
        {"execution_config": "android"},
        {"repository_yaml": "version: 1\n"},
        {"repository_yaml": ["not", "text"]},
        {"repository_yaml": "::: not yaml"},
    ):
        reply = await api.post("/v1/pipelines/validate", json=fields, token=owner_token)
        assert reply.status == 200, reply.body
        assert reply.body["valid"] is False and reply.body["errors"], (fields, reply.body)


async def test_validate_needs_a_json_object(api: Api, owner_token: str) -> None:
    reply = await api.post("/v1/pipelines/validate", json=[1], token=owner_token)
    assert (reply.status, reply.code) == (400, "invalid_request")


async def test_validate_refuses_a_pipeline_file_over_128_kib(api: Api, owner_token: str) -> None:
    padding = "# " + "x" * 78 + "\n"
    too_large = VALID_YAML + padding * (MAX_REPOSITORY_YAML_BYTES // len(padding))
    reply = await api.post(
        "/v1/pipelines/validate", json={"repository_yaml": too_large}, token=owner_token
    )
    assert (reply.status, reply.code) == (413, "payload_too_large")
    assert "at most 131,072 bytes (128 KiB)" in reply.body["details"]
    # Just under the bound it is parsed as usual.
    fits = VALID_YAML + padding * ((MAX_REPOSITORY_YAML_BYTES - len(VALID_YAML)) // len(padding))
    reply = await api.post(
        "/v1/pipelines/validate", json={"repository_yaml": fits}, token=owner_token
    )
    assert (reply.status, reply.body) == (200, {"valid": True, "errors": []})


async def test_validate_parses_the_file_on_a_worker_thread(
    api: Api, owner_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []
    parse = pipeline_config.parse_repository_yaml

    def watched(text: str) -> tuple[Any, list[str]]:
        threads.append(threading.current_thread())
        return parse(text)

    monkeypatch.setattr(pipeline_config, "parse_repository_yaml", watched)
    reply = await api.post(
        "/v1/pipelines/validate", json={"repository_yaml": VALID_YAML}, token=owner_token
    )
    assert (reply.status, reply.body) == (200, {"valid": True, "errors": []})
    assert len(threads) == 1 and threads[0] is not threading.main_thread()


async def test_a_value_the_database_cannot_hold_is_invalid_input(
    api: Api, owner_token: str, project: dict[str, Any]
) -> None:
    # PostgreSQL refuses NUL in text and JSON; a command may otherwise hold any text.
    reply = await api.post(
        f"/v1/projects/{project['id']}/pipelines",
        json={
            "name": "p",
            "execution_config": {"platforms": ["android"], "commands": {"build": ["echo \u0000"]}},
        },
        token=owner_token,
    )
    assert (reply.status, reply.code) == (400, "invalid_input")
