"""Manual builds of every source kind (contract §2.7): without a commit the branch head
comes from the provider (local ``git``, GitHub, GitLab), and the pipeline file at the
build's commit routes and bounds the build, read through the same provider."""

from __future__ import annotations

from typing import Any

from oore.runtime import Runtime
from oore.store import Store
from oore.store.integrations import IntegrationFilter
from tests.http.builds_kit import git, repo
from tests.http.conftest import FakeClock, Reply
from tests.http.previews_kit import KINDS, Repos, repos, scm_config
from tests.scm_kit import fake_scm
from tests.webhook_kit import github_source

__all__ = ["fake_scm", "repo", "repos", "scm_config"]

GPU_FILE = """\
version: 1
runner_labels: [gpu]
timeout: 60
steps:
  - name: train
    run: ./train.sh
"""


def labels(build: dict[str, Any]) -> list[str]:
    """The labels a runner must have to take the build (absent when there are none)."""
    found: list[str] = build.get("runner_labels", [])
    return found


async def trigger(repos: Repos, kind: str, pipeline_id: str, **body: Any) -> Reply:
    return await repos.api.post(
        f"/v1/projects/{repos.projects[kind]}/builds",
        json={"pipeline_id": pipeline_id, **body},
        token=repos.token,
    )


async def test_every_kind_builds_the_branch_head_with_the_files_settings(repos: Repos) -> None:
    head = repos.commit({".oore.yaml": GPU_FILE}, "pipeline file")
    git(repos.repo, "checkout", "-q", "-b", "feature/x")
    feature = repos.commit({"feature.txt": "x\n"}, "feature work")
    git(repos.repo, "checkout", "-q", "main")
    for kind in KINDS:
        pipeline = await repos.pipeline(kind, runner_labels=["linux"])
        reply = await trigger(repos, kind, pipeline)
        assert reply.status == 201, (kind, reply.body)
        build = reply.body["build"]
        assert (build["commit_sha"], build["branch"]) == (head, "main"), kind
        assert labels(build) == ["gpu", "linux"], kind
        assert build["config_snapshot"]["commit_sha"] == head, kind
        assert build["config_snapshot"]["timeout_seconds"] == 60, kind
        reply = await trigger(repos, kind, pipeline, branch="feature/x")
        assert reply.status == 201, (kind, reply.body)
        assert reply.body["build"]["commit_sha"] == feature, kind
    # The remote heads and files came from the providers' APIs.
    assert repos.scm.seen("/gh-api/repos/acme/app/commits/main")
    assert repos.scm.seen("/gh-api/repos/acme/app/contents/.oore.yaml")
    assert repos.scm.seen("/api/v4/projects/2002/repository/commits/feature%2Fx")
    assert repos.scm.seen("/api/v4/projects/2002/repository/files/.oore.yaml/raw")


async def test_the_file_is_read_at_the_given_commit_and_by_its_explicit_path(
    repos: Repos,
) -> None:
    bare = git(repos.repo, "rev-parse", "HEAD")
    custom = repos.commit({"ci/train.yaml": GPU_FILE}, "custom pipeline file")
    for kind in KINDS:
        default = await repos.pipeline(kind)
        explicit = await repos.pipeline(
            kind, config_path="ci/train.yaml", config_path_explicit=True
        )
        reply = await trigger(repos, kind, default)
        assert reply.status == 201, (kind, reply.body)
        assert labels(reply.body["build"]) == [], kind  # no .oore.yaml
        reply = await trigger(repos, kind, explicit)
        assert reply.status == 201, (kind, reply.body)
        build = reply.body["build"]
        assert (build["commit_sha"], labels(build)) == (custom, ["gpu"]), kind
        reply = await trigger(repos, kind, explicit, branch="main", commit_sha=bare)
        assert reply.status == 201, (kind, reply.body)
        build = reply.body["build"]
        assert (build["commit_sha"], labels(build)) == (bare, []), kind
        assert "timeout_seconds" not in build["config_snapshot"], kind


async def test_an_invalid_or_too_large_file_adds_nothing(repos: Repos) -> None:
    repos.commit(
        {".oore.yaml": GPU_FILE.replace("timeout: 60", "timeout: soon"), ".oore.yml": GPU_FILE},
        "invalid file",
    )
    for kind in KINDS:
        reply = await trigger(repos, kind, repos.pipelines[kind])
        assert reply.status == 201, (kind, reply.body)
        # The runner fails the build on the first file; the second is never used.
        assert labels(reply.body["build"]) == [], kind
    repos.commit({".oore.yaml": "version: 1\n" + "# padding\n" * 13200}, "too large")
    for kind in KINDS:
        reply = await trigger(repos, kind, repos.pipelines[kind])
        assert reply.status == 201, (kind, reply.body)
        assert labels(reply.body["build"]) == [], kind


