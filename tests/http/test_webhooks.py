"""Webhook receivers over HTTP: signed deliveries become exactly one build each (§9.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import trio

from oore.domain.crypto import SecretBox
from oore.domain.webhooks import FORK_BLOCKED, MAX_BODY_BYTES, Provider
from oore.runtime import Runtime, open_runtime
from oore.services.artifact_storage import ArtifactsConfig
from oore.services.logs import LogConfig
from oore.services.network import NetworkDefaults
from oore.services.scheduling import SchedulingConfig
from oore.store import Store
from oore.store.webhooks import Delivery, NewDelivery
from tests.http.conftest import REMOTE, Api, FakeClock, Reply
from tests.http.setup_kit import proxy_ready, vouch
from tests.webhook_kit import (
    SHA_A,
    SHA_B,
    ZERO,
    Source,
    encoded,
    github_headers,
    github_pull_request,
    github_push,
    github_source,
    gitlab_headers,
    gitlab_merge_request,
    gitlab_push,
    gitlab_source,
    pipeline_body,
)

GITHUB = "/v1/webhooks/github"
GITLAB = "/v1/webhooks/gitlab"


@dataclass
class Hooks:
    api: Api
    runtime: Runtime
    store: Store
    clock: FakeClock
    token: str
    github: Source
    gitlab: Source
    github_project: str
    gitlab_project: str

    async def pipeline(self, project_id: str, **body: Any) -> str:
        reply = await self.api.post(
            f"/v1/projects/{project_id}/pipelines", json=pipeline_body(**body), token=self.token
        )
        assert reply.status == 201, reply.body
        pipeline_id: str = reply.body["pipeline"]["id"]
        return pipeline_id

    async def github_hook(
        self, payload: Any, *, event: str = "push", raw: bytes | None = None, **kw: Any
    ) -> Reply:
        body = encoded(payload) if raw is None else raw
        headers = github_headers(body, event=event, **kw)
        return await self.api.post(GITHUB, data=body, headers=headers, peer=REMOTE)

    async def gitlab_hook(self, payload: Any, *, raw: bytes | None = None, **kw: Any) -> Reply:
        body = encoded(payload) if raw is None else raw
        return await self.api.post(GITLAB, data=body, headers=gitlab_headers(**kw), peer=REMOTE)

    async def settled(self) -> None:
        """Wait (bounded) until the worker handled every delivery it was told about."""
        with trio.fail_after(10):
            await self.runtime.webhooks.drain_now()

    async def builds(self, project_id: str) -> list[dict[str, Any]]:
        reply = await self.api.get(f"/v1/builds?project_id={project_id}", token=self.token)
        assert reply.status == 200, reply.body
        found: list[dict[str, Any]] = reply.body["builds"]
        return sorted(found, key=lambda b: b["build_number"])

    async def deliveries(self, source: Source) -> list[Delivery]:
        return await self.store.webhooks.of_integration(source.integration_id)


def _box(runtime: Runtime) -> SecretBox:
    box = runtime.identity.secrets
    assert box is not None
    return box


@pytest.fixture
async def hooks(api: Api, runtime: Runtime, store: Store, clock: FakeClock) -> Hooks:
    """Remote mode behind a trusted proxy, a GitHub and a GitLab source, a project on each."""
    await proxy_ready(api, runtime)
    signed_in = await api.post(
        "/v1/auth/trusted-proxy/login", headers=vouch("owner@example.com"), peer=REMOTE
    )
    assert signed_in.status == 200, signed_in.body
    token: str = signed_in.body["session_token"]
    github = await github_source(store, _box(runtime), clock.now())
    gitlab = await gitlab_source(store, _box(runtime), clock.now())
    projects = []
    for name, source in (("gh", github), ("gl", gitlab)):
        reply = await api.post(
            "/v1/projects", json={"name": name, "repository_id": source.repository_id}, token=token
        )
        assert reply.status == 201, reply.body
        projects.append(reply.body["project"]["id"])
    return Hooks(api, runtime, store, clock, token, github, gitlab, projects[0], projects[1])


# -- valid deliveries ----------------------------------------------------------------------------


async def test_a_signed_github_push_queues_exactly_one_build(hooks: Hooks) -> None:
    pipeline_id = await hooks.pipeline(hooks.github_project)
    reply = await hooks.github_hook(github_push())
    assert (reply.status, reply.body) == (200, {"ok": True})
    await hooks.settled()
    [build] = await hooks.builds(hooks.github_project)
    assert build["pipeline_id"] == pipeline_id
    assert build["trigger_type"] == "webhook"
    assert build["trigger_event"] == "push"
    assert build["trigger_actor"] == "octocat"
    assert (build["branch"], build["trigger_ref"], build["commit_sha"]) == ("main", "main", SHA_A)
    assert build["status"] == "queued"
    [delivery] = await hooks.deliveries(hooks.github)
    assert (delivery.status, delivery.attempts, delivery.processing_error) == ("processed", 1, None)
    assert delivery.processed_at == hooks.clock.now()
    assert (await hooks.builds(hooks.gitlab_project)) == []


async def test_a_github_pull_request_builds_its_head(hooks: Hooks) -> None:
    await hooks.pipeline(hooks.github_project, events=["pull_request"])
    await hooks.pipeline(hooks.github_project, name="pushes", events=["push"])
    reply = await hooks.github_hook(github_pull_request(), event="pull_request")
    assert reply.status == 200, reply.body
    await hooks.settled()
    [build] = await hooks.builds(hooks.github_project)
    assert (build["branch"], build["commit_sha"], build["trigger_event"]) == (
        "feature",
        SHA_B,
        "pull_request",
    )


async def test_a_gitlab_push_with_the_repository_token_queues_one_build(hooks: Hooks) -> None:
    await hooks.pipeline(hooks.gitlab_project, events=["push"], branches=["ma*"])
    reply = await hooks.gitlab_hook(gitlab_push())
    assert (reply.status, reply.body) == (200, {"ok": True})
    await hooks.settled()
    [build] = await hooks.builds(hooks.gitlab_project)
    assert (build["trigger_type"], build["trigger_event"], build["trigger_actor"]) == (
        "webhook",
        "Push Hook",
        "jsmith",
    )
    assert (build["branch"], build["commit_sha"]) == ("main", SHA_A)


async def test_a_gitlab_merge_request_builds_its_source_branch(hooks: Hooks) -> None:
    await hooks.pipeline(hooks.gitlab_project, events=["pull_request"])
    reply = await hooks.gitlab_hook(gitlab_merge_request(), event="Merge Request Hook")
    assert reply.status == 200, reply.body
    await hooks.settled()
    [build] = await hooks.builds(hooks.gitlab_project)
    assert (build["branch"], build["commit_sha"]) == ("feature", SHA_B)


async def test_only_matching_enabled_pipelines_build(hooks: Hooks) -> None:
    wanted = await hooks.pipeline(hooks.github_project, name="main", branches=["main"])
    await hooks.pipeline(hooks.github_project, name="releases", branches=["release/*"])
    await hooks.pipeline(hooks.github_project, name="prs", events=["pull_request"])
    off = await hooks.pipeline(hooks.github_project, name="off")
    patched = await hooks.api.call(
        "PATCH", f"/v1/pipelines/{off}", json={"enabled": False}, token=hooks.token
    )
    assert patched.status == 200, patched.body
    assert (await hooks.github_hook(github_push())).status == 200
    await hooks.settled()
    assert [b["pipeline_id"] for b in await hooks.builds(hooks.github_project)] == [wanted]


# -- signatures and tokens -----------------------------------------------------------------------


async def test_missing_or_bad_github_signatures_are_401_and_build_nothing(hooks: Hooks) -> None:
    await hooks.pipeline(hooks.github_project)
    missing = await hooks.github_hook(github_push(), secret=None)
    assert (missing.status, missing.code) == (401, "missing_signature")
    wrong = await hooks.github_hook(github_push(), secret="not-the-secret")
    assert (wrong.status, wrong.code) == (401, "invalid_signature")
    body = encoded(github_push())
    tampered = github_headers(body)
    reply = await hooks.api.post(GITHUB, data=body + b" ", headers=tampered, peer=REMOTE)
    assert (reply.status, reply.code) == (401, "invalid_signature")
    # Missing is decided before the body is even looked at.
    garbage = await hooks.github_hook(None, raw=b"not json", secret=None)
    assert (garbage.status, garbage.code) == (401, "missing_signature")
    await hooks.settled()
    assert await hooks.builds(hooks.github_project) == []
    assert await hooks.deliveries(hooks.github) == []


async def test_a_new_github_integration_is_found_despite_the_secret_cache(hooks: Hooks) -> None:
    assert (await hooks.github_hook(github_push())).status == 200  # fills the cache
    other = await github_source(
        hooks.store,
        _box(hooks.runtime),
        hooks.clock.now(),
        full_name="acme/other",
        repo_id=3003,
        secret="second-secret",
    )
    reply = await hooks.github_hook(
        github_push(full_name="acme/other", repo_id=3003), secret="second-secret"
    )
    assert reply.status == 200, reply.body
    assert len(await hooks.deliveries(other)) == 1


async def test_missing_or_wrong_gitlab_tokens_are_401_and_build_nothing(hooks: Hooks) -> None:
    await hooks.pipeline(hooks.gitlab_project)
    missing = await hooks.gitlab_hook(gitlab_push(), token=None)
    assert (missing.status, missing.code) == (401, "missing_token")
    wrong = await hooks.gitlab_hook(gitlab_push(), token="oore_" + "cd" * 32)
    assert (wrong.status, wrong.code) == (401, "invalid_token")
    elsewhere = await hooks.gitlab_hook(gitlab_push(project_id=9999))
    assert (elsewhere.status, elsewhere.code) == (401, "invalid_token")
    no_project = await hooks.gitlab_hook({"object_kind": "push"})
    assert (no_project.status, no_project.code) == (401, "invalid_token")
    as_text = await hooks.gitlab_hook(gitlab_push(project_id="2002"))
    assert as_text.status == 200, as_text.body
    await hooks.settled()
    assert len(await hooks.builds(hooks.gitlab_project)) == 1


async def test_a_rotated_gitlab_secret_is_refused_at_once(hooks: Hooks) -> None:
    await hooks.pipeline(hooks.gitlab_project)
    assert (await hooks.gitlab_hook(gitlab_push())).status == 200  # the old secret, just used
    rotated = await hooks.api.post(
        f"/v1/integration-repositories/{hooks.gitlab.repository_id}/gitlab-webhook-secret",
        token=hooks.token,
        peer=REMOTE,
    )
    assert rotated.status == 200, rotated.body
    old = await hooks.gitlab_hook(gitlab_push(sha=SHA_B))
    assert (old.status, old.code) == (401, "invalid_token")
    new = await hooks.gitlab_hook(gitlab_push(sha=SHA_B), token=rotated.body["webhook_secret"])
    assert new.status == 200, new.body
    await hooks.settled()
    assert [b["commit_sha"] for b in await hooks.builds(hooks.gitlab_project)] == [SHA_A, SHA_B]


async def test_a_deleted_github_integration_is_refused_at_once(hooks: Hooks) -> None:
    assert (await hooks.github_hook(github_push())).status == 200  # its secret, just used
    deleted = await hooks.api.call(
        "DELETE", f"/v1/integrations/{hooks.github.integration_id}", token=hooks.token, peer=REMOTE
    )
    assert deleted.status == 200, deleted.body
    refused = await hooks.github_hook(github_push(after=SHA_B))
    assert (refused.status, refused.code) == (401, "invalid_signature")


# -- idempotency ---------------------------------------------------------------------------------


async def test_the_same_github_delivery_twice_builds_once(hooks: Hooks) -> None:
    await hooks.pipeline(hooks.github_project)
    first = await hooks.github_hook(github_push(), delivery="d-1")
    await hooks.settled()
    again = await hooks.github_hook(github_push(), delivery="d-1")
    assert (first.body, again.body) == ({"ok": True}, {"ok": True, "duplicate": True})
    await hooks.settled()
    assert len(await hooks.builds(hooks.github_project)) == 1
    assert len(await hooks.deliveries(hooks.github)) == 1


async def test_github_deliveries_without_an_id_skip_the_duplicate_check(hooks: Hooks) -> None:
    first = await hooks.github_hook(github_push(), delivery=" ")
    assert first.status == 200, first.body
    second = await hooks.github_hook(github_push(after=SHA_B), delivery=" ")
    assert (second.status, second.code) == (500, "store_error")


async def test_the_same_gitlab_delivery_twice_builds_once(hooks: Hooks) -> None:
    await hooks.pipeline(hooks.gitlab_project)
    by_uuid = [await hooks.gitlab_hook(gitlab_push(), event_uuid="u-1") for _ in range(2)]
    # Without an event UUID the key is a hash of the delivery itself.
    by_hash = [await hooks.gitlab_hook(gitlab_push(sha=SHA_B), event_uuid=None) for _ in range(2)]
    assert [r.body for r in by_uuid + by_hash] == [
        {"ok": True},
        {"ok": True, "duplicate": True},
        {"ok": True},
        {"ok": True, "duplicate": True},
    ]
    await hooks.settled()
    assert [b["commit_sha"] for b in await hooks.builds(hooks.gitlab_project)] == [SHA_A, SHA_B]


async def test_reprocessing_a_delivery_never_builds_twice(hooks: Hooks) -> None:
    await hooks.pipeline(hooks.github_project)
    assert (await hooks.github_hook(github_push())).status == 200
    await hooks.settled()
    [delivery] = await hooks.deliveries(hooks.github)
    await hooks.store.db.run(
        lambda conn: conn.execute(
            """UPDATE webhook_deliveries SET status = 'received', next_attempt_at = 0
               WHERE id = $1::uuid""",
            delivery.id,
        )
    )
    await hooks.settled()
    assert len(await hooks.builds(hooks.github_project)) == 1
    [again] = await hooks.deliveries(hooks.github)
    assert (again.status, again.attempts) == ("processed", 2)


# -- refused bodies and modes --------------------------------------------------------------------


async def test_oversized_bodies_are_413_before_anything_else(hooks: Hooks) -> None:
    await hooks.pipeline(hooks.github_project)
    big = encoded({"ref": "refs/heads/main", "pad": "x" * MAX_BODY_BYTES})
    assert MAX_BODY_BYTES < len(big) < 2 * MAX_BODY_BYTES
    signed = await hooks.github_hook(None, raw=big)
    assert (signed.status, signed.code) == (413, "payload_too_large")
    unsigned = await hooks.github_hook(None, raw=big, secret=None)
    assert (unsigned.status, unsigned.code) == (413, "payload_too_large")
    gitlab = await hooks.gitlab_hook(None, raw=big, token=None)
    assert (gitlab.status, gitlab.code) == (413, "payload_too_large")
    exact = encoded(github_push())
    exact += b" " * (MAX_BODY_BYTES - len(exact))
    assert (await hooks.github_hook(None, raw=exact)).status == 200
    await hooks.settled()
    assert len(await hooks.builds(hooks.github_project)) == 1


async def test_bodies_that_are_not_json_are_400_invalid_payload(hooks: Hooks) -> None:
    github = await hooks.github_hook(None, raw=b"payload=%7B%7D")
    assert (github.status, github.code) == (400, "invalid_payload")
    gitlab = await hooks.gitlab_hook(None, raw=b"\xff\xfe")
    assert (gitlab.status, gitlab.code) == (400, "invalid_payload")


async def test_local_mode_refuses_every_webhook(
    api: Api, owner_token: str, runtime: Runtime, store: Store, clock: FakeClock
) -> None:
    await github_source(store, _box(runtime), clock.now())
    body = encoded(github_push())
    github = await api.post(GITHUB, data=body, headers=github_headers(body), peer=REMOTE)
    assert (github.status, github.code) == (403, "mode_restricted")
    gitlab = await api.post(GITLAB, data=body, headers=gitlab_headers(), peer=REMOTE)
    assert (gitlab.status, gitlab.code) == (403, "mode_restricted")


async def test_a_stale_gitlab_event_is_400_after_the_duplicate_check(hooks: Hooks) -> None:
    await hooks.pipeline(hooks.gitlab_project)
    fresh = await hooks.gitlab_hook(
        gitlab_push(created_at="2027-01-15T08:00:00Z"), event_uuid="u-old"
    )
    assert fresh.status == 200  # the clock stands at 2027-01-15T08:00:00Z
    hooks.clock.advance(301)
    repeated = await hooks.gitlab_hook(
        gitlab_push(created_at="2027-01-15T08:00:00Z"), event_uuid="u-old"
    )
    assert repeated.body == {"ok": True, "duplicate": True}
    stale = await hooks.gitlab_hook(
        gitlab_push(sha=SHA_B, created_at="2027-01-15T08:00:00Z"), event_uuid="u-new"
    )
    assert (stale.status, stale.code) == (400, "stale_event")
    await hooks.settled()
    assert [b["commit_sha"] for b in await hooks.builds(hooks.gitlab_project)] == [SHA_A]


async def test_a_stopped_worker_is_503_webhook_queue_unavailable(hooks: Hooks) -> None:
    assert await hooks.runtime.supervisor.stop_child(hooks.runtime.webhooks.worker.name)
    reply = await hooks.github_hook(github_push())
    assert (reply.status, reply.code) == (503, "webhook_queue_unavailable")
    assert await hooks.deliveries(hooks.github) == []


# -- outcomes ------------------------------------------------------------------------------------


async def test_ignored_events_are_recorded_with_their_reasons(hooks: Hooks) -> None:
    await hooks.pipeline(hooks.github_project)
    sent = [
        await hooks.github_hook({"zen": "Design for failure.", "hook_id": 1}, event="ping"),
        await hooks.github_hook(github_push(ref="refs/tags/v1.0")),
        await hooks.github_hook(github_pull_request(head_repo_id=4242), event="pull_request"),
        await hooks.github_hook(github_pull_request(action="closed"), event="pull_request"),
        await hooks.github_hook(github_push(repo_id=5555, full_name="acme/unknown")),
    ]
    assert [r.status for r in sent] == [200] * 5
    await hooks.settled()
    assert await hooks.builds(hooks.github_project) == []
    outcomes = {
        (d.event, d.status, d.processing_error) for d in await hooks.deliveries(hooks.github)
    }
    assert outcomes == {
        ("ping", "ignored", "event 'ping' does not trigger builds"),
        ("push", "ignored", "tag pushes do not trigger builds"),
        ("pull_request", "ignored", FORK_BLOCKED),
        ("pull_request", "ignored", "pull_request action 'closed' does not trigger builds"),
        ("push", "ignored", "no project is linked to this repository under the integration"),
    }


async def test_events_without_a_commit_to_build_build_nothing(hooks: Hooks) -> None:
    await hooks.pipeline(hooks.github_project)
    await hooks.pipeline(hooks.gitlab_project)
    no_head = github_pull_request(sha="")
    zero_head = github_pull_request(sha=ZERO)
    deletion = {**github_push(after=ZERO), "after": "", "deleted": True}
    github = [
        await hooks.github_hook(no_head, event="pull_request"),
        await hooks.github_hook(zero_head, event="pull_request"),
        await hooks.github_hook(github_push(after=ZERO)),
        await hooks.github_hook(deletion),
    ]
    missing_commit = gitlab_merge_request()
    del missing_commit["object_attributes"]["last_commit"]
    gitlab = [
        await hooks.gitlab_hook(gitlab_merge_request(sha=""), event="Merge Request Hook"),
        await hooks.gitlab_hook(
            gitlab_merge_request(action="update", oldrev=SHA_A, sha=""), event="Merge Request Hook"
        ),
        await hooks.gitlab_hook(gitlab_merge_request(sha=ZERO), event="Merge Request Hook"),
        await hooks.gitlab_hook(missing_commit, event="Merge Request Hook"),
    ]
    assert [r.status for r in github + gitlab] == [200] * 8
    await hooks.settled()
    assert await hooks.builds(hooks.github_project) == []
    assert await hooks.builds(hooks.gitlab_project) == []
    assert sorted(
        (d.event, d.status, d.processing_error) for d in await hooks.deliveries(hooks.github)
    ) == [
        ("pull_request", "ignored", "pull request without a head commit"),
        ("pull_request", "ignored", "pull request without a head commit"),
        ("push", "ignored", "branch deletion"),
        ("push", "ignored", "branch deletion"),
    ]
    assert [(d.status, d.processing_error) for d in await hooks.deliveries(hooks.gitlab)] == [
        ("ignored", "merge request without a head commit")
    ] * 4


async def test_cancel_previous_cancels_the_older_queued_build(hooks: Hooks) -> None:
    await hooks.pipeline(hooks.github_project, cancel_previous=True)
    assert (await hooks.github_hook(github_push(after=SHA_A))).status == 200
    await hooks.settled()
    assert (await hooks.github_hook(github_push(after=SHA_B))).status == 200
    await hooks.settled()
    first, second = await hooks.builds(hooks.github_project)
    assert (first["commit_sha"], first["status"]) == (SHA_A, "canceled")
    assert (second["commit_sha"], second["status"]) == (SHA_B, "queued")


async def test_a_restarted_worker_processes_what_was_received_before(
    hooks: Hooks,
    scheduling_config: SchedulingConfig,
    log_config: LogConfig,
    artifacts_config: ArtifactsConfig,
    network_defaults: NetworkDefaults,
) -> None:
    await hooks.pipeline(hooks.github_project)
    # The daemon stored this delivery and stopped before its worker got to it.
    assert await hooks.runtime.supervisor.stop_child(hooks.runtime.webhooks.worker.name)
    stored = await hooks.store.webhooks.insert(
        NewDelivery(Provider.GITHUB, hooks.github.integration_id, "d-9", "push", github_push(), 0)
    )
    assert stored is not None
    async with open_runtime(
        hooks.store,
        hooks.clock,
        scheduling_config,
        log_config,
        artifacts_config,
        network_defaults,
    ) as restarted:
        with trio.fail_after(10):
            await restarted.webhooks.drain_now()
    [build] = await hooks.builds(hooks.github_project)
    assert build["trigger_type"] == "webhook"
    [delivery] = await hooks.deliveries(hooks.github)
    assert delivery.status == "processed"
