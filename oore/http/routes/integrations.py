"""Integrations API (contract §2.9, §9.1, §9.2): GitHub Apps, GitLab, local git."""

from __future__ import annotations

import base64
import hashlib

from pydantic import BaseModel
from quart import Blueprint, Response, jsonify, request
from quart_schema import document_response, security_scheme

from oore.domain.integrations import (
    ALL_REPOSITORIES_LIMIT,
    INSTALL_COOKIE,
    INSTALL_COOKIE_TTL_SECONDS,
    INTEGRATION_SORTS,
    INTEGRATIONS_LIMIT,
    REPOSITORIES_LIMIT,
    IntegrationProvider,
)
from oore.domain.network import normalise_origin
from oore.errors import BadGateway, Conflict, NotFound
from oore.http import shapes
from oore.http.body import Body, json_body
from oore.http.context import require_session, services
from oore.http.openapi import errors, raw_response
from oore.http.query import (
    choice,
    direction,
    page_params,
    query,
    query_choice,
    query_page,
    query_raw,
    query_str,
    text,
)
from oore.http.routes.auth import OkOut
from oore.services.integrations import (
    MANIFEST_SUBMIT_SCRIPT,
    GitLabStart,
    IntegrationQuery,
    Page,
)

blueprint = Blueprint("integrations", __name__)

# What a route that calls GitLab with the integration's token may answer.
GITLAB_CALL_ERRORS = (
    BadGateway("gitlab_api_error"),
    BadGateway("gitlab_auth_failed"),
    BadGateway("gitlab_unreachable"),
    BadGateway("gitlab_parse_error"),
    Conflict("invalid_source_state"),
)

INSTALLED_PATH = "/v1/integrations/github/installed"
# The provider pages run nothing, load nothing, post nowhere and are never framed; the
# manifest page may run its one script and post to GitHub, nothing else.
PAGE_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
_SUBMIT_HASH = base64.b64encode(hashlib.sha256(MANIFEST_SUBMIT_SCRIPT.encode()).digest()).decode()
PROVIDERS = tuple(p.value for p in IntegrationProvider)


class GitHubStartIn(Body):
    webhook_url: str | None = None
    redirect_url: str | None = None


class GitHubCompleteIn(Body):
    code: str | None = None


class GitLabStartIn(Body):
    host_url: str | None = None
    auth_mode: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    access_token: str | None = None


class GitLabAuthorizeIn(Body):
    integration_id: str | None = None
    redirect_url: str | None = None


class IntegrationOut(BaseModel):
    integration: shapes.Integration


class IntegrationListOut(BaseModel):
    integrations: list[shapes.Integration]
    total: int
    active_total: int


class IntegrationDetailOut(BaseModel):
    integration: shapes.Integration
    installation_count: int
    repository_count: int
    last_webhook_at: int | None = None
    problem: shapes.Problem | None = None


class RepositoryListOut(BaseModel):
    repositories: list[shapes.Repository]
    total: int


class InstallationListOut(BaseModel):
    installations: list[shapes.Installation]
    total: int


class CreateUrlOut(BaseModel):
    create_url: str


class AuthorizeUrlOut(BaseModel):
    authorize_url: str


class WebhookSecretOut(BaseModel):
    repository_id: str
    webhook_secret: str
    rotated_at: int


class LocalGitOut(BaseModel):
    integrations: list[shapes.LocalGitIntegration]
    total: int


def _manifest_policy() -> str:
    github = normalise_origin(services().integrations.scm.config.github_web_url) or "'none'"
    return (
        f"default-src 'none'; script-src 'sha256-{_SUBMIT_HASH}'; form-action {github}; "
        "base-uri 'none'; frame-ancestors 'none'"
    )


def _html(page: Page, policy: str = PAGE_POLICY) -> Response:
    response = Response(page.html, status=page.status, content_type="text/html; charset=utf-8")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = policy
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if page.location is not None:
        response.headers["Location"] = page.location
    secure = request.scheme == "https" or services().integrations.cookie_secure
    if page.set_cookie is not None:
        response.set_cookie(
            INSTALL_COOKIE,
            page.set_cookie,
            max_age=INSTALL_COOKIE_TTL_SECONDS,
            path=INSTALLED_PATH,
            httponly=True,
            samesite="Lax",
            secure=secure,
        )
    if page.clear_cookie:
        response.delete_cookie(
            INSTALL_COOKIE, path=INSTALLED_PATH, httponly=True, samesite="Lax", secure=secure
        )
    return response


