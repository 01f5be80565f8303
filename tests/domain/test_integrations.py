"""URL rules, wire shapes and sealed state of source integrations (contract §2.9, §9)."""

from __future__ import annotations

import pytest

from oore.domain.integrations import (
    AuthMode,
    Integration,
    IntegrationProvider,
    IntegrationRepository,
    IntegrationStatus,
    SealedState,
    StateKind,
    check_gitlab_host,
    check_redirect_url,
    check_webhook_url,
    github_manifest,
    instance_base,
    new_webhook_secret,
)
from oore.errors import InvalidInput

ALLOWED = ("https://ci.example.com", "http://localhost:3000")


@pytest.mark.parametrize(
    ("raw", "origin"),
    [
        ("https://gitlab.example.com", "https://gitlab.example.com"),
        ("https://gitlab.example.com/", "https://gitlab.example.com"),
        ("https://gitlab.example.com:443", "https://gitlab.example.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ],
)
def test_gitlab_hosts_that_are_https_origins_pass(raw: str, origin: str) -> None:
    assert check_gitlab_host(raw) == origin


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "http://gitlab.example.com",
        "http://localhost:8080",
        "https://gitlab.example.com/group",
        "https://gitlab.example.com/?x=1",
        "https://gitlab.example.com/#top",
        "https://user:pw@gitlab.example.com",
        "ftp://gitlab.example.com",
        "https://gitlab.example.com:99999",
    ],
)
def test_other_gitlab_hosts_are_invalid_input(raw: str | None) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_gitlab_host(raw)
    assert caught.value.code == "invalid_input"


def test_redirect_urls_must_share_an_allowed_origin() -> None:
    assert check_redirect_url("https://ci.example.com/settings", ALLOWED)
    assert check_redirect_url("http://localhost:3000/x", ALLOWED)
    for bad in (
        "https://ci.example.com:8443/x",
        "https://evil.example/x",
        "https://a@ci.example.com/",
    ):
        with pytest.raises(InvalidInput) as caught:
            check_redirect_url(bad, ALLOWED)
        assert caught.value.code == "invalid_redirect_url", bad
    with pytest.raises(InvalidInput) as missing:
        check_redirect_url(None, ALLOWED)
    assert missing.value.code == "invalid_input"


def test_webhook_url_and_the_instance_base() -> None:
    url = check_webhook_url("https://ci.example.com/v1/webhooks/github")
    assert instance_base(url) == "https://ci.example.com"
    assert instance_base("https://ci.example.com/oore/") == "https://ci.example.com/oore"
    for bad in (None, " ", "not a url", "mailto:x@example.com"):
        with pytest.raises(InvalidInput):
            check_webhook_url(bad)


def test_the_manifest_asks_for_the_documented_permissions_and_events() -> None:
    manifest = github_manifest(
        "https://ci.example.com", "https://ci.example.com/v1/webhooks/github"
    )
    assert manifest["name"] == "oore-ci"
    assert manifest["hook_attributes"]["url"] == "https://ci.example.com/v1/webhooks/github"
    assert manifest["redirect_url"] == "https://ci.example.com/v1/integrations/github/callback"
    assert manifest["setup_url"] == "https://ci.example.com/v1/integrations/github/installed"
    assert manifest["default_permissions"] == {
        "contents": "read",
        "metadata": "read",
        "pull_requests": "read",
        "statuses": "write",
        "checks": "write",
    }
    assert manifest["default_events"] == ["push", "pull_request", "check_run", "check_suite"]


def test_wire_shapes_omit_or_null_as_the_contract_says() -> None:
    local = Integration(
        id="i",
        provider=IntegrationProvider.LOCAL_GIT,
        host_url=None,
        auth_mode=AuthMode.LOCAL,
        status=IntegrationStatus.ACTIVE,
        display_name=None,
        app_id=None,
        app_slug=None,
        created_by=None,
        created_at=1,
        updated_at=2,
    )
    body = local.to_json()
    assert body["display_name"] is None and body["host_url"] is None
    assert "app_id" not in body and "app_slug" not in body
    repo = IntegrationRepository("r", "n", "1", "a/b", None, False, None, 1, 1).to_json()
    assert repo["default_branch"] is None and "avatar_url" not in repo


def test_sealed_state_round_trips_and_expires() -> None:
    state = SealedState(
        kind=StateKind.GITHUB_MANIFEST,
        nonce="n",
        user_id="u",
        user_email="e@example.com",
        redirect_url="https://ci.example.com/",
        created_at=1000,
        webhook_url="https://ci.example.com/v1/webhooks/github",
    )
    assert SealedState.loads(state.dumps()) == state
    assert not state.expired(1600) and state.expired(1601)
    assert SealedState.loads("{}") is None and SealedState.loads("[1]") is None


def test_webhook_secrets_are_oore_and_64_hex() -> None:
    secret = new_webhook_secret()
    assert secret.startswith("oore_") and len(secret) == 69
    int(secret[5:], 16)
    assert new_webhook_secret() != secret
