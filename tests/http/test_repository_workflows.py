"""``GET /v1/projects/{id}/repository-workflows`` (contract §2.5, §8.1, §12): the pipeline
files of a repository at a ref, for a local git repository, GitHub and GitLab alike."""

from __future__ import annotations

import shutil
from pathlib import Path

from oore.domain.rbac import ProjectRole
from oore.domain.users import Role
from oore.store import Store
from oore.store.integrations import IntegrationFilter
from oore.store.projects import NewProject
from tests.http.builds_kit import git, repo
from tests.http.conftest import FakeClock, UserFactory
from tests.http.previews_kit import KINDS, Repos, repos, scm_config
from tests.scm_kit import fake_scm

__all__ = ["fake_scm", "repo", "repos", "scm_config"]

SECRET = "s3cr3t-value-never-shown"
ROOT_FILE = f"""version: 1
timeout: 600
runner_labels: [linux]
env:
  - {{key: API_TOKEN, value: {SECRET}, secret: true}}
  - {{key: MODE, value: release}}
steps:
  - name: build
    run: make
    env:
      - {{key: STEP_TOKEN, value: {SECRET}-step}}
  - name: cleanup
    run: make clean
    if: always()
"""
FLUTTER_FILE = """version: 1
platforms: [android]
env:
  - {key: FLAVOR, value: prod}
"""
INVALID_FILE = "version: 2\nplatforms: [android]\n"


def route(repos: Repos, kind: str) -> str:
    return f"/v1/projects/{repos.projects[kind]}/repository-workflows"


async def test_every_source_kind_previews_the_files_without_env_values(repos: Repos) -> None:
    head = repos.commit(
        {
            ".oore.yaml": ROOT_FILE,
            "services/api/.oore.yml": INVALID_FILE,
            "ci/custom.yaml": FLUTTER_FILE,
            "ci/unused.yaml": FLUTTER_FILE,
            "README.md": "# app\n",
        },
        "pipelines",
    )
    for kind in KINDS:
        await repos.pipeline(kind, config_path="ci/custom.yaml", config_path_explicit=True)
        reply = await repos.get(route(repos, kind))
        assert reply.status == 200, (kind, reply.body)
        assert SECRET not in str(reply.body) and "release" not in str(reply.body), kind
        body = reply.body
        assert (body["ref"], body["commit_sha"], body["path"]) == ("main", head, None), kind
        assert body["truncated"] is False
        assert [w["path"] for w in body["workflows"]] == [
            ".oore.yaml",
            "ci/custom.yaml",
            "services/api/.oore.yml",
        ], kind
        root, custom, invalid = body["workflows"]
        assert (root["valid"], root["errors"]) == (True, [])
        config = root["config"]
        assert config["env"] == [
            {"key": "API_TOKEN", "value": "[REDACTED]", "secret": True},
            {"key": "MODE", "value": "[REDACTED]"},
        ]
        assert [s["name"] for s in config["steps"]] == ["build", "cleanup"]
        assert config["steps"][0]["env"] == [{"key": "STEP_TOKEN", "value": "[REDACTED]"}]
        assert (config["steps"][1]["if"], config["timeout"]) == ("always()", 600)
        assert config["runner_labels"] == ["linux"]
        assert custom["valid"] and custom["config"]["platforms"] == ["android"]
        assert custom["config"]["env"] == [{"key": "FLAVOR", "value": "[REDACTED]"}]
        assert invalid["valid"] is False and "config" not in invalid
        assert any("version" in error for error in invalid["errors"])


async def test_a_ref_and_a_path_narrow_the_preview(repos: Repos) -> None:
    first = repos.commit({"app/.oore.yaml": FLUTTER_FILE}, "first file")
    git(repos.repo, "tag", "v1")
    repos.commit({"app/.oore.yaml": INVALID_FILE, "lib/.oore.yaml": FLUTTER_FILE}, "second")
    for kind in KINDS:
        at_tag = await repos.get(route(repos, kind), ref="v1")
        assert at_tag.status == 200, (kind, at_tag.body)
        assert at_tag.body["commit_sha"] == first and at_tag.body["ref"] == "v1"
        assert [(w["path"], w["valid"]) for w in at_tag.body["workflows"]] == [
            ("app/.oore.yaml", True)
        ], kind
        by_sha = await repos.get(route(repos, kind), ref=first, path="app")
        assert by_sha.body["commit_sha"] == first and by_sha.body["path"] == "app"
        assert [w["path"] for w in by_sha.body["workflows"]] == ["app/.oore.yaml"]
        one_file = await repos.get(route(repos, kind), path="lib/.oore.yaml")
        assert [w["path"] for w in one_file.body["workflows"]] == ["lib/.oore.yaml"], kind
        nothing = await repos.get(route(repos, kind), path="docs")
        assert (nothing.status, nothing.body["workflows"]) == (200, []), kind
    # GitLab lists only the directory asked for.
    trees = repos.scm.seen("/api/v4/projects/2002/repository/tree")
    assert {t.query.get("path") for t in trees} == {None, "app", "lib/.oore.yaml", "docs"}


