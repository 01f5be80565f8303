"""Setup API (contract §2.2) and the trusted-proxy sign-in that setup prepares (§7.6)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel
from quart import Blueprint, Response, jsonify, request
from quart_schema import document_response, security_scheme

from oore.domain.setup import RemoteAuthMode, RuntimeMode
from oore.errors import Conflict, Forbidden, Gone, ServiceUnavailable, TooManyRequests, Unauthorized
from oore.http.body import Body, json_body
from oore.http.context import client_ip, services
from oore.http.cookies import signed_in
from oore.http.openapi import errors
from oore.http.routes.auth import LoginOut, signing_in

blueprint = Blueprint("setup", __name__)


class SetupStatusOut(BaseModel):
    instance_id: str
    state: str
    runtime_mode: str
    remote_auth_mode: str
    setup_mode: bool
    is_configured: bool


class VerifyBootstrapIn(Body):
    token: str


class SetupSessionOut(BaseModel):
    session_token: str
    expires_at: int


@blueprint.get("/v1/public/setup-status")
@document_response(SetupStatusOut)
async def setup_status() -> Response:
    """Where first-run setup stands."""
    status = await services().identity.setup_status()
    return jsonify(status.to_json())


@blueprint.post("/v1/setup/bootstrap-token/verify")
@json_body(VerifyBootstrapIn)
@document_response(SetupSessionOut)
@errors(
    Unauthorized("no_bootstrap_token"),
    Unauthorized("invalid_token"),
    Gone("token_consumed"),
    Gone("token_expired"),
    TooManyRequests("too_many_attempts"),
    Conflict("already_configured"),
)
async def verify_bootstrap(body: VerifyBootstrapIn) -> Response:
    """Exchange the out-of-band bootstrap token for a 30-minute setup session."""
    issued = await services().identity.verify_bootstrap_token(body.token, client_ip())
    return jsonify({"session_token": issued.token, "expires_at": issued.expires_at})


class SetupPreferencesIn(Body):
    runtime_mode: Literal["local", "remote"]
    remote_auth_mode: Literal["oidc", "trusted_proxy"] | None = None


class SetupPreferencesOut(BaseModel):
    runtime_mode: str
    remote_auth_mode: str
    session_expires_at: int | None = None


class LocalOwnerIn(Body):
    email: str


class OwnerOut(BaseModel):
    state: str
    owner_email: str
    session_expires_at: int | None = None


class TrustedProxyConfigureIn(Body):
    user_email_header: str | None = None
    setup_owner_email: str | None = None
    trusted_proxy_cidrs: list[str] = []
    shared_secret: str | None = None


class TrustedProxyConfigureOut(BaseModel):
    state: str
    setup_owner_email: str | None = None
    has_shared_secret: bool
    configured_at: int
    session_expires_at: int | None = None


class CompleteOut(BaseModel):
    state: str
    instance_id: str


class SummaryOut(BaseModel):
    instance_id: str
    state: str
    issuer_url: str | None = None
    client_id: str | None = None
    has_client_secret: bool
    owner_email: str | None = None


def _authorization() -> str | None:
    return request.headers.get("Authorization")


def lower_headers() -> dict[str, str]:
    """The request headers by lower-cased name (first value of each)."""
    found: dict[str, str] = {}
    for name, value in request.headers.items():
        found.setdefault(name.lower(), value)
    return found


@blueprint.post("/v1/setup/preferences")
@security_scheme([{"bearer": []}])
@json_body(SetupPreferencesIn)
@document_response(SetupPreferencesOut)
@errors(Conflict("already_configured"), Conflict("invalid_state"))
async def setup_preferences(body: SetupPreferencesIn) -> Response:
    """Choose local or remote mode (and the remote sign-in method) before an owner exists."""
    result = await services().setup.choose_preferences(
        _authorization(),
        RuntimeMode(body.runtime_mode),
        None if body.remote_auth_mode is None else RemoteAuthMode(body.remote_auth_mode),
        client_ip(),
    )
    return jsonify(result)


@blueprint.post("/v1/setup/local-owner/create")
@security_scheme([{"bearer": []}])
@json_body(LocalOwnerIn)
@document_response(OwnerOut)
@errors(Conflict("already_configured"), Conflict("invalid_state"))
async def create_local_owner(body: LocalOwnerIn) -> Response:
    """Name the owner of a local-mode instance."""
    result = await services().setup.create_local_owner(_authorization(), body.email, client_ip())
    return jsonify(result)


@blueprint.post("/v1/setup/trusted-proxy/configure")
@security_scheme([{"bearer": []}])
@json_body(TrustedProxyConfigureIn)
@document_response(TrustedProxyConfigureOut)
@errors(Conflict("already_configured"), Conflict("invalid_state"))
async def configure_trusted_proxy(body: TrustedProxyConfigureIn) -> Response:
    """Describe the authenticating reverse proxy (remote + trusted_proxy mode)."""
    result = await services().setup.configure_trusted_proxy(
        _authorization(),
        user_email_header=body.user_email_header,
        setup_owner_email=body.setup_owner_email,
        trusted_proxy_cidrs=body.trusted_proxy_cidrs,
        shared_secret=body.shared_secret,
        client_ip=client_ip(),
    )
    return jsonify(result)


@blueprint.post("/v1/setup/owner/claim-trusted-proxy")
@security_scheme([{"bearer": []}])
@document_response(OwnerOut)
@errors(
    Conflict("already_configured"),
    Conflict("invalid_state"),
    Conflict("trusted_proxy_not_configured"),
    ServiceUnavailable("trusted_proxy_config_invalid"),
)
async def claim_trusted_proxy() -> Response:
    """The identity the trusted proxy vouches for becomes the owner."""
    result = await services().setup.claim_trusted_proxy(
        _authorization(), request.remote_addr, lower_headers(), client_ip()
    )
    return jsonify(result)


@blueprint.post("/v1/setup/complete")
@security_scheme([{"bearer": []}])
@document_response(CompleteOut)
@errors(
    Conflict("already_configured"),
    Conflict("invalid_state"),
    Conflict("remote_auth_not_configured"),
    Conflict("trusted_proxy_config_invalid"),
)
async def complete_setup() -> Response:
    """Finish setup: the owner becomes a user and the setup API closes for good."""
    result = await services().setup.complete(_authorization(), client_ip())
    return jsonify(result)


@blueprint.get("/v1/setup/summary")
@security_scheme([{"bearer": []}])
@document_response(SummaryOut)
async def setup_summary() -> Response:
    """What setup has recorded so far."""
    return jsonify(await services().setup.summary(_authorization()))


@blueprint.post("/v1/auth/trusted-proxy/login")
@document_response(LoginOut)
@errors(
    Unauthorized("trusted_proxy_shared_secret_missing"),
    Unauthorized("trusted_proxy_shared_secret_invalid"),
    Unauthorized("trusted_proxy_identity_missing"),
    Unauthorized("trusted_proxy_identity_invalid"),
    Forbidden("trusted_proxy_peer_not_allowed"),
    Forbidden("trusted_proxy_owner_email_mismatch"),
    Forbidden("mode_restricted"),
    Forbidden("user_not_found"),
    Conflict("setup_incomplete"),
    Conflict("trusted_proxy_not_configured"),
    ServiceUnavailable("trusted_proxy_config_invalid"),
)
async def trusted_proxy_login() -> Response:
    """Sign in as the user the trusted proxy vouches for (remote + trusted_proxy mode);
    as the ``oore_session`` cookie with ``X-Oore-Session: cookie``."""
    result = await signing_in(
        "trusted_proxy",
        services().setup.trusted_proxy_login(request.remote_addr, lower_headers(), client_ip()),
    )
    return signed_in(result)
