"""Integrations API over HTTP (contract §2.9, §9.1, §9.2) against loopback GitHub/GitLab."""

from __future__ import annotations

import base64
import hashlib
import itertools
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
import trio

from oore.domain.tokens import hash_token, new_token
from oore.domain.users import USER_SESSION_TTL, Role, UserStatus
from oore.runtime import Runtime
from oore.services.scm import ScmConfig
from oore.store import Store
from tests.http.builds_kit import repo
from tests.http.conftest import REMOTE, Api, FakeClock
from tests.http.setup_kit import actions, proxy_ready, vouch
from tests.scm_kit import (
    APP_SLUG,
    CLIENT_SECRET,
    GITLAB_TOKEN,
    WEBHOOK_SECRET,
    FakeScm,
    fake_scm,
)

__all__ = ["fake_scm", "repo"]

WEBHOOK_URL = "https://ci.example.com/v1/webhooks/github"
REDIRECT_URL = "https://ci.example.com/settings/integrations"


@pytest.fixture
def scm_config(fake_scm: FakeScm) -> ScmConfig:
    return fake_scm.scm_config


class Remote:
    """A remote-mode instance and sessions of each role on it."""

    def __init__(self, api: Api, store: Store, clock: FakeClock, owner: str) -> None:
        self.api, self.store, self.clock, self.owner = api, store, clock, owner
        self._n = itertools.count(1)

    async def user(self, role: Role) -> str:
        user = await self.store.users.create(
            email=f"{role.value}{next(self._n)}@example.com",
            role=role,
            status=UserStatus.ACTIVE,
            subject=None,
            now=self.clock.now(),
        )
        token = new_token()
        await self.store.users.create_session(
            hash_token(token), user.id, self.clock.now(), self.clock.now() + USER_SESSION_TTL
        )
        return token


@pytest.fixture
async def remote(api: Api, runtime: Runtime, store: Store, clock: FakeClock) -> Remote:
    await proxy_ready(api, runtime)
    login = await api.post(
        "/v1/auth/trusted-proxy/login", headers=vouch("owner@example.com"), peer=REMOTE
    )
    assert login.status == 200, login.body
    return Remote(api, store, clock, login.body["session_token"])


async def github_app(remote: Remote) -> dict[str, object]:
    done = await remote.api.post(
        "/v1/integrations/github/complete", json={"code": "good-code"}, token=remote.owner
    )
    assert done.status == 200, done.body
    integration: dict[str, object] = done.body["integration"]
    return integration


async def gitlab_token_integration(remote: Remote, fake_scm: FakeScm) -> dict[str, object]:
    started = await remote.api.post(
        "/v1/integrations/gitlab/start",
        json={
            "host_url": fake_scm.base,
            "auth_mode": "personal_token",
            "access_token": GITLAB_TOKEN,
        },
        token=remote.owner,
    )
    assert started.status == 200, started.body
    integration: dict[str, object] = started.body["integration"]
    return integration


# -- mode and permissions --------------------------------------------------------------------


async def test_local_mode_refuses_every_flow_with_mode_restricted(
    api: Api, owner_token: str
) -> None:
    for path, body in (
        (
            "/v1/integrations/github/start",
            {"webhook_url": WEBHOOK_URL, "redirect_url": REDIRECT_URL},
        ),
        ("/v1/integrations/github/complete", {"code": "good-code"}),
        ("/v1/integrations/gitlab/start", {"host_url": "https://gitlab.example.com"}),
        ("/v1/integrations/gitlab/authorize", {"integration_id": "x", "redirect_url": "y"}),
    ):
        reply = await api.post(path, json=body, token=owner_token)
        assert (reply.status, reply.code) == (403, "mode_restricted"), path
    listed = await api.get("/v1/integrations", token=owner_token)
    assert listed.status == 200 and listed.body == {
        "integrations": [],
        "total": 0,
        "active_total": 0,
    }


async def test_developers_read_but_may_not_write(remote: Remote) -> None:
    developer = await remote.user(Role.DEVELOPER)
    assert (await remote.api.get("/v1/integrations", token=developer)).status == 200
    reply = await remote.api.post(
        "/v1/integrations/github/complete", json={"code": "good-code"}, token=developer
    )
    assert (reply.status, reply.code) == (403, "permission_denied")
    created = await github_app(remote)
    gone = await remote.api.call("DELETE", f"/v1/integrations/{created['id']}", token=developer)
    assert (gone.status, gone.code) == (403, "permission_denied")


