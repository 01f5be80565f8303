"""Webhook rules (contract §9.3): signatures, delivery keys, event mapping, trigger matching.

Pure functions: the service checks a delivery with them, the worker maps a stored payload
to at most one :class:`Trigger` per delivery and matches it against pipelines.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any

MAX_BODY_BYTES = 1_048_576
MAX_ATTEMPTS = 5
RETRY_SECONDS = 30
LEASE_SECONDS = 300
REPLAY_WINDOW_SECONDS = 300

FORK_BLOCKED = "external-fork pull request revisions are blocked by policy"
BRANCH_PREFIX = "refs/heads/"
TAG_PREFIX = "refs/tags/"

GITHUB_PULL_ACTIONS = frozenset({"opened", "reopened", "synchronize"})
GITLAB_MERGE_ACTIONS = frozenset({"open", "reopen"})
_NORMALISED = {
    "Push Hook": "push",
    "Merge Request Hook": "pull_request",
    "Tag Push Hook": "tag_push",
}


class Provider(StrEnum):
    GITHUB = "github"
    GITLAB = "gitlab"


class DeliveryStatus(StrEnum):
    RECEIVED = "received"
    PROCESSING = "processing"
    PROCESSED = "processed"
    IGNORED = "ignored"
    FAILED = "failed"


@dataclass(frozen=True)
class Trigger:
    """What a triggering event asks for, and which repository it came from."""

    event: str  # the raw event name: push, pull_request, Push Hook, ...
    branch: str | None
    commit_sha: str | None
    actor: str | None
    full_name: str | None
    external_id: str | None


@dataclass(frozen=True)
class Ignored:
    """An event that triggers no build, and why."""

    reason: str


# -- signatures and keys ----------------------------------------------------------------------


def github_signature(secret: str, body: bytes) -> str:
    """``X-Hub-Signature-256`` as GitHub computes it over the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(header: str, secret: str, body: bytes) -> bool:
    """Constant-time comparison of a presented signature with the one ``secret`` gives."""
    return hmac.compare_digest(header.strip().encode(), github_signature(secret, body).encode())


def token_matches(presented: str, secret: str) -> bool:
    """Constant-time comparison of a GitLab token with a stored secret."""
    return hmac.compare_digest(presented.encode(), secret.encode())


def gitlab_delivery_key(integration_id: str, event: str, body: bytes) -> str:
    """The idempotency key of a GitLab delivery that carries no event UUID."""
    digest = hashlib.sha256()
    digest.update(integration_id.encode())
    digest.update(b"\0")
    digest.update(event.encode())
    digest.update(b"\0")
    digest.update(body)
    return "sha256:" + digest.hexdigest()


def normalise_event(event: str) -> str:
    """GitLab hook names as trigger events; everything else lower-cased."""
    return _NORMALISED.get(event, event.lower())


