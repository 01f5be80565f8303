"""OpenID Connect: setup with OIDC, public sign-in, and the external-access OIDC settings
(contract §2.2, §2.3, §10.3)."""

from __future__ import annotations

from pydantic import BaseModel
from quart import Blueprint, Response, jsonify, request
from quart_schema import document_response, security_scheme

from oore.domain.oidc import ClientSettings
from oore.errors import (
    BadGateway,
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from oore.http.body import Body, json_body
from oore.http.context import client_ip, require_session, services
from oore.http.cookies import signed_in
from oore.http.openapi import errors
from oore.http.query import query, query_str, text
from oore.http.routes.auth import signing_in

blueprint = Blueprint("oidc", __name__)


class ConfigureOidcIn(Body):
    issuer_url: str
    client_id: str
    client_secret: str | None = None
    clear_client_secret: bool = False


class ConfigureOidcOut(BaseModel):
    state: str
    discovered_issuer: str
    session_expires_at: int | None = None


class StartOidcIn(Body):
    redirect_uri: str


class StartOidcOut(BaseModel):
    authorization_url: str
    state: str


class CodeIn(Body):
    code: str
    state: str


class OwnerVerifiedOut(BaseModel):
    state: str
    owner_email: str
    oidc_subject: str
    session_expires_at: int | None = None


class SignedInUserOut(BaseModel):
    email: str
    oidc_subject: str
    user_id: str | None = None
    role: str | None = None
    avatar_url: str | None = None


class SignedInOut(BaseModel):
    session_token: str | None = None  # omitted when the session went into the cookie
    expires_at: int
    user: SignedInUserOut


class OidcSettingsOut(BaseModel):
    issuer_url: str
    client_id: str
    has_client_secret: bool
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str | None = None
    jwks_uri: str
    configured_at: int


class OidcSettingsIn(Body):
    issuer_url: str
    client_id: str
    client_secret: str | None = None


class OidcSettingsSavedOut(BaseModel):
    discovered_issuer: str
    has_client_secret: bool
    configured_at: int


class TestConnectionIn(Body):
    issuer_url: str


class TestConnectionOut(BaseModel):
    success: bool
    discovered_issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str | None = None
    jwks_uri: str
    scopes_supported: list[str]


def _authorization() -> str | None:
    return request.headers.get("Authorization")


@blueprint.post("/v1/setup/oidc/configure")
@security_scheme([{"bearer": []}])
@json_body(ConfigureOidcIn)
@document_response(ConfigureOidcOut)
@errors(Conflict("already_configured"), Conflict("invalid_state"))
async def configure(body: ConfigureOidcIn) -> Response:
    """Choose the OpenID Provider (setup session); discovery must succeed."""
    configured = await services().signin.configure_setup(
        ClientSettings(
            body.issuer_url, body.client_id, body.client_secret, body.clear_client_secret
        ),
        _authorization(),
        client_ip(),
    )
    return jsonify(configured.to_json())


@blueprint.post("/v1/setup/owner/start-oidc")
@security_scheme([{"bearer": []}])
@json_body(StartOidcIn)
@document_response(StartOidcOut)
@errors(
    Conflict("already_configured"),
    Conflict("invalid_state"),
    Conflict("oidc_not_configured"),
    TooManyRequests("too_many_pending"),
    BadGateway("oidc_discovery_error"),
)
async def start_owner(body: StartOidcIn) -> Response:
    """Begin the owner's sign-in at the provider (remote + oidc mode, setup session)."""
    started = await services().signin.start_setup(body.redirect_uri, _authorization())
    return jsonify(started.to_json())


@blueprint.post("/v1/setup/owner/verify-oidc")
@json_body(CodeIn)
@document_response(OwnerVerifiedOut)
@errors(
    Unauthorized("no_session"),
    Unauthorized("invalid_session"),
    Unauthorized("session_expired"),
    Conflict("already_configured"),
    Conflict("invalid_state"),
    Conflict("stale_oidc_setup"),
    BadGateway("oidc_discovery_error"),
    BadGateway("token_exchange_error"),
    BadGateway("id_token_verification_error"),
    BadGateway("missing_id_token"),
    BadGateway("missing_email"),
)
async def verify_owner(body: CodeIn) -> Response:
    """Finish the owner's sign-in; the setup session bound at start is used, not a header."""
    verified = await services().signin.verify_setup(body.code, body.state, client_ip())
    return jsonify(verified.to_json())


@blueprint.get("/v1/auth/oidc/start")
@query(text("redirect_uri", "Where the provider sends the browser back (§7.3 rule)"))
@document_response(StartOidcOut)
@errors(
    Conflict("setup_incomplete"),
    Conflict("oidc_not_configured"),
    TooManyRequests("too_many_pending"),
    TooManyRequests("oidc_start_rate_limited"),
    ServiceUnavailable("oidc_start_expired"),
    BadGateway("oidc_discovery_error"),
)
async def start_sign_in() -> Response:
    """Begin a sign-in at the provider; answer with where to send the browser."""
    started = await services().signin.start(query_str("redirect_uri"), client_ip())
    return jsonify(started.to_json())


@blueprint.post("/v1/auth/oidc/callback")
@json_body(CodeIn)
@document_response(SignedInOut)
@errors(
    Forbidden("user_not_found"),
    Conflict("setup_incomplete"),
    Conflict("oidc_not_configured"),
    BadGateway("oidc_discovery_error"),
    BadGateway("token_exchange_error"),
    BadGateway("id_token_verification_error"),
    BadGateway("missing_id_token"),
    BadGateway("missing_email"),
)
async def callback(body: CodeIn) -> Response:
    """Finish a sign-in: an active user, or an invited one (activated now), gets a session
    (as the ``oore_session`` cookie with ``X-Oore-Session: cookie``)."""
    result = await signing_in(
        "oidc", services().signin.callback(body.code, body.state, client_ip())
    )
    return signed_in(result)


@blueprint.get("/v1/settings/external-access/oidc")
@security_scheme([{"bearer": []}])
@document_response(OidcSettingsOut)
@errors(Conflict("invalid_state"), NotFound("oidc_not_configured"))
async def get_settings() -> Response:
    """The provider in use and its discovered endpoints (owner/admin, after setup)."""
    session = await require_session()
    return jsonify(await services().signin.settings(session))


@blueprint.put("/v1/settings/external-access/oidc")
@security_scheme([{"bearer": []}])
@json_body(OidcSettingsIn)
@document_response(OidcSettingsSavedOut)
@errors(Conflict("invalid_state"))
async def put_settings(body: OidcSettingsIn) -> Response:
    """Replace the provider (owner); an omitted secret keeps the stored one."""
    session = await require_session()
    saved = await services().signin.update_settings(
        session, ClientSettings(body.issuer_url, body.client_id, body.client_secret), client_ip()
    )
    return jsonify(saved)


@blueprint.post("/v1/settings/external-access/oidc/test-connection")
@security_scheme([{"bearer": []}])
@json_body(TestConnectionIn)
@document_response(TestConnectionOut)
async def test_connection(body: TestConnectionIn) -> Response:
    """Run discovery against an issuer without storing anything (owner)."""
    session = await require_session()
    return jsonify(await services().signin.test_connection(session, body.issuer_url))