# -- GitHub ----------------------------------------------------------------------------------


async def test_github_start_checks_the_urls_and_seals_the_state(remote: Remote) -> None:
    api, owner = remote.api, remote.owner
    missing = await api.post(
        "/v1/integrations/github/start", json={"redirect_url": REDIRECT_URL}, token=owner
    )
    assert (missing.status, missing.code) == (400, "invalid_input")
    foreign = await api.post(
        "/v1/integrations/github/start",
        json={"webhook_url": WEBHOOK_URL, "redirect_url": "https://evil.example.net/x"},
        token=owner,
    )
    assert (foreign.status, foreign.code) == (400, "invalid_redirect_url")
    started = await api.post(
        "/v1/integrations/github/start",
        json={"webhook_url": WEBHOOK_URL, "redirect_url": REDIRECT_URL},
        token=owner,
    )
    assert started.status == 200, started.body
    url = urlsplit(started.body["create_url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == (
        "https://ci.example.com/v1/integrations/github/create"
    )
    state = parse_qs(url.query)["state"][0]
    assert "owner@example.com" not in unquote(state)  # sealed, not just encoded
    page = await api.get(f"/v1/integrations/github/create?{url.query}")
    assert page.status == 200 and "settings/apps/new" in page.body
    assert "check_suite" in page.body and "/v1/integrations/github/callback" in page.body
    bad = await api.get("/v1/integrations/github/create?state=nonsense")
    assert bad.status == 200 and "invalid" in bad.body


@pytest.mark.parametrize(
    "path",
    [
        "/v1/integrations/github/create?state=nonsense",
        "/v1/integrations/github/callback?code=c&state=nonsense",
        "/v1/integrations/github/installed",
        "/v1/integrations/gitlab/callback?code=c&state=nonsense",
    ],
)
async def test_provider_pages_run_nothing_and_are_never_framed(api: Api, path: str) -> None:
    page = await api.get(path)
    assert page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'"):
        assert directive in policy
    assert "unsafe-inline" not in policy
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"


async def test_the_manifest_page_may_run_its_script_and_post_to_github_only(
    remote: Remote, fake_scm: FakeScm
) -> None:
    started = await remote.api.post(
        "/v1/integrations/github/start",
        json={"webhook_url": WEBHOOK_URL, "redirect_url": REDIRECT_URL},
        token=remote.owner,
    )
    page = await remote.api.get(
        f"/v1/integrations/github/create?{urlsplit(started.body['create_url']).query}"
    )
    script = page.body.split("<script>", 1)[1].split("</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = [part.strip() for part in page.headers["Content-Security-Policy"].split(";")]
    assert f"script-src 'sha256-{digest}'" in policy
    github = urlsplit(fake_scm.scm_config.github_web_url)
    assert f"form-action {github.scheme}://{github.netloc}" in policy


async def test_github_complete_stores_the_app_without_showing_secrets(
    remote: Remote, fake_scm: FakeScm, store: Store
) -> None:
    bad = await remote.api.post(
        "/v1/integrations/github/complete", json={"code": "used-code"}, token=remote.owner
    )
    assert (bad.status, bad.code) == (502, "github_conversion_failed")
    blank = await remote.api.post("/v1/integrations/github/complete", json={}, token=remote.owner)
    assert (blank.status, blank.code) == (400, "invalid_input")
    created = await github_app(remote)
    assert created["provider"] == "github" and created["app_slug"] == APP_SLUG
    assert created["status"] == "active" and created["auth_mode"] == "github_app"
    detail = await remote.api.get(f"/v1/integrations/{created['id']}", token=remote.owner)
    assert detail.status == 200
    text = str(detail.body) + str(created)
    for secret in (CLIENT_SECRET, WEBHOOK_SECRET, "PRIVATE KEY"):
        assert secret not in text
    assert "integration_created" in await actions(store)


async def test_github_callback_and_installed_pages_sync_repositories(
    remote: Remote, fake_scm: FakeScm
) -> None:
    api = remote.api
    started = await api.post(
        "/v1/integrations/github/start",
        json={"webhook_url": WEBHOOK_URL, "redirect_url": REDIRECT_URL},
        token=remote.owner,
    )
    state = parse_qs(urlsplit(started.body["create_url"]).query)["state"][0]
    state = quote(state, safe="")
    back = await api.get(f"/v1/integrations/github/callback?code=good-code&state={state}")
    assert back.status == 303
    assert back.headers["Location"] == f"{fake_scm.base}/gh-web/apps/{APP_SLUG}/installations/new"
    cookie = back.headers["Set-Cookie"]
    assert "oore_gh_install_state=" in cookie and "HttpOnly" in cookie
    assert "Path=/v1/integrations/github/installed" in cookie
    again = await api.get(f"/v1/integrations/github/callback?code=good-code&state={state}")
    assert again.status == 200 and "invalid" in again.body  # single use
    installed = await api.get("/v1/integrations/github/installed?installation_id=31337")
    assert installed.status == 200
    assert "/settings/integrations/" in installed.body and "installed=true" in installed.body
    listed = await api.get("/v1/integrations?provider=github", token=remote.owner)
    [integration] = listed.body["integrations"]
    repos = await api.get(f"/v1/integrations/{integration['id']}/repositories", token=remote.owner)
    assert [r["full_name"] for r in repos.body["repositories"]] == ["acme/app", "acme/lib"]
    assert repos.body["repositories"][0]["is_private"] is True
    installations = await api.get(
        f"/v1/integrations/{integration['id']}/installations", token=remote.owner
    )
    assert [i["account_name"] for i in installations.body["installations"]] == ["acme"]
    searched = await api.get("/v1/integration-repositories?q=lib", token=remote.owner)
    assert [r["full_name"] for r in searched.body["repositories"]] == ["acme/lib"]


async def test_a_rejected_app_credential_opens_a_problem_until_the_next_success(
    remote: Remote, fake_scm: FakeScm
) -> None:
    created = await github_app(remote)
    path = f"/v1/integrations/{created['id']}"
    fake_scm.github_fault = "reject"
    failed = await remote.api.post(f"{path}/installations", token=remote.owner)
    assert (failed.status, failed.code) == (502, "github_auth_failed")
    detail = await remote.api.get(path, token=remote.owner)
    assert detail.body["integration"]["status"] == "error"
    assert detail.body["problem"]["code"] == "github_auth_failed"
    fake_scm.github_fault = None
    synced = await remote.api.post(f"{path}/installations", token=remote.owner)
    assert synced.status == 200 and synced.body["total"] == 1
    healed = await remote.api.get(path, token=remote.owner)
    assert healed.body["integration"]["status"] == "active" and "problem" not in healed.body
    assert healed.body["repository_count"] == 2 and healed.body["installation_count"] == 1


# -- GitLab ----------------------------------------------------------------------------------


async def test_gitlab_personal_token_creates_an_active_integration_with_projects(
    remote: Remote, fake_scm: FakeScm
) -> None:
    created = await gitlab_token_integration(remote, fake_scm)
    assert created["status"] == "active" and created["auth_mode"] == "personal_token"
    assert created["display_name"] == f"Jane Doe ({urlsplit(fake_scm.base).netloc})"
    assert GITLAB_TOKEN not in str(created)
    repos = await remote.api.get(
        f"/v1/integrations/{created['id']}/repositories?limit=2", token=remote.owner
    )
    assert repos.body["total"] == 3 and len(repos.body["repositories"]) == 2
    assert fake_scm.seen("/api/v4/user")[0].headers["private-token"] == GITLAB_TOKEN


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (
            {"host_url": "http://gitlab.example.com", "auth_mode": "personal_token"},
            400,
            "invalid_input",
        ),
        (
            {"host_url": "https://gitlab.example.com/path", "auth_mode": "oauth_app"},
            400,
            "invalid_input",
        ),
        (
            {"host_url": "https://gitlab.example.com", "auth_mode": "personal_token"},
            400,
            "invalid_input",
        ),
        (
            {"host_url": "https://gitlab.example.com", "auth_mode": "oauth_app"},
            400,
            "invalid_input",
        ),
        ({"host_url": "https://gitlab.example.com", "auth_mode": "magic"}, 400, "invalid_input"),
        ({"host_url": 5}, 400, "invalid_request"),
    ],
)
async def test_gitlab_start_refuses_bad_input(
    remote: Remote, body: dict[str, object], status: int, code: str
) -> None:
    reply = await remote.api.post("/v1/integrations/gitlab/start", json=body, token=remote.owner)
    assert (reply.status, reply.code) == (status, code)


