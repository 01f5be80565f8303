"""Auth API (local login, logout) and ``/v1/users/me``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from pydantic import BaseModel
from quart import Blueprint, Response, jsonify
from quart_schema import document_response, security_scheme

from oore.errors import ApiError, Forbidden, TooManyRequests, Unauthorized
from oore.eventlog import event
from oore.http.body import Body, json_body
from oore.http.context import (
    client_ip,
    cookie_session,
    require_session,
    require_user_session,
    services,
)
from oore.http.cookies import signed_in, signed_out
from oore.http.errors import error_response
from oore.http.openapi import errors
from oore.services.identity import LoginResult

blueprint = Blueprint("auth", __name__)
log = logging.getLogger("oore.auth")


async def signing_in(method: str, attempt: Awaitable[LoginResult]) -> LoginResult:
    """``attempt``, logged as ``auth.signed_in`` or ``auth.signin_failed`` (who, from where,
    why it failed: never a credential)."""
    try:
        result = await attempt
    except ApiError as exc:
        event(
            log,
            "auth.signin_failed",
            level=logging.WARNING,
            method=method,
            status=exc.status,
            code=exc.code,
            client_ip=client_ip(),
        )
        raise
    user = result.user
    event(
        log,
        "auth.signed_in",
        method=method,
        user_id=user.id,
        email=user.email,
        role=user.role.value,
        client_ip=client_ip(),
    )
    return result


class LocalLoginIn(Body):
    email: str | None = None
    recovery_capability: str | None = None


class LoginUserOut(BaseModel):
    email: str
    oidc_subject: str
    user_id: str | None = None
    role: str | None = None
    avatar_url: str | None = None


class LoginOut(BaseModel):
    session_token: str | None = None  # omitted when the session went into the cookie
    expires_at: int
    user: LoginUserOut


class OkOut(BaseModel):
    ok: bool


class UserOut(BaseModel):
    id: str
    email: str
    display_name: str | None = None
    role: str
    status: str
    avatar_url: str | None = None
    created_at: int
    updated_at: int


class MeOut(BaseModel):
    user: UserOut


@blueprint.post("/v1/auth/local/login")
@json_body(LocalLoginIn, optional=True)
@document_response(LoginOut)
@errors(
    Forbidden("mode_restricted"),
    Forbidden("user_not_found"),
    TooManyRequests("local_login_rate_limited"),
)
async def local_login(body: LocalLoginIn) -> Response:
    """Sign in from this machine; on a fresh local instance this finishes setup as owner.
    With ``X-Oore-Session: cookie`` the session is set as the HttpOnly ``oore_session``
    cookie and ``session_token`` is left out."""
    result = await signing_in(
        "local",
        services().identity.local_login(
            email=body.email, recovery_capability=body.recovery_capability, client_ip=client_ip()
        ),
    )
    return signed_in(result)


@blueprint.post("/v1/auth/logout")
@security_scheme([{"bearer": []}])
@document_response(OkOut)
async def logout() -> Response:
    """End the caller's session (user sessions only: an API token is 401) and clear the
    session cookie."""
    try:
        session = await require_user_session()
    except Unauthorized as error:
        if cookie_session() is None:
            raise
        return signed_out(error_response(error))  # a stale cookie goes all the same
    await services().identity.logout(session, client_ip())
    return signed_out(jsonify({"ok": True}))


@blueprint.get("/v1/users/me")
@security_scheme([{"bearer": []}])
@document_response(MeOut)
async def me() -> Response:
    """The signed-in user (with an API token: the token's effective role)."""
    session = await require_session()
    return jsonify({"user": session.user.to_json()})