@blueprint.get("/v1/integrations")
@security_scheme([{"bearer": []}])
@document_response(IntegrationListOut)
@query(
    page_params(default=INTEGRATIONS_LIMIT[0], maximum=INTEGRATIONS_LIMIT[1]),
    choice("provider", PROVIDERS, "Only this provider's integrations"),
    text("q", "Only integrations whose name contains this"),
    choice("sort", INTEGRATION_SORTS, "Sort key (default updated_at)"),
    direction(),
)
async def list_integrations() -> Response:
    """Integrations, filtered and sorted (updated_at unless told)."""
    session = await require_session()
    page = query_page(default=INTEGRATIONS_LIMIT[0], maximum=INTEGRATIONS_LIMIT[1])
    query = IntegrationQuery(
        provider=query_choice("provider"),
        search=query_str("q"),
        sort=query_choice("sort"),
        descending=(query_choice("direction") or "desc") == "desc",
        limit=max(1, page.limit or INTEGRATIONS_LIMIT[0]),
        offset=page.offset,
    )
    found, total, active = await services().integrations.page(session, query)
    return jsonify(
        {"integrations": [i.to_json() for i in found], "total": total, "active_total": active}
    )


@blueprint.get("/v1/integration-repositories")
@security_scheme([{"bearer": []}])
@document_response(RepositoryListOut)
@query(
    page_params(default=ALL_REPOSITORIES_LIMIT[0], maximum=ALL_REPOSITORIES_LIMIT[1]),
    text("q", "Only repositories whose full name contains this"),
    choice("provider", PROVIDERS, "Only this provider's repositories"),
)
async def search_repositories() -> Response:
    """Repositories across every integration, by full name."""
    session = await require_session()
    page = query_page(default=ALL_REPOSITORIES_LIMIT[0], maximum=ALL_REPOSITORIES_LIMIT[1])
    found, total = await services().integrations.all_repositories(
        session,
        query_str("q"),
        query_choice("provider"),
        max(1, page.limit or ALL_REPOSITORIES_LIMIT[0]),
        page.offset,
    )
    return jsonify({"repositories": [r.to_json() for r in found], "total": total})


@blueprint.get("/v1/integrations/local-git")
@security_scheme([{"bearer": []}])
@document_response(LocalGitOut)
async def list_local_git() -> Response:
    """The local git integrations, each with its repository path."""
    session = await require_session()
    found = await services().integrations.local_git(session)
    return jsonify(
        {
            "integrations": [{**i.to_json(), "local_path": path} for i, path in found],
            "total": len(found),
        }
    )


@blueprint.delete("/v1/integrations/local-git/<integration_id>")
@security_scheme([{"bearer": []}])
@document_response(OkOut)
async def delete_local_git(integration_id: str) -> Response:
    session = await require_session()
    await services().integrations.delete_local_git(session, integration_id)
    return jsonify({"ok": True})


@blueprint.get("/v1/integrations/<integration_id>")
@security_scheme([{"bearer": []}])
@document_response(IntegrationDetailOut)
async def get_integration(integration_id: str) -> Response:
    """One integration with its counts, last webhook and any credential problem."""
    session = await require_session()
    detail = await services().integrations.detail(session, integration_id)
    return jsonify(detail.to_json())


@blueprint.delete("/v1/integrations/<integration_id>")
@security_scheme([{"bearer": []}])
@document_response(OkOut)
async def delete_integration(integration_id: str) -> Response:
    """Delete it; linked projects lose their source and their waiting builds."""
    session = await require_session()
    await services().integrations.delete(session, integration_id)
    return jsonify({"ok": True})


@blueprint.get("/v1/integrations/<integration_id>/repositories")
@security_scheme([{"bearer": []}])
@document_response(RepositoryListOut)
@query(
    page_params(default=REPOSITORIES_LIMIT[0], maximum=REPOSITORIES_LIMIT[1]),
    text("q", "Only repositories whose full name contains this"),
)
async def list_repositories(integration_id: str) -> Response:
    session = await require_session()
    page = query_page(default=REPOSITORIES_LIMIT[0], maximum=REPOSITORIES_LIMIT[1])
    found, total = await services().integrations.repositories(
        session,
        integration_id,
        query_str("q"),
        max(1, page.limit or REPOSITORIES_LIMIT[0]),
        page.offset,
    )
    return jsonify({"repositories": [r.to_json() for r in found], "total": total})


@blueprint.get("/v1/integrations/<integration_id>/installations")
@security_scheme([{"bearer": []}])
@document_response(InstallationListOut)
async def list_installations(integration_id: str) -> Response:
    session = await require_session()
    found = await services().integrations.installations(session, integration_id)
    return jsonify({"installations": [i.to_json() for i in found], "total": len(found)})


@blueprint.post("/v1/integrations/<integration_id>/installations")
@security_scheme([{"bearer": []}])
@document_response(InstallationListOut)
@errors(
    BadGateway("github_api_error"),
    BadGateway("github_auth_failed"),
    Conflict("invalid_source_state"),
)
async def sync_installations(integration_id: str) -> Response:
    """Fetch the installations and their repositories from the provider."""
    session = await require_session()
    found = await services().integrations.sync_installations(session, integration_id)
    return jsonify({"installations": [i.to_json() for i in found], "total": len(found)})