async def test_gitlab_start_reports_provider_failures(remote: Remote, fake_scm: FakeScm) -> None:
    wrong = await remote.api.post(
        "/v1/integrations/gitlab/start",
        json={"host_url": fake_scm.base, "auth_mode": "personal_token", "access_token": "nope"},
        token=remote.owner,
    )
    assert (wrong.status, wrong.code) == (400, "gitlab_auth_failed")
    fake_scm.gitlab_fault = "broken"
    broken = await remote.api.post(
        "/v1/integrations/gitlab/start",
        json={
            "host_url": fake_scm.base,
            "auth_mode": "oauth_app",
            "client_id": "c",
            "client_secret": "s",
        },
        token=remote.owner,
    )
    assert (broken.status, broken.code) == (502, "gitlab_unreachable")
    listed = await remote.api.get("/v1/integrations", token=remote.owner)
    assert listed.body["total"] == 0


async def test_gitlab_oauth_app_authorize_and_callback(remote: Remote, fake_scm: FakeScm) -> None:
    api, owner = remote.api, remote.owner
    started = await api.post(
        "/v1/integrations/gitlab/start",
        json={
            "host_url": fake_scm.base,
            "auth_mode": "oauth_app",
            "client_id": "cid",
            "client_secret": "csecret",
        },
        token=owner,
    )
    assert started.status == 200, started.body
    integration = started.body["integration"]
    assert integration["status"] == "inactive"
    # "https origin" as at start: http is allowed for a literal loopback IP only.
    authorize = await api.post(
        "/v1/integrations/gitlab/authorize",
        json={"integration_id": integration["id"], "redirect_url": REDIRECT_URL},
        token=owner,
    )
    assert authorize.status == 200, authorize.body
    url = urlsplit(authorize.body["authorize_url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{fake_scm.base}/oauth/authorize"
    query = parse_qs(url.query)
    assert query["client_id"] == ["cid"] and query["scope"] == ["read_api read_repository"]
    assert query["redirect_uri"] == ["https://ci.example.com/v1/integrations/gitlab/callback"]
    state = quote(query["state"][0], safe="")
    bad_code = await api.get(f"/v1/integrations/gitlab/callback?code=wrong&state={state}")
    assert bad_code.status == 200 and "failed" in bad_code.body
    reused = await api.get(f"/v1/integrations/gitlab/callback?code=gitlab-code&state={state}")
    assert "invalid" in reused.body  # the state was used up by the failed attempt
    again = await api.post(
        "/v1/integrations/gitlab/authorize",
        json={"integration_id": integration["id"], "redirect_url": REDIRECT_URL},
        token=owner,
    )
    state = quote(parse_qs(urlsplit(again.body["authorize_url"]).query)["state"][0], safe="")
    done = await api.get(f"/v1/integrations/gitlab/callback?code=gitlab-code&state={state}")
    assert done.status == 200 and "connected=true" in done.body
    detail = await api.get(f"/v1/integrations/{integration['id']}", token=owner)
    assert detail.body["integration"]["status"] == "active"
    assert detail.body["repository_count"] == 3
    exchange = fake_scm.seen("/oauth/token")[-1]
    assert b"client_secret=csecret" in exchange.body
    unknown = await api.post(
        "/v1/integrations/gitlab/authorize",
        json={
            "integration_id": "00000000-0000-4000-8000-000000000000",
            "redirect_url": REDIRECT_URL,
        },
        token=owner,
    )
    assert (unknown.status, unknown.code) == (404, "not_found")
    foreign = await api.post(
        "/v1/integrations/gitlab/authorize",
        json={"integration_id": integration["id"], "redirect_url": "https://evil.example.net"},
        token=owner,
    )
    assert (foreign.status, foreign.code) == (400, "invalid_redirect_url")
    token_one = await gitlab_token_integration(remote, fake_scm)
    wrong_mode = await api.post(
        "/v1/integrations/gitlab/authorize",
        json={"integration_id": token_one["id"], "redirect_url": REDIRECT_URL},
        token=owner,
    )
    assert (wrong_mode.status, wrong_mode.code) == (400, "invalid_auth_mode")


async def test_gitlab_webhook_secret_rotation_and_token_check(
    remote: Remote, fake_scm: FakeScm, store: Store
) -> None:
    created = await gitlab_token_integration(remote, fake_scm)
    repos = await remote.api.get(
        f"/v1/integrations/{created['id']}/repositories", token=remote.owner
    )
    repo_id = repos.body["repositories"][0]["id"]
    first = await remote.api.post(
        f"/v1/integration-repositories/{repo_id}/gitlab-webhook-secret", token=remote.owner
    )
    assert first.status == 200, first.body
    secret = first.body["webhook_secret"]
    assert secret.startswith("oore_") and len(secret) == 5 + 64
    second = await remote.api.post(
        f"/v1/integration-repositories/{repo_id}/gitlab-webhook-secret", token=remote.owner
    )
    assert second.body["webhook_secret"] != secret
    assert "gitlab_webhook_secret_rotated" in await actions(store)
    missing = await remote.api.post(
        "/v1/integration-repositories/nope/gitlab-webhook-secret", token=remote.owner
    )
    assert (missing.status, missing.code) == (404, "not_found")
    check = f"/v1/integrations/{created['id']}/gitlab-token/check"
    assert (await remote.api.post(check, token=remote.owner)).status == 200
    fake_scm.gitlab_fault = "reject"
    failed = await remote.api.post(check, token=remote.owner)
    assert (failed.status, failed.code) == (400, "gitlab_auth_failed")
    detail = await remote.api.get(f"/v1/integrations/{created['id']}", token=remote.owner)
    assert detail.body["integration"]["status"] == "error"
    assert detail.body["problem"]["code"] == "gitlab_auth_failed"


# -- listing and deleting -------------------------------------------------------------------


async def test_listing_filters_sorts_and_pages(remote: Remote, fake_scm: FakeScm) -> None:
    await github_app(remote)
    await gitlab_token_integration(remote, fake_scm)
    api, owner = remote.api, remote.owner
    listed = await api.get("/v1/integrations?sort=provider&direction=asc", token=owner)
    assert [i["provider"] for i in listed.body["integrations"]] == ["github", "gitlab"]
    assert listed.body["total"] == 2 and listed.body["active_total"] == 2
    paged = await api.get("/v1/integrations?limit=1&offset=1&sort=provider", token=owner)
    assert [i["provider"] for i in paged.body["integrations"]] == ["github"]
    found = await api.get("/v1/integrations?q=jane", token=owner)
    assert [i["provider"] for i in found.body["integrations"]] == ["gitlab"]
    bad = await api.get("/v1/integrations?sort=nonsense", token=owner)
    assert (bad.status, bad.code) == (400, "invalid_input")
    missing = await api.get("/v1/integrations/not-a-uuid", token=owner)
    assert (missing.status, missing.code) == (404, "not_found")


async def test_delete_removes_the_integration_and_its_repositories(
    remote: Remote, fake_scm: FakeScm, store: Store
) -> None:
    created = await gitlab_token_integration(remote, fake_scm)
    path = f"/v1/integrations/{created['id']}"
    gone = await remote.api.call("DELETE", path, token=remote.owner)
    assert gone.status == 200 and gone.body == {"ok": True}
    assert (await remote.api.get(path, token=remote.owner)).status == 404
    again = await remote.api.call("DELETE", path, token=remote.owner)
    assert (again.status, again.code) == (404, "not_found")
    searched = await remote.api.get("/v1/integration-repositories", token=remote.owner)
    assert searched.body["total"] == 0
    assert "integration_deleted" in await actions(store)


# -- local git -----------------------------------------------------------------------------


async def test_a_local_repository_project_is_listed_under_a_local_git_integration(
    api: Api, owner_token: str, repo: Path
) -> None:
    canonical = str(await trio.Path(repo).resolve())
    for name in ("one", "two"):
        created = await api.post(
            "/v1/projects",
            json={"name": name, "local_repository_path": str(repo)},
            token=owner_token,
        )
        assert created.status == 201, created.body
    listed = await api.get("/v1/integrations", token=owner_token)
    [integration] = listed.body["integrations"]
    assert integration["provider"] == "local_git" and integration["auth_mode"] == "local"
    repos = await api.get(f"/v1/integrations/{integration['id']}/repositories", token=owner_token)
    assert [r["external_id"] for r in repos.body["repositories"]] == [canonical]
    local = await api.get("/v1/integrations/local-git", token=owner_token)
    assert [i["local_path"] for i in local.body["integrations"]] == [canonical]
    owned = await api.get(f"/v1/projects?integration_id={integration['id']}", token=owner_token)
    assert sorted(p["name"] for p in owned.body["projects"]) == ["one", "two"]
    unknown = await api.get(
        "/v1/projects?integration_id=00000000-0000-4000-8000-000000000000", token=owner_token
    )
    assert unknown.body["total"] == 0
    removed = await api.call(
        "DELETE", f"/v1/integrations/local-git/{integration['id']}", token=owner_token
    )
    assert removed.status == 200
    projects = await api.get("/v1/projects", token=owner_token)
    assert all("repository_id" not in p for p in projects.body["projects"])
