"""``GET /v1/projects/{id}/builds/changelog-preview`` (contract §2.7): the commits since the
pipeline's last succeeded build as Markdown, for every source kind; and the ``changelog``
a build is created with (≤ 4,000 bytes) and keeps on rerun."""

from __future__ import annotations

import shutil

from oore.domain.builds import BuildStatus
from oore.domain.rbac import ProjectRole
from oore.domain.users import Role
from oore.store import Store
from oore.store.projects import NewProject
from tests.http.builds_kit import git, repo
from tests.http.conftest import FakeClock, UserFactory
from tests.http.previews_kit import KINDS, Repos, repos, scm_config, succeeded_build
from tests.scm_kit import fake_scm

__all__ = ["fake_scm", "repo", "repos", "scm_config"]


def route(repos: Repos, kind: str) -> str:
    return f"/v1/projects/{repos.projects[kind]}/builds/changelog-preview"


async def preview(repos: Repos, kind: str, **query: str) -> dict[str, object]:
    reply = await repos.get(route(repos, kind), pipeline_id=repos.pipelines[kind], **query)
    assert reply.status == 200, (kind, reply.body)
    body: dict[str, object] = reply.body
    return body


async def test_every_source_kind_lists_the_commits_since_the_last_good_build(
    repos: Repos, store: Store, clock: FakeClock
) -> None:
    base = repos.commit({"a.txt": "a"}, "Start")
    middle = repos.commit({"b.txt": "b"}, "Fix *bold* [link](x) #1 <b>", author="Bob_Builder")
    head = repos.commit({"c.txt": "c"}, "Second title\n\nthe body is left out", author="Cara")
    for kind in KINDS:
        await succeeded_build(store, clock, repos.projects[kind], repos.pipelines[kind], base)
        body = await preview(repos, kind, branch="main")
        assert body == {
            "base_commit": base,
            "target_commit": head,
            "markdown": "- Second title — Cara\n"
            "- Fix \\*bold\\* \\[link\\]\\(x\\) \\#1 \\<b\\> — Bob\\_Builder",
        }, kind
        # A short commit is resolved to the full SHA; the branch is not needed then.
        at = await preview(repos, kind, commit_sha=middle[:10])
        assert at["target_commit"] == middle, kind
        assert at["markdown"] == "- Fix \\*bold\\* \\[link\\]\\(x\\) \\#1 \\<b\\> — Bob\\_Builder"


async def test_no_good_build_or_the_same_commit_gives_an_empty_changelog(
    repos: Repos, store: Store, clock: FakeClock
) -> None:
    head = repos.commit({"a.txt": "a"}, "Only")
    for kind in KINDS:
        project, pipeline = repos.projects[kind], repos.pipelines[kind]
        await succeeded_build(store, clock, project, pipeline, head, BuildStatus.FAILED)
        assert await preview(repos, kind, branch="main") == {
            "target_commit": head,
            "markdown": "",
        }, kind
        await succeeded_build(store, clock, project, pipeline, head)
        assert await preview(repos, kind, branch="main") == {
            "base_commit": head,
            "target_commit": head,
            "markdown": "",
        }, kind
        # The last good build's commit is gone from the repository (a force push).
        await succeeded_build(store, clock, project, pipeline, "f" * 40)
        assert await preview(repos, kind, branch="main") == {
            "target_commit": head,
            "markdown": "",
        }, kind


async def test_a_base_off_the_branch_lists_what_the_branch_adds(
    repos: Repos, store: Store, clock: FakeClock
) -> None:
    root = repos.commit({"a.txt": "a"}, "Root")
    git(repos.repo, "checkout", "-q", "-b", "side")
    side = repos.commit({"s.txt": "s"}, "Side work")
    git(repos.repo, "checkout", "-q", "main")
    repos.commit({"m.txt": "1"}, "Main one")
    head = repos.commit({"m.txt": "2"}, "Main two")
    git(repos.repo, "merge", "-q", "--no-ff", "-m", "Merge side", "side")
    merged = git(repos.repo, "rev-parse", "HEAD")
    for kind in KINDS:
        await succeeded_build(store, clock, repos.projects[kind], repos.pipelines[kind], side)
        body = await preview(repos, kind, commit_sha=head)
        assert body["markdown"] == "- Main two — Ada\n- Main one — Ada", kind
        assert body["base_commit"] == side and root not in str(body)
        after_merge = await preview(repos, kind, branch="main")
        assert after_merge["target_commit"] == merged
        assert str(after_merge["markdown"]).splitlines()[0] == "- Merge side — t", kind


async def test_a_long_changelog_is_capped_with_the_count_of_the_rest(
    repos: Repos, store: Store, clock: FakeClock
) -> None:
    base = repos.commit({"a.txt": "a"}, "Start")
    titles = [f"Change number {n:03d}: tune the *widgets* é" for n in range(150)]
    repos.many_commits(titles)
    for kind in KINDS:
        await succeeded_build(store, clock, repos.projects[kind], repos.pipelines[kind], base)
        markdown = str((await preview(repos, kind, branch="main"))["markdown"])
        assert len(markdown.encode()) <= 3900, kind
        lines = markdown.split("\n")
        shown = len(lines) - 1
        assert lines[-1] == f"…and {150 - shown} more changes", kind
        assert lines[0] == "- Change number 149: tune the \\*widgets\\* é — Dana"
        assert lines[shown - 1].startswith(f"- Change number {150 - shown:03d}:")
        assert len(markdown.encode()) + len(lines[1].encode()) > 3900  # one more would not fit