@blueprint.post("/v1/integrations/<integration_id>/gitlab-token/check")
@security_scheme([{"bearer": []}])
@document_response(IntegrationDetailOut)
@errors(*GITLAB_CALL_ERRORS)
async def check_gitlab_token(integration_id: str) -> Response:
    session = await require_session()
    detail = await services().integrations.check_gitlab_token(session, integration_id)
    return jsonify(detail.to_json())


@blueprint.post("/v1/integration-repositories/<repository_id>/gitlab-webhook-secret")
@security_scheme([{"bearer": []}])
@document_response(WebhookSecretOut)
@errors(*GITLAB_CALL_ERRORS)
async def rotate_webhook_secret(repository_id: str) -> Response:
    """A new webhook secret for a GitLab repository, shown this once."""
    session = await require_session()
    return jsonify(
        await services().integrations.rotate_gitlab_webhook_secret(session, repository_id)
    )


# -- GitHub App manifest flow ---------------------------------------------------------------


@blueprint.post("/v1/integrations/github/start")
@security_scheme([{"bearer": []}])
@json_body(GitHubStartIn)
@document_response(CreateUrlOut)
async def github_start(body: GitHubStartIn) -> Response:
    session = await require_session()
    url = await services().integrations.github_start(session, body.webhook_url, body.redirect_url)
    return jsonify({"create_url": url})


@blueprint.get("/v1/integrations/github/create")
@raw_response(200, "An HTML page that posts the app manifest to GitHub", "text/html")
@query(text("state", "The state the manifest flow was started with"))
async def github_create() -> Response:
    """An HTML page that posts the app manifest to GitHub."""
    page = Page(services().integrations.github_create_page(query_raw("state")))
    return _html(page, _manifest_policy())


@blueprint.get("/v1/integrations/github/callback")
@raw_response(200, "HTML: the app is stored, the browser sent on to install it", "text/html")
@raw_response(
    303,
    "The app is stored: on to GitHub to install it",
    "text/html",
    headers={"Location": "GitHub's installation page of the app"},
)
@query(text("code", "The code GitHub sends back"), text("state", "The flow's state"))
async def github_callback() -> Response:
    """Where GitHub sends the browser after the app is created (contract §9.1 step 3)."""
    page = await services().integrations.github_callback(query_raw("code"), query_raw("state"))
    return _html(page)


@blueprint.get("/v1/integrations/github/installed")
@raw_response(200, "An HTML page: installations and repositories synced", "text/html")
async def github_installed() -> Response:
    """Where GitHub sends the browser after the app is installed (contract §9.1 step 4)."""
    page = await services().integrations.github_installed(request.cookies.get(INSTALL_COOKIE))
    return _html(page)


@blueprint.post("/v1/integrations/github/complete")
@security_scheme([{"bearer": []}])
@json_body(GitHubCompleteIn)
@document_response(IntegrationOut)
@errors(
    BadGateway("github_conversion_failed"),
    BadGateway("github_api_error"),
    BadGateway("github_auth_failed"),
)
async def github_complete(body: GitHubCompleteIn) -> Response:
    session = await require_session()
    integration = await services().integrations.github_complete(session, body.code)
    return jsonify({"integration": integration.to_json()})


# -- GitLab -------------------------------------------------------------------------------


@blueprint.post("/v1/integrations/gitlab/start")
@security_scheme([{"bearer": []}])
@json_body(GitLabStartIn)
@document_response(IntegrationOut)
@errors(
    BadGateway("gitlab_api_error"),
    BadGateway("gitlab_auth_failed"),
    BadGateway("gitlab_unreachable"),
    BadGateway("gitlab_parse_error"),
)
async def gitlab_start(body: GitLabStartIn) -> Response:
    session = await require_session()
    integration = await services().integrations.gitlab_start(
        session,
        GitLabStart(
            host_url=body.host_url,
            auth_mode=body.auth_mode,
            client_id=body.client_id,
            client_secret=body.client_secret,
            access_token=body.access_token,
        ),
    )
    return jsonify({"integration": integration.to_json()})


@blueprint.post("/v1/integrations/gitlab/authorize")
@security_scheme([{"bearer": []}])
@json_body(GitLabAuthorizeIn)
@document_response(AuthorizeUrlOut)
@errors(NotFound("not_found"), Conflict("invalid_source_state"))
async def gitlab_authorize(body: GitLabAuthorizeIn) -> Response:
    session = await require_session()
    url = await services().integrations.gitlab_authorize(
        session, body.integration_id, body.redirect_url
    )
    return jsonify({"authorize_url": url})


@blueprint.get("/v1/integrations/gitlab/callback")
@raw_response(200, "HTML: the authorization is stored and projects synced", "text/html")
@query(text("code", "The code GitLab sends back"), text("state", "The flow's state"))
async def gitlab_callback() -> Response:
    """Where GitLab sends the browser after the OAuth consent (contract §9.2)."""
    page = await services().integrations.gitlab_callback(query_raw("code"), query_raw("state"))
    return _html(page)
