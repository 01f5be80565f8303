"""SQL for project and pipeline variables; values arrive and leave encrypted."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from oore.domain.ids import new_id
from oore.errors import Conflict
from oore.store.database import Connection, Database
from oore.store.projects import as_uuid

_NO_PIPELINE = uuid.UUID(int=0)


@dataclass(frozen=True)
class StoredVariable:
    id: str
    project_id: str
    pipeline_id: str | None
    name: str
    value_encrypted: str
    secret: bool
    created_at: int
    updated_at: int


def variable_from_row(row: Any) -> StoredVariable:
    """A stored variable from its row (or the same fields as a JSON object)."""
    pipeline = row["pipeline_id"]
    return StoredVariable(
        id=str(row["id"]),
        project_id=str(row["project_id"]),
        pipeline_id=None if pipeline is None else str(pipeline),
        name=row["name"],
        value_encrypted=row["value_encrypted"],
        secret=row["secret"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def _list(
    conn: Connection, project_id: uuid.UUID, pipeline_id: uuid.UUID | None
) -> list[StoredVariable]:
    rows = await conn.fetch(
        """SELECT * FROM variables
           WHERE project_id = $1 AND COALESCE(pipeline_id, $3) = COALESCE($2, $3)
           ORDER BY name""",
        project_id,
        pipeline_id,
        _NO_PIPELINE,
    )
    return [variable_from_row(row) for row in rows]


async def _for_build(
    conn: Connection, project_id: uuid.UUID, pipeline_id: uuid.UUID
) -> list[StoredVariable]:
    rows = await conn.fetch(
        """SELECT * FROM variables
           WHERE project_id = $1 AND (pipeline_id IS NULL OR pipeline_id = $2)""",
        project_id,
        pipeline_id,
    )
    return [variable_from_row(row) for row in rows]


async def _put(
    conn: Connection,
    project_id: uuid.UUID,
    pipeline_id: uuid.UUID | None,
    name: str,
    value_encrypted: str,
    secret: bool,
    now: int,
    limit: int,
) -> tuple[StoredVariable, bool]:
    # One writer per project at a time, so the count bound holds under concurrent writes.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1::text))", str(project_id))
    row = await conn.fetchrow(
        """UPDATE variables SET value_encrypted = $4, secret = $5, updated_at = $6
           WHERE project_id = $1 AND COALESCE(pipeline_id, $7) = COALESCE($2, $7)
             AND name = $3
           RETURNING *""",
        project_id,
        pipeline_id,
        name,
        value_encrypted,
        secret,
        now,
        _NO_PIPELINE,
    )
    if row is not None:
        return variable_from_row(row), False
    count = await conn.fetchval(
        """SELECT count(*) FROM variables
           WHERE project_id = $1 AND COALESCE(pipeline_id, $3) = COALESCE($2, $3)""",
        project_id,
        pipeline_id,
        _NO_PIPELINE,
    )
    if count >= limit:
        raise Conflict("too_many_variables", f"At most {limit} variables per project or pipeline")
    row = await conn.fetchrow(
        """INSERT INTO variables (id, project_id, pipeline_id, name, value_encrypted, secret,
               created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING *""",
        new_id(),
        project_id,
        pipeline_id,
        name,
        value_encrypted,
        secret,
        now,
    )
    return variable_from_row(row), True


async def _delete(
    conn: Connection, project_id: uuid.UUID, pipeline_id: uuid.UUID | None, name: str
) -> StoredVariable | None:
    row = await conn.fetchrow(
        """DELETE FROM variables
           WHERE project_id = $1 AND COALESCE(pipeline_id, $4) = COALESCE($2, $4)
             AND name = $3
           RETURNING *""",
        project_id,
        pipeline_id,
        name,
        _NO_PIPELINE,
    )
    return None if row is None else variable_from_row(row)


def _keys(project_id: str, pipeline_id: str | None) -> tuple[uuid.UUID, uuid.UUID | None] | None:
    project = as_uuid(project_id)
    pipeline = None if pipeline_id is None else as_uuid(pipeline_id)
    if project is None or (pipeline_id is not None and pipeline is None):
        return None
    return project, pipeline


class VariableStore:
    """Variables of a project (``pipeline_id`` None) or of one of its pipelines."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def in_scope(self, project_id: str, pipeline_id: str | None) -> list[StoredVariable]:
        keys = _keys(project_id, pipeline_id)
        return [] if keys is None else await self._db.run(_list, *keys)

    async def for_build(self, project_id: str, pipeline_id: str) -> list[StoredVariable]:
        """The project's variables and the pipeline's, in one read."""
        keys = _keys(project_id, pipeline_id)
        if keys is None or keys[1] is None:
            return []
        return await self._db.run(_for_build, keys[0], keys[1])

    async def put(
        self,
        project_id: str,
        pipeline_id: str | None,
        name: str,
        value_encrypted: str,
        secret: bool,
        now: int,
        limit: int,
    ) -> tuple[StoredVariable, bool]:
        """Create or replace; True when created. 409 ``too_many_variables`` past ``limit``."""
        keys = _keys(project_id, pipeline_id)
        assert keys is not None, "callers pass ids they read from the store"
        return await self._db.transaction(
            _put, keys[0], keys[1], name, value_encrypted, secret, now, limit
        )

    async def delete(
        self, project_id: str, pipeline_id: str | None, name: str
    ) -> StoredVariable | None:
        keys = _keys(project_id, pipeline_id)
        return None if keys is None else await self._db.run(_delete, *keys, name)