async def test_the_preview_is_a_changelog_a_build_keeps_on_rerun(
    repos: Repos, store: Store, clock: FakeClock
) -> None:
    base = repos.commit({"a.txt": "a"}, "Start")
    repos.many_commits([f"Première modification n° {n} — «accents»" for n in range(200)])
    project, pipeline = repos.projects["local_git"], repos.pipelines["local_git"]
    await succeeded_build(store, clock, project, pipeline, base)
    markdown = (await preview(repos, "local_git", branch="main"))["markdown"]
    trigger = f"/v1/projects/{project}/builds"
    created = await repos.api.post(
        trigger, json={"pipeline_id": pipeline, "changelog": markdown}, token=repos.token
    )
    assert created.status == 201, created.body
    build = created.body["build"]
    assert build["changelog"] == markdown
    canceled = await repos.api.post(f"/v1/builds/{build['id']}/cancel", token=repos.token)
    assert canceled.status == 200, canceled.body
    rerun = await repos.api.post(f"/v1/builds/{build['id']}/rerun", token=repos.token)
    assert rerun.status == 201 and rerun.body["build"]["changelog"] == markdown
    # The bound is in bytes: 2,000 two-byte characters fit, 2,001 do not.
    for text, status in (("é" * 2000, 201), ("é" * 2001, 400), ("  ", 201)):
        reply = await repos.api.post(
            trigger, json={"pipeline_id": pipeline, "changelog": text}, token=repos.token
        )
        assert reply.status == status, (text[:3], reply.body)
        if status == 400:
            assert reply.code == "invalid_input"
        else:
            assert reply.body["build"].get("changelog") == (text.strip() or None)


async def test_bad_requests_and_missing_things(
    repos: Repos, store: Store, clock: FakeClock
) -> None:
    repos.commit({"a.txt": "a"}, "Start")
    path, pipeline = route(repos, "local_git"), repos.pipelines["local_git"]
    neither = await repos.get(path, pipeline_id=pipeline)
    assert (neither.status, neither.code) == (400, "invalid_input")
    no_pipeline = await repos.get(path, branch="main")
    assert (no_pipeline.status, no_pipeline.code) == (400, "invalid_request")
    for other in ("00000000-0000-4000-8000-000000000000", "nope", repos.pipelines["github"]):
        reply = await repos.get(path, pipeline_id=other, branch="main")
        assert (reply.status, reply.code) == (404, "not_found"), other
    unknown = "/v1/projects/00000000-0000-4000-8000-000000000000/builds/changelog-preview"
    reply = await repos.get(unknown, pipeline_id=pipeline, branch="main")
    assert (reply.status, reply.code) == (404, "not_found")
    for kind in KINDS:
        for query in ({"branch": "no-such-branch"}, {"commit_sha": "0" * 40}):
            reply = await repos.get(route(repos, kind), pipeline_id=repos.pipelines[kind], **query)
            assert (reply.status, reply.code) == (400, "invalid_ref"), (kind, query)
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
    bare_pipeline = await repos.api.post(
        f"/v1/projects/{bare.id}/pipelines", json={"name": "ci"}, token=repos.token
    )
    reply = await repos.get(
        f"/v1/projects/{bare.id}/builds/changelog-preview",
        pipeline_id=bare_pipeline.body["pipeline"]["id"],
        branch="main",
    )
    assert (reply.status, reply.code) == (409, "source_not_configured")


async def test_provider_failures_have_the_build_creation_codes(repos: Repos) -> None:
    repos.commit({"a.txt": "a"}, "Start")
    repos.scm.github_fault = "broken"
    reply = await repos.get(
        route(repos, "github"), pipeline_id=repos.pipelines["github"], branch="main"
    )
    assert (reply.status, reply.code) == (502, "github_api_error")
    repos.scm.gitlab_fault = "broken"
    reply = await repos.get(
        route(repos, "gitlab"), pipeline_id=repos.pipelines["gitlab"], branch="main"
    )
    assert (reply.status, reply.code) == (502, "gitlab_api_error")
    shutil.rmtree(repos.repo / ".git")
    local = route(repos, "local_git")
    reply = await repos.get(local, pipeline_id=repos.pipelines["local_git"], branch="main")
    assert (reply.status, reply.code) == (500, "git_error")


async def test_triggering_builds_is_needed(repos: Repos, make_user: UserFactory) -> None:
    repos.commit({"a.txt": "a"}, "Start")
    project = repos.projects["local_git"]
    callers = {}
    for name, membership in (
        ("viewer", ProjectRole.VIEWER),
        ("developer", ProjectRole.DEVELOPER),
        ("outsider", None),
    ):
        user = await make_user(Role.DEVELOPER)
        if membership is not None:
            added = await repos.api.post(
                f"/v1/projects/{project}/members",
                json={"user_id": user.user.id, "role": membership.value},
                token=repos.token,
            )
            assert added.status == 201, added.body
        callers[name] = user.token
    query = {"pipeline_id": repos.pipelines["local_git"], "branch": "main"}
    path = route(repos, "local_git")
    viewer = await repos.get(path, token=callers["viewer"], **query)
    assert (viewer.status, viewer.code) == (403, "permission_denied")
    outsider = await repos.get(path, token=callers["outsider"], **query)
    assert (outsider.status, outsider.code) == (404, "not_found")
    developer = await repos.get(path, token=callers["developer"], **query)
    assert developer.status == 200, developer.body
    anonymous = await repos.api.get(path)
    assert (anonymous.status, anonymous.code) == (401, "missing_auth")
