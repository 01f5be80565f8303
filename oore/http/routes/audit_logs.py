"""``GET /v1/audit-logs``: filtered, sorted pages of the audit log (contract §2.14)."""

from __future__ import annotations

import uuid

from pydantic import BaseModel
from quart import Blueprint, Response, jsonify
from quart_schema import document_response, security_scheme

from oore.domain.audit import AUDIT_SORTS, AuditQuery
from oore.errors import InvalidInput
from oore.http.context import require_session, services
from oore.http.query import (
    choice,
    direction,
    integer,
    page_params,
    query,
    query_choice,
    query_int,
    query_page,
    query_str,
    text,
)

blueprint = Blueprint("audit_logs", __name__)

AUDIT_DEFAULT = 50
AUDIT_MAX = 200
HEX = "[0-9a-fA-F]"
UUID = f"^ *{HEX}{{8}}-{HEX}{{4}}-{HEX}{{4}}-{HEX}{{4}}-{HEX}{{12}} *$"


class EntryOut(BaseModel):
    id: int
    actor_id: str | None
    actor_email: str | None
    action: str
    resource_type: str
    resource_id: str | None
    details: str | None
    client_ip: str | None
    created_at: int


class EntryListOut(BaseModel):
    entries: list[EntryOut]
    total: int


def _actor_id() -> uuid.UUID | None:
    value = query_str("actor_id")
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInput("invalid_input", "actor_id must be a UUID") from None


@blueprint.get("/v1/audit-logs")
@security_scheme([{"bearer": []}])
@document_response(EntryListOut)
@query(
    page_params(default=AUDIT_DEFAULT, maximum=AUDIT_MAX, strict=True),
    text("actor_id", "Only entries by this user (a UUID, else 400 invalid_input)", pattern=UUID),
    text("action", "Only entries of this action"),
    text("resource_type", "Only entries about this kind of resource"),
    integer("from_ts", "Only entries at or after this time (Unix seconds)"),
    integer("to_ts", "Only entries at or before this time (Unix seconds)"),
    choice("sort", AUDIT_SORTS, "Sort key (default created_at)"),
    direction(),
)
async def list_entries() -> Response:
    """Audit entries, newest first unless told; owner/admin only."""
    session = await require_session()
    services().audit_log.authorize(session)
    page = query_page(default=AUDIT_DEFAULT, maximum=AUDIT_MAX, strict=True)
    query = AuditQuery(
        actor_id=_actor_id(),
        action=query_str("action"),
        resource_type=query_str("resource_type"),
        from_ts=query_int("from_ts"),
        to_ts=query_int("to_ts"),
        sort=query_choice("sort") or "created_at",
        descending=query_choice("direction") != "asc",
        limit=AUDIT_DEFAULT if page.limit is None else page.limit,
        offset=page.offset,
    )
    entries, total = await services().audit_log.page(session, query)
    return jsonify({"entries": [entry.to_json() for entry in entries], "total": total})