async def test_an_unknown_branch_is_400_invalid_ref(repos: Repos) -> None:
    for kind in KINDS:
        reply = await trigger(repos, kind, repos.pipelines[kind], branch="no-such-branch")
        assert (reply.status, reply.code) == (400, "invalid_ref"), kind
    builds = await repos.get("/v1/builds")
    assert builds.body["total"] == 0


async def test_provider_failures_are_502_with_the_providers_code(
    repos: Repos, store: Store
) -> None:
    for fault in ("broken", "reject"):
        repos.scm.github_fault = fault
        reply = await trigger(repos, "github", repos.pipelines["github"])
        assert (reply.status, reply.code) == (502, "github_api_error"), fault
    for fault in ("broken", "reject", "garbage"):
        repos.scm.gitlab_fault = fault
        reply = await trigger(repos, "gitlab", repos.pipelines["gitlab"])
        assert (reply.status, reply.code) == (502, "gitlab_api_error"), fault
    # A refused credential shows on the integration, as on every other call presenting it.
    integrations, _, _ = await store.integrations.page(
        IntegrationFilter(None, None, None, True), limit=10, offset=0
    )
    assert sorted(i.problem.code for i in integrations if i.problem is not None) == [
        "github_auth_failed",
        "gitlab_auth_failed",
    ]
    assert (await repos.get("/v1/builds")).body["total"] == 0


async def test_a_given_commit_is_built_even_when_the_provider_is_down(repos: Repos) -> None:
    head = repos.commit({".oore.yaml": GPU_FILE}, "pipeline file")
    repos.scm.github_fault = repos.scm.gitlab_fault = "broken"
    for kind in ("github", "gitlab"):
        reply = await trigger(repos, kind, repos.pipelines[kind], branch="main", commit_sha=head)
        assert reply.status == 201, (kind, reply.body)
        build = reply.body["build"]
        # The file is read again by the runner at checkout, which applies it.
        assert (build["commit_sha"], labels(build)) == (head, []), kind
        canceled = await repos.api.post(f"/v1/builds/{build['id']}/cancel", token=repos.token)
        assert canceled.status == 200, canceled.body
        rerun = await repos.api.post(f"/v1/builds/{build['id']}/rerun", token=repos.token)
        assert rerun.status == 201, rerun.body  # a rerun copies the snapshot: no provider
        assert rerun.body["build"]["commit_sha"] == head, kind


async def test_a_source_without_usable_credentials_is_409(
    repos: Repos, store: Store, runtime: Runtime, clock: FakeClock
) -> None:
    box = runtime.identity.secrets
    assert box is not None
    source = await github_source(
        store, box, clock.now(), host_url=repos.scm.scm_config.github_web_url
    )
    created = await repos.api.post(
        "/v1/projects",
        json={"name": "no-key", "repository_id": source.repository_id},
        token=repos.token,
    )
    assert created.status == 201, created.body
    repos.projects["no-key"] = created.body["project"]["id"]
    pipeline = await repos.pipeline("no-key")
    reply = await trigger(repos, "no-key", pipeline)
    assert (reply.status, reply.code) == (409, "source_unresolvable")
    # With its commit given, the build needs nothing from the provider.
    reply = await trigger(repos, "no-key", pipeline, branch="main", commit_sha="a" * 40)
    assert reply.status == 201, reply.body


async def test_webhook_builds_take_the_remote_files_settings(
    repos: Repos, store: Store, runtime: Runtime
) -> None:
    head = repos.commit({".oore.yaml": GPU_FILE}, "pipeline file")
    for kind in ("github", "gitlab"):
        project = await store.projects.get(repos.projects[kind])
        pipeline = await store.pipelines.get(repos.pipelines[kind])
        assert project is not None and pipeline is not None
        build = await runtime.builds.trigger_from_webhook(
            project, pipeline, commit_sha=head, branch="main", event="push", actor=None
        )
        assert build.required_labels == ("gpu",), kind
        assert build.config_snapshot["timeout_seconds"] == 60, kind
