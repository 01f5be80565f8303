"""Webhook deliveries as GitHub and GitLab send them, and an instance ready to receive them."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from typing import Any

from oore.domain.crypto import SecretBox
from oore.domain.integrations import (
    AuthMode,
    IntegrationProvider,
    IntegrationStatus,
    RemoteRepository,
)
from oore.store import Store
from oore.store.integrations import NewIntegration

GITHUB_SECRET = "gh-webhook-secret"
GITLAB_SECRET = "oore_" + "ab" * 32
GITHUB_REPO_ID = 1001
GITLAB_PROJECT_ID = 2002
GITHUB_FULL_NAME = "acme/app"
GITLAB_FULL_NAME = "group/app"
SHA_A = "a" * 40
SHA_B = "b" * 40
ZERO = "0" * 40


# -- payloads (the providers' documented shapes, trimmed to what a receiver reads) -------------


def github_push(
    *,
    ref: str = "refs/heads/main",
    after: str = SHA_A,
    repo_id: int = GITHUB_REPO_ID,
    full_name: str = GITHUB_FULL_NAME,
    sender: str = "octocat",
) -> dict[str, Any]:
    owner, name = full_name.split("/", 1)
    return {
        "ref": ref,
        "before": ZERO,
        "after": after,
        "created": True,
        "deleted": after == ZERO,
        "forced": False,
        "compare": f"https://github.com/{full_name}/compare/{after[:12]}",
        "commits": [{"id": after, "message": "change", "author": {"name": sender}}],
        "head_commit": {"id": after, "message": "change", "timestamp": "2027-01-15T10:00:00Z"},
        "repository": {
            "id": repo_id,
            "name": name,
            "full_name": full_name,
            "private": False,
            "owner": {"login": owner},
            "default_branch": "main",
            "clone_url": f"https://github.com/{full_name}.git",
        },
        "pusher": {"name": sender},
        "sender": {"login": sender, "id": 1},
    }


def github_pull_request(
    *,
    action: str = "opened",
    number: int = 7,
    sha: str = SHA_B,
    branch: str = "feature",
    repo_id: int = GITHUB_REPO_ID,
    head_repo_id: int = GITHUB_REPO_ID,
    sender: str = "octocat",
) -> dict[str, Any]:
    return {
        "action": action,
        "number": number,
        "pull_request": {
            "number": number,
            "state": "open",
            "head": {"sha": sha, "ref": branch, "repo": {"id": head_repo_id}},
            "base": {"sha": SHA_A, "ref": "main", "repo": {"id": repo_id}},
        },
        "repository": {"id": repo_id, "full_name": GITHUB_FULL_NAME},
        "sender": {"login": sender},
    }


def gitlab_push(
    *,
    ref: str = "refs/heads/main",
    sha: str = SHA_A,
    project_id: int | str = GITLAB_PROJECT_ID,
    username: str = "jsmith",
    created_at: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "object_kind": "push",
        "event_name": "push",
        "before": ZERO,
        "after": sha,
        "ref": ref,
        "checkout_sha": sha,
        "user_username": username,
        "user_name": "J. Smith",
        "project_id": project_id,
        "project": {
            "id": project_id,
            "name": "app",
            "path_with_namespace": GITLAB_FULL_NAME,
            "default_branch": "main",
        },
        "commits": [{"id": sha, "message": "change"}],
        "total_commits_count": 1,
    }
    if created_at is not None:
        body["created_at"] = created_at
    return body


def gitlab_merge_request(
    *,
    action: str = "open",
    sha: str = SHA_B,
    oldrev: str | None = None,
    branch: str = "feature",
    source_project_id: int = GITLAB_PROJECT_ID,
    username: str = "jsmith",
) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "iid": 3,
        "action": action,
        "state": "opened",
        "source_branch": branch,
        "target_branch": "main",
        "source_project_id": source_project_id,
        "target_project_id": GITLAB_PROJECT_ID,
        "last_commit": {"id": sha, "message": "change"},
    }
    if oldrev is not None:
        attrs["oldrev"] = oldrev
    return {
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": {"username": username, "name": "J. Smith"},
        "project": {"id": GITLAB_PROJECT_ID, "path_with_namespace": GITLAB_FULL_NAME},
        "object_attributes": attrs,
    }


# -- signing, exactly as the providers do ------------------------------------------------------


def encoded(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def github_headers(
    body: bytes,
    *,
    event: str = "push",
    delivery: str | None = None,
    secret: str | None = GITHUB_SECRET,
) -> dict[str, str]:
    """``X-Hub-Signature-256`` = ``sha256=`` + hex HMAC-SHA256 of the raw body."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/abc123",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "42",
    }
    if secret is not None:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = f"sha256={digest}"
    return headers


