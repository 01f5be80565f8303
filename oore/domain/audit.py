"""The audit log's read side: the filters and order of a page (``GET /v1/audit-logs``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

# Sort keys of GET /v1/audit-logs.
AUDIT_SORTS = ("created_at", "actor_email", "action", "resource_type")


@dataclass(frozen=True)
class AuditQuery:
    """Filters and order of an audit-log page; ``sort`` is one of :data:`AUDIT_SORTS`."""

    actor_id: uuid.UUID | None = None
    action: str | None = None
    resource_type: str | None = None
    from_ts: int | None = None
    to_ts: int | None = None
    sort: str = "created_at"
    descending: bool = True
    limit: int = 50
    offset: int = 0
