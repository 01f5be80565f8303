"""Users API: list, invite, role changes, disable and re-enable (contract §2.4).

``GET /v1/users/me`` lives with the auth routes.
"""

from __future__ import annotations

from pydantic import BaseModel
from quart import Blueprint, Response, jsonify
from quart_schema import document_response, security_scheme

from oore.domain.users import USER_SORTS
from oore.errors import Conflict, NotFound
from oore.http.body import Body, json_body
from oore.http.context import client_ip, require_session, services
from oore.http.openapi import errors
from oore.http.query import integer, query, query_int, query_str, text
from oore.http.routes.auth import OkOut, UserOut
from oore.services.users import LIST_DEFAULT, LIST_MAX, UserQuery

blueprint = Blueprint("users", __name__)


class UserEnvelopeOut(BaseModel):
    user: UserOut


class UserListOut(BaseModel):
    users: list[UserOut]
    total: int


class InviteIn(Body):
    email: str
    role: str


class RoleIn(Body):
    role: str


@blueprint.get("/v1/users")
@security_scheme([{"bearer": []}])
@document_response(UserListOut)
@query(
    text("q", "Only users whose email, name, role or status contains this"),
    text("sort", f"Sort key: {', '.join(USER_SORTS)} (anything else: created_at)"),
    text("direction", "asc, or anything else for descending"),
    integer("limit", f"At most this many (default {LIST_DEFAULT}, counted within 1..{LIST_MAX})"),
    integer("offset", "Skip this many (default 0; negative counts as 0)"),
)
async def list_users() -> Response:
    """Users, filtered by ``q`` (email, name, role or status) and sorted."""
    session = await require_session()
    sort = query_str("sort")
    limit = query_int("limit")
    users, total = await services().users.page(
        session,
        UserQuery(
            q=query_str("q"),
            sort=sort if sort in USER_SORTS else "created_at",
            descending=query_str("direction") != "asc",
            limit=LIST_DEFAULT if limit is None else max(1, min(limit, LIST_MAX)),
            offset=max(0, query_int("offset") or 0),
        ),
    )
    return jsonify({"users": [user.to_json() for user in users], "total": total})


@blueprint.post("/v1/users/invite")
@security_scheme([{"bearer": []}])
@json_body(InviteIn)
@document_response(UserEnvelopeOut, 201)
@errors(Conflict("email_exists"))
async def invite(body: InviteIn) -> tuple[Response, int]:
    """Invite someone by email; they become active at their first sign-in."""
    session = await require_session()
    user = await services().users.invite(
        session, email=body.email, role=body.role, client_ip=client_ip()
    )
    shown = user.to_json()
    shown.pop("display_name", None)  # stored as the email, not shown at invitation
    return jsonify({"user": shown}), 201


@blueprint.patch("/v1/users/<user_id>/role")
@security_scheme([{"bearer": []}])
@json_body(RoleIn)
@document_response(UserEnvelopeOut)
@errors(NotFound("user_not_found"))
async def change_role(user_id: str, body: RoleIn) -> Response:
    """Give a user another instance role (admin only by the owner; never the owner's)."""
    session = await require_session()
    user = await services().users.change_role(
        session, user_id, role=body.role, client_ip=client_ip()
    )
    return jsonify({"user": user.to_json()})


@blueprint.delete("/v1/users/<user_id>")
@security_scheme([{"bearer": []}])
@document_response(OkOut)
@errors(NotFound("user_not_found"))
async def disable(user_id: str) -> Response:
    """Disable a user: their sessions end and their API tokens are revoked for good."""
    session = await require_session()
    await services().users.disable(session, user_id, client_ip=client_ip())
    return jsonify({"ok": True})


@blueprint.post("/v1/users/<user_id>/enable")
@security_scheme([{"bearer": []}])
@document_response(UserEnvelopeOut)
@errors(NotFound("user_not_found"), Conflict("not_disabled"))
async def enable(user_id: str) -> Response:
    """Re-enable a disabled user (their old tokens and sessions stay revoked)."""
    session = await require_session()
    user = await services().users.enable(session, user_id, client_ip=client_ip())
    return jsonify({"user": user.to_json()})