def gitlab_headers(
    *,
    event: str = "Push Hook",
    event_uuid: str | None = "",
    token: str | None = GITLAB_SECRET,
) -> dict[str, str]:
    """GitLab sends the configured secret token as is; ``event_uuid`` None omits the header."""
    headers = {"Content-Type": "application/json", "X-Gitlab-Event": event}
    if event_uuid is not None:
        headers["X-Gitlab-Event-UUID"] = event_uuid or str(uuid.uuid4())
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return headers


# -- integrations and repositories -------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """An integration and one repository under it."""

    integration_id: str
    repository_id: str


async def github_source(
    store: Store,
    box: SecretBox,
    now: int,
    *,
    host_url: str = "https://github.com",
    full_name: str = GITHUB_FULL_NAME,
    repo_id: int = GITHUB_REPO_ID,
    secret: str = GITHUB_SECRET,
) -> Source:
    """An active GitHub App integration with an encrypted webhook secret and one repository."""
    integration = await store.integrations.create(
        NewIntegration(
            provider=IntegrationProvider.GITHUB,
            auth_mode=AuthMode.GITHUB_APP,
            status=IntegrationStatus.ACTIVE,
            now=now,
            host_url=host_url,
            display_name="oore-ci",
            app_id="1",
            app_slug="oore-ci",
            webhook_secret_enc=box.encrypt(secret),
        )
    )
    installation = await store.integrations.add_installation(
        integration.id, external_id="77", account_name="acme", account_type="Organization", now=now
    )
    [repository] = await store.integrations.upsert_repositories(
        installation.id,
        [RemoteRepository(str(repo_id), full_name, "main", False, None)],
        host_url=host_url,
        now=now,
    )
    return Source(integration.id, repository.id)


async def gitlab_source(store: Store, box: SecretBox, now: int) -> Source:
    """An active GitLab integration whose one repository has a per-repository secret."""
    integration = await store.integrations.create(
        NewIntegration(
            provider=IntegrationProvider.GITLAB,
            auth_mode=AuthMode.PERSONAL_TOKEN,
            status=IntegrationStatus.ACTIVE,
            now=now,
            host_url="https://gitlab.example.com",
            display_name="jsmith (gitlab.example.com)",
        )
    )
    installation = await store.integrations.add_installation(
        integration.id, external_id="jsmith", account_name="jsmith", account_type="User", now=now
    )
    [repository] = await store.integrations.upsert_repositories(
        installation.id,
        [RemoteRepository(str(GITLAB_PROJECT_ID), GITLAB_FULL_NAME, "main", False, None)],
        host_url="https://gitlab.example.com",
        now=now,
    )
    assert await store.integrations.set_repository_webhook_secret(
        repository.id, box.encrypt(GITLAB_SECRET), now
    )
    return Source(integration.id, repository.id)


def pipeline_body(
    name: str = "ci",
    *,
    events: list[str] | None = None,
    branches: list[str] | None = None,
    cancel_previous: bool = False,
    commands: list[str] | None = None,
) -> dict[str, Any]:
    """A ``POST /v1/projects/{id}/pipelines`` body."""
    return {
        "name": name,
        "execution_config": {"platforms": ["android"], "commands": {"build": commands or ["true"]}},
        "trigger_config": {"events": events or [], "branches": branches or []},
        "concurrency": {"cancel_previous": cancel_previous},
    }
