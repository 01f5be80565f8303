"""SQL for the audit log. Entries are written in batches (group commit) or inside a transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oore.store.database import Connection, Database


@dataclass(frozen=True)
class AuditEntry:
    actor_id: str | None
    actor_email: str | None
    action: str
    resource_type: str
    resource_id: str | None
    details: dict[str, Any] | None
    client_ip: str | None
    created_at: int


async def insert_audit(conn: Connection, entries: list[AuditEntry]) -> None:
    """Insert entries on a connection the caller holds (inside its transaction)."""
    await conn.executemany(
        """INSERT INTO audit_log (actor_id, actor_email, action, resource_type, resource_id,
                                  details, client_ip, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        [
            (
                e.actor_id,
                e.actor_email,
                e.action,
                e.resource_type,
                e.resource_id,
                e.details,
                e.client_ip,
                e.created_at,
            )
            for e in entries
        ],
    )


async def _recent(conn: Connection, limit: int) -> list[AuditEntry]:
    rows = await conn.fetch(
        """SELECT actor_id, actor_email, action, resource_type, resource_id, details, client_ip,
                  created_at FROM audit_log ORDER BY id DESC LIMIT $1""",
        limit,
    )
    return [
        AuditEntry(
            str(r["actor_id"]) if r["actor_id"] else None,
            r["actor_email"],
            r["action"],
            r["resource_type"],
            r["resource_id"],
            r["details"],
            r["client_ip"],
            r["created_at"],
        )
        for r in rows
    ]


class AuditStore:
    """The append-only audit log."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(self, entries: list[AuditEntry]) -> None:
        """Commit a batch of entries in one transaction (the group-commit target)."""
        if entries:
            await self._db.transaction(insert_audit, entries)

    async def recent(self, limit: int = 50) -> list[AuditEntry]:
        return await self._db.run(_recent, limit)
