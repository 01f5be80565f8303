"""Webhook rules: signatures, delivery keys, the event mapping table, trigger matching."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from oore.domain.webhooks import (
    FORK_BLOCKED,
    Ignored,
    Provider,
    Trigger,
    github_signature,
    gitlab_delivery_key,
    gitlab_project_id,
    is_stale,
    map_event,
    normalise_event,
    pipeline_matches,
    signature_matches,
    token_matches,
)
from tests.webhook_kit import (
    GITHUB_FULL_NAME,
    GITLAB_FULL_NAME,
    SHA_A,
    SHA_B,
    ZERO,
    github_headers,
    github_pull_request,
    github_push,
    gitlab_merge_request,
    gitlab_push,
)


def test_signature_is_the_one_github_sends() -> None:
    body = b'{"zen":"Keep it logically awesome."}'
    sent = github_headers(body, secret="It's a Secret to Everybody")["X-Hub-Signature-256"]
    assert github_signature("It's a Secret to Everybody", body) == sent
    assert signature_matches(sent, "It's a Secret to Everybody", body)
    assert not signature_matches(sent, "another secret", body)
    assert not signature_matches(sent, "It's a Secret to Everybody", body + b" ")
    assert not signature_matches(sent.upper(), "It's a Secret to Everybody", body)
    assert not signature_matches("", "It's a Secret to Everybody", body)


def test_github_documented_example_signature() -> None:
    # GitHub's documentation: secret "It's a Secret to Everybody", payload "Hello, World!".
    assert github_signature("It's a Secret to Everybody", b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


def test_gitlab_tokens_compare_exactly() -> None:
    assert token_matches("oore_abc", "oore_abc")
    assert not token_matches("oore_abd", "oore_abc")
    assert not token_matches("", "oore_abc")


def test_gitlab_delivery_key_hashes_integration_event_and_body() -> None:
    key = gitlab_delivery_key("i-1", "Push Hook", b"{}")
    assert key.startswith("sha256:") and len(key) == len("sha256:") + 64
    assert key == gitlab_delivery_key("i-1", "Push Hook", b"{}")
    assert key != gitlab_delivery_key("i-2", "Push Hook", b"{}")
    assert key != gitlab_delivery_key("i-1", "Merge Request Hook", b"{}")
    assert key != gitlab_delivery_key("i-1", "Push Hook", b"{ }")


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("Push Hook", "push"),
        ("Merge Request Hook", "pull_request"),
        ("Tag Push Hook", "tag_push"),
        ("push", "push"),
        ("Pull_Request", "pull_request"),
        ("Note Hook", "note hook"),
    ],
)
def test_event_names_are_normalised(raw: str, normal: str) -> None:
    assert normalise_event(raw) == normal


def test_gitlab_project_id_may_be_a_string_or_a_number() -> None:
    assert gitlab_project_id({"project": {"id": 15}}) == "15"
    assert gitlab_project_id({"project": {"id": "15"}}) == "15"
    assert gitlab_project_id({"project": {"id": True}}) is None
    assert gitlab_project_id({"project": {}}) is None
    assert gitlab_project_id([]) is None


def test_replay_window_is_five_minutes_of_rfc3339() -> None:
    created = "2027-01-15T08:00:00+00:00"
    at = int(datetime.fromisoformat(created).timestamp())
    assert not is_stale({"created_at": created}, at + 300)
    assert is_stale({"created_at": created}, at + 301)
    assert is_stale({"created_at": "2027-01-15T08:00:00Z"}, at + 301)
    assert is_stale({"created_at": "2027-01-15T10:00:00+02:00"}, at + 301)
    assert not is_stale({"created_at": "2027-01-15 08:00:00"}, at + 10_000)  # not RFC 3339
    assert not is_stale({"created_at": "yesterday"}, at + 10_000)
    assert not is_stale({}, at + 10_000)


def _trigger(**fields: Any) -> Trigger:
    base: dict[str, Any] = {
        "event": "push",
        "branch": "main",
        "commit_sha": SHA_A,
        "actor": "octocat",
        "full_name": GITHUB_FULL_NAME,
        "external_id": "1001",
    }
    return Trigger(**{**base, **fields})


MAPPING: list[tuple[str, Provider, str, Any, Trigger | Ignored]] = [
    ("github push", Provider.GITHUB, "push", github_push(), _trigger()),
    (
        "github push to a nested branch",
        Provider.GITHUB,
        "push",
        github_push(ref="refs/heads/release/1.2"),
        _trigger(branch="release/1.2"),
    ),
    (
        "github tag push",
        Provider.GITHUB,
        "push",
        github_push(ref="refs/tags/v1"),
        Ignored("tag pushes do not trigger builds"),
    ),
    (
        "github branch deletion",
        Provider.GITHUB,
        "push",
        github_push(after=ZERO),
        Ignored("branch deletion"),
    ),
    (
        "github pull request opened",
        Provider.GITHUB,
        "pull_request",
        github_pull_request(),
        _trigger(event="pull_request", branch="feature", commit_sha=SHA_B),
    ),
    (
        "github pull request synchronize",
        Provider.GITHUB,
        "pull_request",
        github_pull_request(action="synchronize"),
        _trigger(event="pull_request", branch="feature", commit_sha=SHA_B),
    ),
    (
        "github pull request closed",
        Provider.GITHUB,
        "pull_request",
        github_pull_request(action="closed"),
        Ignored("pull_request action 'closed' does not trigger builds"),
    ),
    (
        "github pull request from a fork",
        Provider.GITHUB,
        "pull_request",
        github_pull_request(head_repo_id=999),
        Ignored(FORK_BLOCKED),
    ),
    (
        "github pull request without a head sha",
        Provider.GITHUB,
        "pull_request",
        github_pull_request(sha=""),
        Ignored("pull request without a head commit"),
    ),
    (
        "github ping",
        Provider.GITHUB,
        "ping",
        {"zen": "x", "hook_id": 1},
        Ignored("event 'ping' does not trigger builds"),
    ),
    (
        "gitlab push",
        Provider.GITLAB,
        "Push Hook",
        gitlab_push(),
        _trigger(event="Push Hook", actor="jsmith", full_name=GITLAB_FULL_NAME, external_id="2002"),
    ),
    (
        "gitlab tag push hook",
        Provider.GITLAB,
        "Tag Push Hook",
        gitlab_push(ref="refs/tags/v1"),
        Ignored("event 'Tag Push Hook' does not trigger builds"),
    ),
    (
        "gitlab merge request opened",
        Provider.GITLAB,
        "Merge Request Hook",
        gitlab_merge_request(),
        _trigger(
            event="Merge Request Hook",
            branch="feature",
            commit_sha=SHA_B,
            actor="jsmith",
            full_name=GITLAB_FULL_NAME,
            external_id="2002",
        ),
    ),
    (
        "gitlab merge request updated with new commits",
        Provider.GITLAB,
        "Merge Request Hook",
        gitlab_merge_request(action="update", oldrev=SHA_A),
        _trigger(
            event="Merge Request Hook",
            branch="feature",
            commit_sha=SHA_B,
            actor="jsmith",
            full_name=GITLAB_FULL_NAME,
            external_id="2002",
        ),
    ),
    (
        "gitlab merge request updated without new commits",
        Provider.GITLAB,
        "Merge Request Hook",
        gitlab_merge_request(action="update"),
        Ignored("merge request update without new commits"),
    ),
    (
        "gitlab merge request merged",
        Provider.GITLAB,
        "Merge Request Hook",
        gitlab_merge_request(action="merge"),
        Ignored("merge request action 'merge' does not trigger builds"),
    ),
    (
        "gitlab merge request from a fork",
        Provider.GITLAB,
        "Merge Request Hook",
        gitlab_merge_request(source_project_id=9),
        Ignored(FORK_BLOCKED),
    ),
]


@pytest.mark.parametrize(
    ("provider", "event", "payload", "expected"),
    [case[1:] for case in MAPPING],
    ids=[case[0] for case in MAPPING],
)
def test_event_mapping(
    provider: Provider, event: str, payload: Any, expected: Trigger | Ignored
) -> None:
    assert map_event(provider, event, payload) == expected


@pytest.mark.parametrize(
    ("config", "event", "branch", "matches"),
    [
        ({"events": [], "branches": []}, "push", "main", True),
        ({}, "Merge Request Hook", None, True),
        ({"events": ["push"], "branches": []}, "Push Hook", "main", True),
        ({"events": ["push"], "branches": []}, "pull_request", "main", False),
        ({"events": ["pull_request"], "branches": []}, "Merge Request Hook", "x", True),
        ({"events": [], "branches": ["main"]}, "push", "main", True),
        ({"events": [], "branches": ["main"]}, "push", "dev", False),
        ({"events": [], "branches": ["release/*"]}, "push", "release/1.2", True),
        ({"events": [], "branches": ["v?"]}, "push", "v1", True),
        ({"events": [], "branches": ["v?"]}, "push", "v10", False),
        ({"events": [], "branches": ["Main"]}, "push", "main", False),
        ({"events": [], "branches": ["*"]}, "push", None, False),
    ],
)
def test_pipeline_trigger_matching(
    config: dict[str, Any], event: str, branch: str | None, matches: bool
) -> None:
    assert pipeline_matches(config, event, branch) is matches
