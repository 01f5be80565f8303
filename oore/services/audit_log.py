"""Reading the audit log (``GET /v1/audit-logs``, contract §2.14)."""

from __future__ import annotations

from oore.domain.audit import AuditQuery
from oore.domain.rbac import Action, Resource, require
from oore.domain.users import Session
from oore.store import Store
from oore.store.audit import AuditRecord


class AuditLog:
    """Owner/admin read the entries every service appends through the audit sink."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def authorize(self, session: Session) -> None:
        """403 ``permission_denied`` unless ``audit_logs:read`` (checked before the query)."""
        require(session.user.role, Resource.AUDIT_LOGS, Action.READ)

    async def page(self, session: Session, query: AuditQuery) -> tuple[list[AuditRecord], int]:
        self.authorize(session)
        return await self._store.audit.query(query)