def _ident(value: object) -> str | None:
    """A provider id given as a string or a number (not a bool)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def gitlab_project_id(payload: object) -> str | None:
    """``project.id`` of a GitLab payload, as text."""
    project = _mapping(payload, "project")
    return _ident(project.get("id"))


def is_stale(payload: object, now: int) -> bool:
    """True when the payload has an RFC 3339 ``created_at`` older than the replay window."""
    if not isinstance(payload, dict):
        return False
    created = payload.get("created_at")
    if not isinstance(created, str):
        return False
    try:
        when = datetime.fromisoformat(created.strip())
    except ValueError:
        return False
    if when.tzinfo is None:
        return False
    return now - when.timestamp() > REPLAY_WINDOW_SECONDS


# -- event mapping ----------------------------------------------------------------------------


def _mapping(data: object, key: str) -> dict[str, Any]:
    found = data.get(key) if isinstance(data, dict) else None
    return found if isinstance(found, dict) else {}


def _text(data: object, key: str) -> str | None:
    found = data.get(key) if isinstance(data, dict) else None
    return found.strip() or None if isinstance(found, str) else None


def _branch(ref: str | None) -> str | None:
    if ref is None or not ref.startswith(BRANCH_PREFIX):
        return None
    return ref[len(BRANCH_PREFIX) :] or None


def _is_zero(sha: str | None) -> bool:
    """An all-zero commit id: what providers send for "no commit" (a deleted branch)."""
    return sha is not None and set(sha) == {"0"}


def _commit(sha: str | None) -> str | None:
    """A commit id, or None when it is missing, blank or all zeros."""
    return None if sha is None or _is_zero(sha) else sha


def map_event(provider: Provider, event: str, payload: object) -> Trigger | Ignored:
    """The build a delivery asks for (§9.3), or why it asks for none."""
    match provider, event:
        case Provider.GITHUB, "push":
            return _github_push(payload)
        case Provider.GITHUB, "pull_request":
            return _github_pull_request(payload)
        case Provider.GITLAB, "Push Hook":
            return _gitlab_push(payload)
        case Provider.GITLAB, "Merge Request Hook":
            return _gitlab_merge_request(payload)
        case _:
            return Ignored(f"event {event!r} does not trigger builds")


def _push_ref(payload: object, ref: str | None, after: str | None) -> Ignored | None:
    if ref is not None and ref.startswith(TAG_PREFIX):
        return Ignored("tag pushes do not trigger builds")
    if _branch(ref) is None:
        return Ignored("push without a branch ref")
    deleted = payload.get("deleted") if isinstance(payload, dict) else None
    if _is_zero(after) or deleted is True:
        return Ignored("branch deletion")
    return None


def _github_push(payload: object) -> Trigger | Ignored:
    ref, after = _text(payload, "ref"), _text(payload, "after")
    ignored = _push_ref(payload, ref, after)
    if ignored is not None:
        return ignored
    repository = _mapping(payload, "repository")
    return Trigger(
        event="push",
        branch=_branch(ref),
        commit_sha=_commit(after),
        actor=_text(_mapping(payload, "sender"), "login"),
        full_name=_text(repository, "full_name"),
        external_id=_ident(repository.get("id")),
    )


def _github_pull_request(payload: object) -> Trigger | Ignored:
    action = _text(payload, "action")
    if action not in GITHUB_PULL_ACTIONS:
        return Ignored(f"pull_request action {action!r} does not trigger builds")
    number = payload.get("number") if isinstance(payload, dict) else None
    if not isinstance(number, int) or isinstance(number, bool):
        return Ignored("pull request without a number")
    pull = _mapping(payload, "pull_request")
    head, base = _mapping(pull, "head"), _mapping(pull, "base")
    sha = _commit(_text(head, "sha"))
    if sha is None:
        return Ignored("pull request without a head commit")
    repository = _mapping(payload, "repository")
    repo_id = _ident(repository.get("id"))
    head_id = _ident(_mapping(head, "repo").get("id"))
    base_id = _ident(_mapping(base, "repo").get("id"))
    if repo_id is None or head_id != repo_id or base_id != repo_id:
        return Ignored(FORK_BLOCKED)
    return Trigger(
        event="pull_request",
        branch=_text(head, "ref"),
        commit_sha=sha,
        actor=_text(_mapping(payload, "sender"), "login"),
        full_name=_text(repository, "full_name"),
        external_id=repo_id,
    )


def _gitlab_push(payload: object) -> Trigger | Ignored:
    ref = _text(payload, "ref")
    ignored = _push_ref(payload, ref, _text(payload, "after"))
    if ignored is not None:
        return ignored
    project = _mapping(payload, "project")
    return Trigger(
        event="Push Hook",
        branch=_branch(ref),
        commit_sha=_commit(_text(payload, "checkout_sha") or _text(payload, "after")),
        actor=_text(payload, "user_username"),
        full_name=_text(project, "path_with_namespace"),
        external_id=_ident(project.get("id")),
    )


def _gitlab_merge_request(payload: object) -> Trigger | Ignored:
    attrs = _mapping(payload, "object_attributes")
    action = _text(attrs, "action")
    last = _text(_mapping(attrs, "last_commit"), "id")
    if action == "update":
        oldrev = _text(attrs, "oldrev")
        if oldrev is None or oldrev == last:
            return Ignored("merge request update without new commits")
    elif action not in GITLAB_MERGE_ACTIONS:
        return Ignored(f"merge request action {action!r} does not trigger builds")
    commit = _commit(last)
    if commit is None:
        return Ignored("merge request without a head commit")
    project = _mapping(payload, "project")
    project_id = _ident(project.get("id"))
    source = _ident(attrs.get("source_project_id"))
    target = _ident(attrs.get("target_project_id"))
    if project_id is None or source != project_id or target != project_id:
        return Ignored(FORK_BLOCKED)
    return Trigger(
        event="Merge Request Hook",
        branch=_text(attrs, "source_branch"),
        commit_sha=commit,
        actor=_text(_mapping(payload, "user"), "username"),
        full_name=_text(project, "path_with_namespace"),
        external_id=project_id,
    )


# -- pipelines --------------------------------------------------------------------------------


def pipeline_matches(trigger_config: dict[str, Any], event: str, branch: str | None) -> bool:
    """Does a pipeline's ``trigger_config`` accept this event on this branch?"""
    events = trigger_config.get("events") or []
    if events and normalise_event(event) not in events:
        return False
    branches = [glob for glob in trigger_config.get("branches") or [] if isinstance(glob, str)]
    if branches:
        return branch is not None and any(fnmatchcase(branch, glob) for glob in branches)
    return True
