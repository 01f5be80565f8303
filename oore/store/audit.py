"""SQL for the audit log. Entries are written in batches (group commit) or inside a transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from oore.domain.audit import AUDIT_SORTS, AuditQuery
from oore.domain.users import User
from oore.store.database import Connection, Database

# The column each sort key of GET /v1/audit-logs orders by (each is named like its key).
ORDER_BY = {sort: sort for sort in AUDIT_SORTS}


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

    @classmethod
    def by(
        cls,
        actor: User | None,
        action: str,
        resource_type: str,
        resource_id: str | None,
        *,
        created_at: int,
        details: dict[str, Any] | None = None,
        client_ip: str | None = None,
    ) -> AuditEntry:
        """An entry recording that ``actor`` (None: the system or an anonymous caller) did
        ``action`` to a resource."""
        return cls(
            actor.id if actor else None,
            actor.email if actor else None,
            action,
            resource_type,
            resource_id,
            details,
            client_ip,
            created_at,
        )


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


@dataclass(frozen=True)
class AuditRecord:
    """A stored entry as the audit-log API shows it."""

    id: int
    entry: AuditEntry

    def to_json(self) -> dict[str, Any]:
        """``details`` is JSON text (or null); every key is always present."""
        e = self.entry
        return {
            "id": self.id,
            "actor_id": e.actor_id,
            "actor_email": e.actor_email,
            "action": e.action,
            "resource_type": e.resource_type,
            "resource_id": e.resource_id,
            "details": None
            if e.details is None
            else json.dumps(e.details, separators=(",", ":"), sort_keys=True),
            "client_ip": e.client_ip,
            "created_at": e.created_at,
        }


def _entry(r: Any) -> AuditEntry:
    return AuditEntry(
        str(r["actor_id"]) if r["actor_id"] else None,
        r["actor_email"],
        r["action"],
        r["resource_type"],
        r["resource_id"],
        r["details"],
        r["client_ip"],
        r["created_at"],
    )


async def _query(conn: Connection, query: AuditQuery) -> tuple[list[AuditRecord], int]:
    conditions: list[str] = []
    args: list[Any] = []
    for clause, value in (
        ("actor_id = ${}", query.actor_id),
        ("action = ${}", query.action),
        ("resource_type = ${}", query.resource_type),
        ("created_at >= ${}", query.from_ts),
        ("created_at <= ${}", query.to_ts),
    ):
        if value is not None:
            args.append(value)
            conditions.append(clause.format(len(args)))
    where = " AND ".join(conditions) or "true"
    direction = "DESC" if query.descending else "ASC"
    n = len(args)
    rows = await conn.fetch(
        f"""SELECT * FROM audit_log WHERE {where}
            ORDER BY {ORDER_BY[query.sort]} {direction} NULLS LAST, id {direction}
            LIMIT ${n + 1} OFFSET ${n + 2}""",
        *args,
        query.limit,
        query.offset,
    )
    total = await conn.fetchval(f"SELECT count(*) FROM audit_log WHERE {where}", *args)
    return [AuditRecord(r["id"], _entry(r)) for r in rows], total


async def _recent(conn: Connection, limit: int) -> list[AuditEntry]:
    rows = await conn.fetch(
        """SELECT actor_id, actor_email, action, resource_type, resource_id, details, client_ip,
                  created_at FROM audit_log ORDER BY id DESC LIMIT $1""",
        limit,
    )
    return [_entry(r) for r in rows]


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

    async def query(self, query: AuditQuery) -> tuple[list[AuditRecord], int]:
        """One page of entries matching the filters, and how many match in all."""
        return await self._db.run(_query, query)
