"""The one SCM client against loopback GitHub and GitLab replaying documented answers."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from oore.errors import BadGateway
from oore.services.scm import (
    GitHubCredentialRejected,
    GitLabAuthFailed,
    GitLabCredential,
    ScmClient,
)
from tests.scm_kit import (
    APP_ID,
    APP_SLUG,
    CLIENT_SECRET,
    GITLAB_TOKEN,
    INSTALLATION_ID,
    INSTALLATION_TOKEN,
    WEBHOOK_SECRET,
    FakeScm,
    fake_scm,
)

__all__ = ["fake_scm"]

NOW = 1_800_000_000


async def test_manifest_conversion_returns_the_app_and_its_secrets(fake_scm: FakeScm) -> None:
    async with ScmClient(fake_scm.scm_config).session() as scm:
        app = await scm.convert_manifest("good-code")
    assert (app.app_id, app.slug, app.owner_login) == (str(APP_ID), APP_SLUG, "acme")
    assert (app.client_secret, app.webhook_secret) == (CLIENT_SECRET, WEBHOOK_SECRET)
    assert app.pem.startswith("-----BEGIN")
    [sent] = fake_scm.seen("/gh-api/app-manifests/good-code/conversions")
    assert sent.method == "POST"
    assert sent.headers["accept"] == "application/vnd.github+json"


async def test_an_unknown_manifest_code_is_502_github_conversion_failed(
    fake_scm: FakeScm,
) -> None:
    async with ScmClient(fake_scm.scm_config).session() as scm:
        with pytest.raises(BadGateway) as caught:
            await scm.convert_manifest("used-code")
    assert (caught.value.status, caught.value.code) == (502, "github_conversion_failed")


async def test_installations_and_repositories_use_a_verified_app_jwt(fake_scm: FakeScm) -> None:
    pem = fake_scm.key.as_pem(private=True).decode()
    async with ScmClient(fake_scm.scm_config).session() as scm:
        installations = await scm.list_installations(str(APP_ID), pem, NOW)
        token = await scm.installation_token(str(APP_ID), pem, str(INSTALLATION_ID), NOW)
        repos = await scm.installation_repositories(token.token)
    assert [(i.id, i.account_login, i.account_type) for i in installations] == [
        (str(INSTALLATION_ID), "acme", "Organization")
    ]
    assert token.token == INSTALLATION_TOKEN
    assert [(r.full_name, r.is_private, r.default_branch) for r in repos] == [
        ("acme/app", True, "main"),
        ("acme/lib", False, "trunk"),
    ]
    [listed] = fake_scm.seen("/gh-api/app/installations")
    claims = fake_scm.app_jwt_claims(listed)
    assert claims["iss"] == str(APP_ID)
    assert claims["iat"] < NOW < claims["exp"] <= NOW + 600
    [repo_call] = fake_scm.seen("/gh-api/installation/repositories")
    assert repo_call.headers["authorization"] == f"Bearer {INSTALLATION_TOKEN}"


async def test_github_refusing_the_credentials_is_a_credential_rejection(
    fake_scm: FakeScm,
) -> None:
    fake_scm.github_fault = "reject"
    pem = fake_scm.key.as_pem(private=True).decode()
    async with ScmClient(fake_scm.scm_config).session() as scm:
        with pytest.raises(GitHubCredentialRejected):
            await scm.list_installations(str(APP_ID), pem, NOW)


async def test_gitlab_user_projects_and_version(fake_scm: FakeScm) -> None:
    credential = GitLabCredential(GITLAB_TOKEN)
    async with ScmClient(fake_scm.scm_config).session() as scm:
        user = await scm.gitlab_user(fake_scm.base, credential)
        projects = await scm.gitlab_projects(fake_scm.base, credential)
        await scm.gitlab_version(fake_scm.base)
    assert (user.id, user.username, user.name) == ("55", "jane", "Jane Doe")
    assert [p.full_name for p in projects] == ["group/svc0", "group/svc1", "group/svc2"]
    assert [p.is_private for p in projects] == [False, True, True]
    pages = fake_scm.seen("/api/v4/projects")
    assert [p.query["page"] for p in pages] == ["1", "2"]
    assert all(p.query["membership"] == "true" for p in pages)
    assert all(p.headers["private-token"] == GITLAB_TOKEN for p in pages)


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        ("reject", GitLabAuthFailed, "gitlab_auth_failed"),
        ("broken", BadGateway, "gitlab_api_error"),
        ("garbage", BadGateway, "gitlab_parse_error"),
    ],
)
async def test_gitlab_failures_have_the_contract_codes(
    fake_scm: FakeScm, fault: str, error: type[Exception], code: str
) -> None:
    fake_scm.gitlab_fault = fault
    async with ScmClient(fake_scm.scm_config).session() as scm:
        with pytest.raises(error) as caught:
            await scm.gitlab_user(fake_scm.base, GitLabCredential(GITLAB_TOKEN))
    assert caught.value.code == code  # type: ignore[attr-defined]


async def test_an_unreachable_gitlab_is_502_gitlab_unreachable(fake_scm: FakeScm) -> None:
    async with ScmClient(fake_scm.scm_config).session() as scm:
        with pytest.raises(BadGateway) as caught:
            await scm.gitlab_version("http://127.0.0.1:9")
    assert caught.value.code == "gitlab_unreachable"


async def test_a_hanging_provider_times_out_as_gitlab_unreachable(fake_scm: FakeScm) -> None:
    fake_scm.hold = threading.Event()
    try:
        config = replace(fake_scm.scm_config, timeout=0.3)
        async with ScmClient(config).session() as scm:
            with pytest.raises(BadGateway) as caught:
                await scm.gitlab_user(fake_scm.base, GitLabCredential(GITLAB_TOKEN))
    finally:
        fake_scm.hold.set()
    assert caught.value.code == "gitlab_unreachable"


async def test_gitlab_oauth_exchange_posts_the_code(fake_scm: FakeScm) -> None:
    async with ScmClient(fake_scm.scm_config).session() as scm:
        tokens = await scm.gitlab_exchange(
            fake_scm.base,
            client_id="cid",
            client_secret="csecret",
            code="gitlab-code",
            redirect_uri="https://ci.example.com/v1/integrations/gitlab/callback",
        )
        with pytest.raises(GitLabAuthFailed):
            await scm.gitlab_exchange(
                fake_scm.base, client_id="cid", client_secret="x", code="bad", redirect_uri="r"
            )
    assert tokens.expires_in == 7200 and tokens.refresh_token
    sent = fake_scm.seen("/oauth/token")[0]
    assert b"grant_type=authorization_code" in sent.body and b"code=gitlab-code" in sent.body