async def test_at_most_16_files_each_at_most_128_kib(repos: Repos) -> None:
    files: dict[str, str | bytes] = {f"d{n:02d}/.oore.yaml": FLUTTER_FILE for n in range(17)}
    files[".oore.yaml"] = "version: 1\n" + "# padding\n" * 13200  # over 128 KiB
    files[".oore.yml"] = b"version: 1\nplatforms: [android]\n# \xff\xfe\n"
    repos.commit(files, "many")
    for kind in KINDS:
        reply = await repos.get(route(repos, kind))
        assert reply.status == 200, (kind, reply.body)
        workflows = reply.body["workflows"]
        assert len(workflows) == 16 and reply.body["truncated"] is True, kind
        assert [w["path"] for w in workflows[:3]] == [".oore.yaml", ".oore.yml", "d00/.oore.yaml"]
        big, binary = workflows[0], workflows[1]
        assert big["valid"] is False and "128" in big["errors"][0], (kind, big)
        assert binary["errors"] == ["the file is not UTF-8 text"], kind
        assert all(w["valid"] for w in workflows[2:])
        under = await repos.get(route(repos, kind), path="d16")
        assert [w["path"] for w in under.body["workflows"]] == ["d16/.oore.yaml"]
        assert under.body["truncated"] is False


async def test_a_listing_over_512_kib_is_cut_but_the_usual_files_are_read(repos: Repos) -> None:
    # Deep, long names make a listing over 512 KiB from 750 empty files.
    deep = "/".join(letter * 240 for letter in "abc")
    repos.stage_empty([f"filler/{deep}/{n:04d}" for n in range(750)])
    repos.commit({".oore.yaml": FLUTTER_FILE, "zz/.oore.yaml": FLUTTER_FILE}, "big")
    for kind in KINDS:
        reply = await repos.get(route(repos, kind))
        assert reply.status == 200, (kind, reply.body)
        assert reply.body["truncated"] is True, kind
        assert [w["path"] for w in reply.body["workflows"]] == [".oore.yaml"], kind
        asked = await repos.get(route(repos, kind), path="zz/.oore.yaml")
        assert [w["path"] for w in asked.body["workflows"]] == ["zz/.oore.yaml"], kind


async def test_bad_paths_and_refs_are_400(repos: Repos) -> None:
    for path in ("/etc", "a/../b", "a//b", "./a", "a\\b", "a/" * 300):
        reply = await repos.get(route(repos, "local_git"), path=path)
        assert (reply.status, reply.code) == (400, "invalid_config_path"), path
    for kind in KINDS:
        reply = await repos.get(route(repos, kind), ref="no-such-branch")
        assert (reply.status, reply.code) == (400, "invalid_ref"), kind


async def test_provider_failures_have_the_build_creation_codes(repos: Repos, store: Store) -> None:
    # A refused credential is the SCM client's code, and shows on the integration.
    repos.scm.github_fault = "reject"
    reply = await repos.get(route(repos, "github"))
    assert (reply.status, reply.code) == (502, "github_auth_failed")
    repos.scm.gitlab_fault = "reject"
    reply = await repos.get(route(repos, "gitlab"))
    assert (reply.status, reply.code) == (400, "gitlab_auth_failed")
    integrations, _, _ = await store.integrations.page(
        IntegrationFilter(None, None, None, True), limit=10, offset=0
    )
    assert sorted(i.problem.code for i in integrations if i.problem is not None) == [
        "github_auth_failed",
        "gitlab_auth_failed",
    ]
    repos.scm.github_fault = "broken"
    reply = await repos.get(route(repos, "github"))
    assert (reply.status, reply.code) == (502, "github_api_error")
    repos.scm.gitlab_fault = "broken"
    reply = await repos.get(route(repos, "gitlab"))
    assert (reply.status, reply.code) == (502, "gitlab_api_error")
    shutil.rmtree(repos.repo / ".git")
    reply = await repos.get(route(repos, "local_git"))
    assert (reply.status, reply.code) == (500, "git_error")


async def test_a_project_without_a_repository_is_409(
    repos: Repos, store: Store, clock: FakeClock
) -> None:
    me = (await repos.api.get("/v1/users/me", token=repos.token)).body["user"]
    bare = await store.projects.create(
        NewProject(
            name="bare",
            description=None,
            repository_id=None,
            default_branch="main",
            created_by=me["id"],
            now=clock.now(),
        )
    )
    reply = await repos.get(f"/v1/projects/{bare.id}/repository-workflows")
    assert (reply.status, reply.code) == (409, "source_not_configured")


async def test_managing_pipelines_is_needed(
    repos: Repos, make_user: UserFactory, tmp_path: Path
) -> None:
    repos.commit({".oore.yaml": FLUTTER_FILE}, "file")
    project = repos.projects["local_git"]
    path = route(repos, "local_git")
    callers = {}
    for name, role, membership in (
        ("viewer", Role.DEVELOPER, ProjectRole.VIEWER),
        ("developer", Role.DEVELOPER, ProjectRole.DEVELOPER),
        ("outsider", Role.DEVELOPER, None),
    ):
        user = await make_user(role)
        if membership is not None:
            added = await repos.api.post(
                f"/v1/projects/{project}/members",
                json={"user_id": user.user.id, "role": membership.value},
                token=repos.token,
            )
            assert added.status == 201, added.body
        callers[name] = user.token
    viewer = await repos.get(path, token=callers["viewer"])
    assert (viewer.status, viewer.code) == (403, "permission_denied")
    outsider = await repos.get(path, token=callers["outsider"])
    assert (outsider.status, outsider.code) == (404, "not_found")
    developer = await repos.get(path, token=callers["developer"])
    assert developer.status == 200 and len(developer.body["workflows"]) == 1
    unknown = await repos.get(
        "/v1/projects/00000000-0000-4000-8000-000000000000/repository-workflows"
    )
    assert (unknown.status, unknown.code) == (404, "not_found")
    anonymous = await repos.api.get(path)
    assert (anonymous.status, anonymous.code) == (401, "missing_auth")
