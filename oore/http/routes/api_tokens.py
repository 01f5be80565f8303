"""Personal API tokens: ``GET|POST /v1/api-tokens``, ``DELETE /v1/api-tokens/{id}``."""

from __future__ import annotations

from pydantic import BaseModel
from quart import Blueprint, Response, jsonify
from quart_schema import document_response, security_scheme

from oore.domain.api_tokens import LIST_DEFAULT, LIST_MAX
from oore.http.body import Body, json_body
from oore.http.context import client_ip, require_session, services
from oore.http.query import choice, integer, query, query_int, query_str, text
from oore.services.api_tokens import TokenScope

blueprint = Blueprint("api_tokens", __name__)


class CreateIn(Body):
    name: str
    role: str
    expires_at: int | None = None


class CreatedOut(BaseModel):
    id: str
    name: str
    prefix: str
    role: str
    created_at: int
    expires_at: int | None
    token: str


class TokenOut(BaseModel):
    id: str
    user_id: str
    name: str
    prefix: str
    role: str
    created_at: int
    expires_at: int | None
    last_used_at: int | None


class TokenListOut(BaseModel):
    tokens: list[TokenOut]
    total: int


class RevokedOut(BaseModel):
    revoked: bool


@blueprint.post("/v1/api-tokens")
@security_scheme([{"bearer": []}])
@json_body(CreateIn)
@document_response(CreatedOut)
async def create(body: CreateIn) -> Response:
    """A new token for the caller; its text is in this answer only."""
    session = await require_session()
    created = await services().api_tokens.create(
        session,
        name=body.name,
        role=body.role,
        expires_at=body.expires_at,
        client_ip=client_ip(),
    )
    return jsonify(created.to_json())


@blueprint.get("/v1/api-tokens")
@security_scheme([{"bearer": []}])
@document_response(TokenListOut)
@query(
    text("user_id", "Owner/admin: this user's tokens"),
    choice("all", ("true", "false"), "Owner/admin: true lists everyone's tokens"),
    integer("limit", f"At most this many (default {LIST_DEFAULT}, counted within 1..{LIST_MAX})"),
    integer("offset", "Skip this many (default 0; negative counts as 0)"),
)
async def list_tokens() -> Response:
    """The caller's unrevoked tokens; owner/admin may ask for ``user_id=`` or ``all=true``."""
    session = await require_session()
    limit = query_int("limit")
    tokens, total = await services().api_tokens.page(
        session,
        TokenScope(user_id=query_str("user_id"), everyone=query_str("all") == "true"),
        limit=LIST_DEFAULT if limit is None else max(1, min(limit, LIST_MAX)),
        offset=max(0, query_int("offset") or 0),
    )
    return jsonify({"tokens": [token.to_json() for token in tokens], "total": total})


@blueprint.delete("/v1/api-tokens/<token_id>")
@security_scheme([{"bearer": []}])
@document_response(RevokedOut)
async def revoke(token_id: str) -> Response:
    """Revoke a token for good."""
    session = await require_session()
    await services().api_tokens.revoke(session, token_id, client_ip=client_ip())
    return jsonify({"revoked": True})
