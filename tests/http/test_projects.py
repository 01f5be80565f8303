"""Projects API and project members (contract §2.5)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from oore.domain.builds import BuildStatus, Transition, TriggerType
from oore.domain.setup import Preferences, RuntimeMode
from oore.domain.users import Role, UserStatus
from oore.store import Store
from oore.store.builds import NewBuild
from oore.store.pipelines import NewPipeline
from tests.http.conftest import Api, FakeClock, Reply, UserFactory


def run_git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@e", "-c", "user.name=t", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def make_repo(path: Path, branch: str = "main") -> Path:
    path.mkdir(parents=True)
    run_git(path, "init", "-q", "-b", branch)
    (path / "README").write_text("hello\n")
    run_git(path, "add", "README")
    run_git(path, "commit", "-q", "-m", "first")
    return path.resolve()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "app")


async def patch(api: Api, path: str, body: Any, token: str | None) -> Reply:
    return await api.call("PATCH", path, json=body, token=token)


async def delete(api: Api, path: str, token: str | None) -> Reply:
    return await api.call("DELETE", path, token=token)


async def create_project(api: Api, token: str, repo: Path, name: str = "app") -> dict[str, Any]:
    reply = await api.post(
        "/v1/projects", json={"name": name, "local_repository_path": str(repo)}, token=token
    )
    assert reply.status == 201, reply.body
    project: dict[str, Any] = reply.body["project"]
    return project


async def add_member(api: Api, token: str, project_id: str, user_id: str, role: str) -> None:
    reply = await api.post(
        f"/v1/projects/{project_id}/members", json={"user_id": user_id, "role": role}, token=token
    )
    assert reply.status == 201, reply.body


async def add_build(
    store: Store, clock: FakeClock, project_id: str, *, status: BuildStatus = BuildStatus.QUEUED
) -> str:
    """A build inserted directly (queued), then moved to ``status`` through legal steps."""
    pipelines, _ = await store.pipelines.page(
        project_id, search=None, sort="created_at", descending=False, limit=1, offset=0
    )
    if pipelines:
        pipeline_id = pipelines[0].id
    else:
        pipeline_id = (
            await store.pipelines.create(
                NewPipeline(
                    project_id=project_id,
                    name="ci",
                    config_path=".oore.yaml",
                    config_path_explicit=False,
                    execution_config={"platforms": ["android"]},
                    trigger_config={"events": [], "branches": []},
                    concurrency={"cancel_previous": False, "max_concurrent": None},
                    runner_labels=(),
                    now=clock.now(),
                )
            )
        ).id
    build = await store.builds.create(
        NewBuild(
            project_id=project_id,
            pipeline_id=pipeline_id,
            trigger_type=TriggerType.MANUAL,
            trigger_actor="test",
            trigger_event=None,
            trigger_ref="main",
            commit_sha="0" * 40,
            branch="main",
            changelog=None,
            source_build_id=None,
            config_snapshot={},
            required_labels=(),
            reason="test",
            now=clock.now(),
        )
    )
    assert build is not None
    if status is not BuildStatus.QUEUED:
        await store.builds.transition(
            Transition(build.id, BuildStatus.QUEUED, status, "test", "test", clock.now())
        )
    return build.id


# -- create ------------------------------------------------------------------------------------


async def test_create_from_a_local_repository(
    api: Api, owner_token: str, repo: Path, store: Store
) -> None:
    reply = await api.post(
        "/v1/projects",
        json={"name": "  app  ", "description": "the app", "local_repository_path": str(repo)},
        token=owner_token,
    )
    assert reply.status == 201, reply.body
    project = reply.body["project"]
    assert project["name"] == "app"
    assert project["description"] == "the app"
    assert project["default_branch"] == "main"
    assert project["settings"] == {}
    assert project["current_user_role"] == "maintainer"
    assert "repository_full_name" not in project and "repository_provider" not in project
    uuid.UUID(project["repository_id"])
    assert await store.projects.members(project["id"]) == []
    shown = await api.get(f"/v1/projects/{project['id']}", token=owner_token)
    assert shown.body["project"]["repository_full_name"] == "app"
    assert shown.body["project"]["repository_provider"] == "local_git"
    assert "project_created" in [entry.action for entry in await store.audit.recent()]


async def test_a_local_repository_is_reused_by_canonical_path(
    api: Api, owner_token: str, repo: Path, tmp_path: Path
) -> None:
    link = tmp_path / "link"
    link.symlink_to(repo)
    first = await create_project(api, owner_token, repo, "one")
    second = await create_project(api, owner_token, link, "two")
    assert first["repository_id"] == second["repository_id"]


@pytest.fixture
def bare(repo: Path, tmp_path: Path) -> Path:
    path = tmp_path / "bare.git"
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(repo), str(path)], check=True, capture_output=True
    )
    return path


async def test_a_bare_repository_and_an_explicit_default_branch(
    api: Api, owner_token: str, bare: Path
) -> None:
    project = await create_project(api, owner_token, bare)
    assert project["default_branch"] == "main"
    other = await api.post(
        "/v1/projects",
        json={"name": "x", "local_repository_path": str(bare), "default_branch": "release"},
        token=owner_token,
    )
    assert other.body["project"]["default_branch"] == "release"


async def test_create_from_a_known_repository_id(api: Api, owner_token: str, repo: Path) -> None:
    first = await create_project(api, owner_token, repo)
    reply = await api.post(
        "/v1/projects",
        json={"name": "again", "repository_id": first["repository_id"]},
        token=owner_token,
    )
    assert reply.status == 201, reply.body
    assert reply.body["project"]["repository_id"] == first["repository_id"]
    assert reply.body["project"]["default_branch"] == "main"


CREATE_ERRORS: list[tuple[str, dict[str, Any], int, str]] = [
    ("no source", {"name": "x"}, 400, "invalid_input"),
    (
        "both sources",
        {"name": "x", "local_repository_path": "{repo}", "repository_id": str(uuid.uuid4())},
        400,
        "invalid_input",
    ),
    ("blank name", {"name": "  ", "local_repository_path": "{repo}"}, 400, "invalid_input"),
    ("relative path", {"name": "x", "local_repository_path": "app"}, 400, "invalid_input"),
    ("missing path", {"name": "x", "local_repository_path": "{tmp}/nope"}, 400, "invalid_input"),
    ("not git", {"name": "x", "local_repository_path": "{tmp}/plain"}, 400, "invalid_repository"),
    (
        "inside a work tree",
        {"name": "x", "local_repository_path": "{repo}/sub"},
        400,
        "invalid_repository",
    ),
    (
        "unknown repository",
        {"name": "x", "repository_id": str(uuid.uuid4())},
        400,
        "invalid_repository",
    ),
    ("repository id not a uuid", {"name": "x", "repository_id": "abc"}, 400, "invalid_repository"),
    ("missing name", {"local_repository_path": "{repo}"}, 400, "invalid_request"),
    ("unknown field", {"name": "x", "colour": "red"}, 400, "invalid_request"),
]


async def test_create_errors(api: Api, owner_token: str, repo: Path, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    (repo / "sub").mkdir()
    for label, body, status, code in CREATE_ERRORS:
        sent = {
            key: value.replace("{repo}", str(repo)).replace("{tmp}", str(tmp_path))
            for key, value in body.items()
        }
        reply = await api.post("/v1/projects", json=sent, token=owner_token)
        assert (reply.status, reply.code) == (status, code), (label, reply.body)
    assert (await api.get("/v1/projects", token=owner_token)).body["total"] == 0


async def test_local_repositories_need_local_mode(
    api: Api, owner_token: str, repo: Path, store: Store, clock: FakeClock
) -> None:
    first = await create_project(api, owner_token, repo)
    second = await create_project(api, owner_token, make_repo(repo.parent / "other"), "other")
    await store.instance.set_preferences(Preferences(runtime_mode=RuntimeMode.REMOTE), clock.now())
    by_path = await api.post(
        "/v1/projects", json={"name": "x", "local_repository_path": str(repo)}, token=owner_token
    )
    assert (by_path.status, by_path.code) == (403, "mode_restricted")
    by_id = await api.post(
        "/v1/projects",
        json={"name": "x", "repository_id": first["repository_id"]},
        token=owner_token,
    )
    assert (by_id.status, by_id.code) == (403, "mode_restricted")
    relinked = await patch(
        api, f"/v1/projects/{second['id']}", {"repository_id": first["repository_id"]}, owner_token
    )
    assert (relinked.status, relinked.code) == (403, "mode_restricted")
    shown = await api.get(f"/v1/projects/{second['id']}", token=owner_token)
    assert shown.body["project"]["repository_id"] == second["repository_id"]


@pytest.mark.parametrize(
    ("role", "status", "code"),
    [
        (Role.ADMIN, 201, None),
        (Role.DEVELOPER, 403, "insufficient_role"),
        (Role.QA_VIEWER, 403, "insufficient_role"),
    ],
)
async def test_only_owner_and_admin_create(
    api: Api, make_user: UserFactory, repo: Path, role: Role, status: int, code: str | None
) -> None:
    user = await make_user(role)
    reply = await api.post(
        "/v1/projects", json={"name": "x", "local_repository_path": str(repo)}, token=user.token
    )
    assert (reply.status, reply.code) == (status, code)


async def test_every_route_needs_a_live_session(
    api: Api, owner_token: str, repo: Path, refused_sessions: list[tuple[str | None, str]]
) -> None:
    # A real project: a refusal must come from the credential, not from a missing project.
    some = (await create_project(api, owner_token, repo))["id"]
    calls = [
        ("GET", "/v1/projects"),
        ("POST", "/v1/projects"),
        ("GET", f"/v1/projects/{some}"),
        ("PATCH", f"/v1/projects/{some}"),
        ("DELETE", f"/v1/projects/{some}"),
        ("GET", f"/v1/projects/{some}/members"),
        ("GET", f"/v1/projects/{some}/members/candidates"),
        ("POST", f"/v1/projects/{some}/members"),
        ("PATCH", f"/v1/projects/{some}/members/{some}"),
        ("DELETE", f"/v1/projects/{some}/members/{some}"),
    ]
    # Valid bodies: a body that does not decode is refused (400) before the session is read.
    bodies = {"/v1/projects": {"name": "x", "repository_id": some}}
    for method, path in calls:
        body = bodies.get(path, {"user_id": some, "role": "viewer"}) if method == "POST" else None
        if method == "PATCH":
            body = {"role": "viewer"} if "/members/" in path else {}
        for token, code in refused_sessions:
            reply = await api.call(method, path, json=body, token=token)
            assert (reply.status, reply.code) == (401, code), (method, path, token)
    assert (await api.get(f"/v1/projects/{some}", token=owner_token)).status == 200


# -- list and get --------------------------------------------------------------------------------


async def test_listing_shows_members_only_their_projects(
    api: Api, owner_token: str, make_user: UserFactory, repo: Path, clock: FakeClock
) -> None:
    ids = []
    for name in ("alpha", "beta", "gamma"):
        ids.append((await create_project(api, owner_token, repo, name))["id"])
        clock.advance(10)
    dev = await make_user(Role.DEVELOPER)
    qa = await make_user(Role.QA_VIEWER)
    await add_member(api, owner_token, ids[0], dev.user.id, "developer")
    await add_member(api, owner_token, ids[2], dev.user.id, "maintainer")
    await add_member(api, owner_token, ids[1], qa.user.id, "viewer")

    everything = await api.get("/v1/projects", token=owner_token)
    assert everything.body["total"] == 3
    assert [p["name"] for p in everything.body["projects"]] == ["gamma", "beta", "alpha"]
    assert {p["current_user_role"] for p in everything.body["projects"]} == {"maintainer"}

    mine = await api.get("/v1/projects?sort=name&direction=asc", token=dev.token)
    assert mine.body["total"] == 2
    assert [(p["name"], p["current_user_role"]) for p in mine.body["projects"]] == [
        ("alpha", "developer"),
        ("gamma", "maintainer"),
    ]
    theirs = await api.get("/v1/projects", token=qa.token)
    assert [(p["name"], p["current_user_role"]) for p in theirs.body["projects"]] == [
        ("beta", "viewer")
    ]
    stranger = await make_user(Role.DEVELOPER)
    assert (await api.get("/v1/projects", token=stranger.token)).body == {
        "projects": [],
        "total": 0,
    }


async def test_listing_pages_searches_and_sorts(
    api: Api, owner_token: str, repo: Path, clock: FakeClock
) -> None:
    for name in ("web", "mobile app", "web_admin", "backend"):
        await create_project(api, owner_token, repo, name)
        clock.advance(5)

    async def names(query: str) -> tuple[list[str], int]:
        reply = await api.get(f"/v1/projects{query}", token=owner_token)
        assert reply.status == 200, reply.body
        return [p["name"] for p in reply.body["projects"]], reply.body["total"]

    assert await names("?limit=2") == (["backend", "web_admin"], 4)
    assert await names("?limit=2&offset=2") == (["mobile app", "web"], 4)
    assert await names("?limit=-1&sort=name&direction=asc") == (
        ["backend", "mobile app", "web", "web_admin"],
        4,
    )
    assert await names("?search=WEB&sort=name&direction=asc") == (["web", "web_admin"], 2)
    assert await names("?search=_") == (["web_admin"], 1)
    assert await names("?offset=10") == ([], 4)
    assert await names("?integration_id=abc") == ([], 0)
    for query in ("?sort=size", "?direction=up"):
        reply = await api.get(f"/v1/projects{query}", token=owner_token)
        assert (reply.status, reply.code) == (400, "invalid_input"), query
    bad = await api.get("/v1/projects?limit=many", token=owner_token)
    assert (bad.status, bad.code) == (400, "invalid_request")


async def test_get_shows_counts_and_the_callers_role(
    api: Api, owner_token: str, repo: Path, store: Store, clock: FakeClock
) -> None:
    project = await create_project(api, owner_token, repo)
    await add_build(store, clock, project["id"])
    await add_build(store, clock, project["id"])
    reply = await api.get(f"/v1/projects/{project['id']}", token=owner_token)
    assert reply.status == 200
    assert reply.body["pipeline_count"] == 1
    assert reply.body["build_count"] == 2
    assert reply.body["current_user_role"] == "maintainer"
    for missing in (str(uuid.uuid4()), "not-a-uuid"):
        gone = await api.get(f"/v1/projects/{missing}", token=owner_token)
        assert (gone.status, gone.code) == (404, "not_found")


# -- RBAC across the project routes -----------------------------------------------------------

# Who is calling: an instance role and, for developers and QA viewers, a membership.
CALLERS: dict[str, tuple[Role | None, str | None]] = {
    "owner": (Role.OWNER, None),
    "admin": (Role.ADMIN, None),
    "dev maintainer": (Role.DEVELOPER, "maintainer"),
    "dev developer": (Role.DEVELOPER, "developer"),
    "dev viewer": (Role.DEVELOPER, "viewer"),
    "dev not a member": (Role.DEVELOPER, None),
    "qa viewer": (Role.QA_VIEWER, "viewer"),
    "no token": (None, None),
}

# Expected statuses per caller, in CALLERS order.
RBAC: list[tuple[str, list[int]]] = [
    ("get", [200, 200, 200, 200, 200, 404, 200, 401]),
    ("list members", [200, 200, 200, 403, 403, 404, 403, 401]),
    ("patch", [200, 200, 200, 403, 403, 404, 403, 401]),
    ("add member", [201, 201, 201, 403, 403, 404, 403, 401]),
    ("candidates", [200, 200, 200, 403, 403, 404, 403, 401]),
    ("set member role", [200, 200, 200, 403, 403, 404, 403, 401]),
    ("remove member", [200, 200, 200, 403, 403, 404, 403, 401]),
    ("delete", [200, 200, 200, 403, 403, 404, 403, 401]),
]


@pytest.mark.parametrize("who", list(CALLERS))
async def test_project_permissions(
    api: Api, owner_token: str, make_user: UserFactory, repo: Path, who: str
) -> None:
    role, membership = CALLERS[who]
    project = await create_project(api, owner_token, repo)
    pid = project["id"]
    # A maintainer row keeps member changes legal whoever the caller is.
    keeper = await make_user(Role.DEVELOPER)
    await add_member(api, owner_token, pid, keeper.user.id, "maintainer")
    token: str | None = owner_token
    if role is None:
        token = None
    elif role is not Role.OWNER:
        user = await make_user(role)
        token = user.token
        if membership is not None:
            await add_member(api, owner_token, pid, user.user.id, membership)
    newcomer = await make_user(Role.DEVELOPER)
    # A member for the member routes to change, whoever is allowed to add one.
    member = await make_user(Role.DEVELOPER)
    await add_member(api, owner_token, pid, member.user.id, "viewer")
    column = list(CALLERS).index(who)
    for action, statuses in RBAC:
        expected = statuses[column]
        if action == "get":
            reply = await api.get(f"/v1/projects/{pid}", token=token)
        elif action == "list members":
            reply = await api.get(f"/v1/projects/{pid}/members", token=token)
        elif action == "patch":
            reply = await patch(api, f"/v1/projects/{pid}", {"name": "renamed"}, token)
        elif action == "add member":
            reply = await api.post(
                f"/v1/projects/{pid}/members",
                json={"user_id": newcomer.user.id, "role": "viewer"},
                token=token,
            )
        elif action == "candidates":
            reply = await api.get(f"/v1/projects/{pid}/members/candidates", token=token)
        elif action == "set member role":
            reply = await patch(
                api, f"/v1/projects/{pid}/members/{member.user.id}", {"role": "developer"}, token
            )
        elif action == "remove member":
            reply = await delete(api, f"/v1/projects/{pid}/members/{member.user.id}", token)
        else:
            reply = await delete(api, f"/v1/projects/{pid}", token)
        assert reply.status == expected, (action, reply.body)
        codes = {401: "missing_auth", 403: "permission_denied", 404: "not_found"}
        if expected in codes:
            assert reply.code == codes[expected], (action, reply.body)


# -- patch -------------------------------------------------------------------------------------


async def test_patch_changes_only_given_fields(
    api: Api, owner_token: str, repo: Path, store: Store, clock: FakeClock
) -> None:
    project = await create_project(api, owner_token, repo)
    path = f"/v1/projects/{project['id']}"
    clock.advance(60)
    reply = await patch(
        api,
        path,
        {"name": " renamed ", "description": "d", "default_branch": "dev", "settings": {"a": 1}},
        owner_token,
    )
    assert reply.status == 200, reply.body
    changed = reply.body["project"]
    assert (changed["name"], changed["description"]) == ("renamed", "d")
    assert (changed["default_branch"], changed["settings"]) == ("dev", {"a": 1})
    assert changed["updated_at"] == project["created_at"] + 60
    assert changed["current_user_role"] == "maintainer"
    again = await patch(api, path, {"name": None, "description": None}, owner_token)
    assert again.body["project"] == changed
    empty = await patch(api, path, {}, owner_token)
    assert empty.body["project"] == changed
    assert "project_updated" in [entry.action for entry in await store.audit.recent()]


async def test_patch_errors(api: Api, owner_token: str, make_user: UserFactory, repo: Path) -> None:
    project = await create_project(api, owner_token, repo)
    path = f"/v1/projects/{project['id']}"
    blank = await patch(api, path, {"name": " "}, owner_token)
    assert (blank.status, blank.code) == (400, "invalid_input")
    unknown = await patch(api, path, {"repository_id": str(uuid.uuid4())}, owner_token)
    assert (unknown.status, unknown.code) == (400, "invalid_repository")
    wrong_type = await patch(api, path, {"settings": []}, owner_token)
    assert (wrong_type.status, wrong_type.code) == (400, "invalid_request")
    maintainer = await make_user(Role.DEVELOPER)
    await add_member(api, owner_token, project["id"], maintainer.user.id, "maintainer")
    same = await patch(api, path, {"repository_id": project["repository_id"]}, maintainer.token)
    assert same.status == 200
    other = await create_project(api, owner_token, make_repo(repo.parent / "other"), "other")
    moved = await patch(api, path, {"repository_id": other["repository_id"]}, maintainer.token)
    assert (moved.status, moved.code) == (403, "insufficient_role")


async def test_changing_the_source_cancels_waiting_builds(
    api: Api, owner_token: str, repo: Path, store: Store, clock: FakeClock
) -> None:
    project = await create_project(api, owner_token, repo)
    waiting = await add_build(store, clock, project["id"])
    scheduled = await add_build(store, clock, project["id"], status=BuildStatus.SCHEDULED)
    running = await add_build(store, clock, project["id"], status=BuildStatus.SCHEDULED)
    await store.builds.transition(
        Transition(running, BuildStatus.SCHEDULED, BuildStatus.ASSIGNED, "t", "t", clock.now())
    )
    other = await create_project(api, owner_token, make_repo(repo.parent / "other"), "other")
    shown = await api.get(f"/v1/projects/{project['id']}", token=owner_token)
    reply = await patch(
        api, f"/v1/projects/{project['id']}", {"repository_id": other["repository_id"]}, owner_token
    )
    assert reply.status == 200, reply.body
    assert reply.body["project"]["repository_id"] == other["repository_id"]
    for build_id, status in (
        (waiting, BuildStatus.CANCELED),
        (scheduled, BuildStatus.CANCELED),
        (running, BuildStatus.ASSIGNED),
    ):
        build = await store.builds.get(build_id)
        assert build is not None and build.status is status
    events = await store.builds.events(waiting)
    assert events[-1].to_status is BuildStatus.CANCELED
    assert events[-1].reason is not None and "source" in events[-1].reason
    names = (
        shown.body["project"]["repository_full_name"],
        reply.body["project"]["repository_full_name"],
    )
    assert all(names) and names[0] != names[1]
    linked = [e for e in await store.audit.recent() if e.action == "project_source_link_updated"]
    assert [e.details for e in linked] == [
        {
            "previous_repository_id": project["repository_id"],
            "previous_repository_full_name": shown.body["project"]["repository_full_name"],
            "repository_id": other["repository_id"],
            "repository_full_name": reply.body["project"]["repository_full_name"],
            "updated_by": "owner@local",
            "canceled_builds": 2,
        }
    ]


# -- delete ------------------------------------------------------------------------------------


async def test_delete_refuses_while_a_build_is_unfinished(
    api: Api, owner_token: str, repo: Path, store: Store, clock: FakeClock
) -> None:
    project = await create_project(api, owner_token, repo)
    path = f"/v1/projects/{project['id']}"
    finished = await add_build(store, clock, project["id"], status=BuildStatus.CANCELED)
    active = await add_build(store, clock, project["id"])
    refused = await delete(api, path, owner_token)
    assert (refused.status, refused.code) == (409, "active_builds")
    await store.builds.transition(
        Transition(active, BuildStatus.QUEUED, BuildStatus.CANCELED, "t", "t", clock.now())
    )
    done = await delete(api, path, owner_token)
    assert (done.status, done.body) == (200, {"ok": True})
    assert await store.builds.get(finished) is None
    gone = await api.get(path, token=owner_token)
    assert (gone.status, gone.code) == (404, "not_found")
    again = await delete(api, path, owner_token)
    assert (again.status, again.code) == (404, "not_found")
    assert "project_deleted" in [entry.action for entry in await store.audit.recent()]


# -- members -----------------------------------------------------------------------------------


async def test_member_lifecycle(
    api: Api, owner_token: str, make_user: UserFactory, repo: Path, store: Store
) -> None:
    project = await create_project(api, owner_token, repo)
    base = f"/v1/projects/{project['id']}/members"
    dev = await make_user(Role.DEVELOPER)
    added = await api.post(
        base, json={"user_id": dev.user.id, "role": "developer"}, token=owner_token
    )
    assert added.status == 201, added.body
    member = added.body["member"]
    assert member == {
        "project_id": project["id"],
        "user_id": dev.user.id,
        "email": dev.user.email,
        "role": "developer",
        "created_at": member["created_at"],
    }
    listed = await api.get(base, token=owner_token)
    assert listed.body == {"members": [member], "total": 1}
    hidden = await api.get(base, token=dev.token)  # a project developer may not manage members
    assert (hidden.status, hidden.code) == (403, "permission_denied")
    changed = await patch(api, f"{base}/{dev.user.id}", {"role": "maintainer"}, owner_token)
    assert (changed.status, changed.body["member"]["role"]) == (200, "maintainer")
    removed_last = await delete(api, f"{base}/{dev.user.id}", owner_token)
    assert (removed_last.status, removed_last.code) == (409, "last_maintainer")
    demoted_last = await patch(api, f"{base}/{dev.user.id}", {"role": "viewer"}, owner_token)
    assert (demoted_last.status, demoted_last.code) == (409, "last_maintainer")
    second = await make_user(Role.DEVELOPER)
    await add_member(api, owner_token, project["id"], second.user.id, "maintainer")
    demoted = await patch(api, f"{base}/{dev.user.id}", {"role": "viewer"}, dev.token)
    assert (demoted.status, demoted.body["member"]["role"]) == (200, "viewer")
    removed = await delete(api, f"{base}/{dev.user.id}", owner_token)
    assert (removed.status, removed.body) == (200, {"ok": True})
    missing = await delete(api, f"{base}/{dev.user.id}", owner_token)
    assert (missing.status, missing.code) == (404, "not_found")
    not_member = await patch(api, f"{base}/{dev.user.id}", {"role": "viewer"}, owner_token)
    assert (not_member.status, not_member.code) == (404, "not_found")
    bad_id = await patch(api, f"{base}/nope", {"role": "viewer"}, owner_token)
    assert (bad_id.status, bad_id.code) == (404, "not_found")
    actions = [entry.action for entry in await store.audit.recent()]
    for action in ("project_member_added", "project_member_updated", "project_member_removed"):
        assert action in actions


async def test_add_member_errors(
    api: Api,
    owner_token: str,
    make_user: UserFactory,
    repo: Path,
    store: Store,
    clock: FakeClock,
) -> None:
    project = await create_project(api, owner_token, repo)
    base = f"/v1/projects/{project['id']}/members"
    dev = await make_user(Role.DEVELOPER)
    qa = await make_user(Role.QA_VIEWER)
    admin = await make_user(Role.ADMIN)
    owner = (await api.get("/v1/users/me", token=owner_token)).body["user"]
    disabled = await store.users.create(
        email="off@example.com",
        role=Role.DEVELOPER,
        status=UserStatus.DISABLED,
        subject=None,
        now=clock.now(),
    )
    invited = await store.users.create(
        email="soon@example.com",
        role=Role.DEVELOPER,
        status=UserStatus.INVITED,
        subject=None,
        now=clock.now(),
    )
    await add_member(api, owner_token, project["id"], dev.user.id, "developer")
    cases: list[tuple[str, str, int, str | None]] = [
        (str(uuid.uuid4()), "viewer", 400, "invalid_user"),
        ("not-a-uuid", "viewer", 400, "invalid_user"),
        (disabled.id, "viewer", 400, "invalid_user"),
        (admin.user.id, "viewer", 400, "invalid_user"),
        (owner["id"], "viewer", 400, "invalid_user"),
        (qa.user.id, "developer", 400, "invalid_project_role"),
        (invited.id, "boss", 400, "invalid_project_role"),
        (dev.user.id, "viewer", 409, "already_member"),
        (qa.user.id, "viewer", 201, None),
        (invited.id, "maintainer", 201, None),
    ]
    for user_id, role, status, code in cases:
        reply = await api.post(base, json={"user_id": user_id, "role": role}, token=owner_token)
        assert (reply.status, reply.code) == (status, code), (user_id, role, reply.body)
    qa_up = await patch(api, f"{base}/{qa.user.id}", {"role": "developer"}, owner_token)
    assert (qa_up.status, qa_up.code) == (400, "invalid_project_role")
    bogus = await patch(api, f"{base}/{dev.user.id}", {"role": "boss"}, owner_token)
    assert (bogus.status, bogus.code) == (400, "invalid_project_role")
    no_role = await api.post(base, json={"user_id": dev.user.id}, token=owner_token)
    assert (no_role.status, no_role.code) == (400, "invalid_request")


async def test_candidates_are_developers_and_qa_not_yet_members(
    api: Api, owner_token: str, make_user: UserFactory, repo: Path
) -> None:
    project = await create_project(api, owner_token, repo)
    member = await make_user(Role.DEVELOPER, "a@example.com")
    outsider = await make_user(Role.DEVELOPER, "b@example.com")
    qa = await make_user(Role.QA_VIEWER, "c@example.com")
    await make_user(Role.ADMIN, "d@example.com")
    await add_member(api, owner_token, project["id"], member.user.id, "viewer")
    reply = await api.get(f"/v1/projects/{project['id']}/members/candidates", token=owner_token)
    assert reply.status == 200
    assert reply.body["candidates"] == [
        {"id": outsider.user.id, "email": "b@example.com", "role": "developer", "status": "active"},
        {"id": qa.user.id, "email": "c@example.com", "role": "qa_viewer", "status": "active"},
    ]
    assert reply.body["total"] == 2
