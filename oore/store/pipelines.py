"""SQL for pipelines."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from oore.domain.ids import new_id
from oore.domain.projects import Pipeline
from oore.errors import Conflict
from oore.store.database import Connection, Database
from oore.store.projects import ACTIVE_BUILD_STATUSES, Deletion, as_uuid, like_pattern


def pipeline_from_row(row: Any) -> Pipeline:
    return Pipeline(
        id=str(row["id"]),
        project_id=str(row["project_id"]),
        name=row["name"],
        config_path=row["config_path"],
        config_path_explicit=row["config_path_explicit"],
        execution_config=row["execution_config"],
        trigger_config=row["trigger_config"],
        concurrency=row["concurrency"],
        runner_labels=tuple(row["runner_labels"]),
        enabled=row["enabled"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


@dataclass(frozen=True)
class NewPipeline:
    """A validated pipeline to insert (enabled)."""

    project_id: str
    name: str
    config_path: str
    config_path_explicit: bool
    execution_config: dict[str, Any]
    trigger_config: dict[str, Any]
    concurrency: dict[str, Any]
    runner_labels: tuple[str, ...]
    now: int


@dataclass(frozen=True)
class PipelineChanges:
    """Validated columns to set; None leaves a column as it is."""

    name: str | None = None
    config_path: str | None = None
    config_path_explicit: bool | None = None
    execution_config: dict[str, Any] | None = None
    trigger_config: dict[str, Any] | None = None
    concurrency: dict[str, Any] | None = None
    runner_labels: tuple[str, ...] | None = None
    enabled: bool | None = None


_SORTS = {"created_at": "created_at", "name": "name"}


async def _get(conn: Connection, pipeline_id: uuid.UUID) -> Pipeline | None:
    row = await conn.fetchrow("SELECT * FROM pipelines WHERE id = $1", pipeline_id)
    return None if row is None else pipeline_from_row(row)


async def _create(conn: Connection, new: NewPipeline) -> Pipeline:
    row = await conn.fetchrow(
        """INSERT INTO pipelines (id, project_id, name, config_path, config_path_explicit,
               execution_config, trigger_config, concurrency, runner_labels, enabled,
               created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, true, $10, $10) RETURNING *""",
        new_id(),
        new.project_id,
        new.name,
        new.config_path,
        new.config_path_explicit,
        new.execution_config,
        new.trigger_config,
        new.concurrency,
        list(new.runner_labels),
        new.now,
    )
    return pipeline_from_row(row)


async def _page(
    conn: Connection,
    project_id: uuid.UUID,
    search: str | None,
    sort: str,
    descending: bool,
    limit: int | None,
    offset: int,
) -> tuple[list[Pipeline], int]:
    pattern = None if search is None else like_pattern(search)
    condition = "project_id = $1 AND ($2::text IS NULL OR name ILIKE $2)"
    total = await conn.fetchval(
        f"SELECT count(*) FROM pipelines WHERE {condition}", project_id, pattern
    )
    direction = "DESC" if descending else "ASC"
    rows = await conn.fetch(
        f"""SELECT * FROM pipelines WHERE {condition}
            ORDER BY {_SORTS[sort]} {direction}, id {direction} LIMIT $3 OFFSET $4""",
        project_id,
        pattern,
        limit,
        offset,
    )
    return [pipeline_from_row(row) for row in rows], total


async def _update(
    conn: Connection, pipeline_id: uuid.UUID, changes: PipelineChanges, now: int
) -> Pipeline | None:
    labels = None if changes.runner_labels is None else list(changes.runner_labels)
    row = await conn.fetchrow(
        """UPDATE pipelines SET name = COALESCE($2, name),
               config_path = COALESCE($3, config_path),
               config_path_explicit = COALESCE($4, config_path_explicit),
               execution_config = COALESCE($5::jsonb, execution_config),
               trigger_config = COALESCE($6::jsonb, trigger_config),
               concurrency = COALESCE($7::jsonb, concurrency),
               runner_labels = COALESCE($8::text[], runner_labels),
               enabled = COALESCE($9, enabled), updated_at = $10
           WHERE id = $1 RETURNING *""",
        pipeline_id,
        changes.name,
        changes.config_path,
        changes.config_path_explicit,
        changes.execution_config,
        changes.trigger_config,
        changes.concurrency,
        labels,
        changes.enabled,
        now,
    )
    return None if row is None else pipeline_from_row(row)


async def _build_count(conn: Connection, pipeline_id: uuid.UUID) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM builds WHERE pipeline_id = $1", pipeline_id
    )
    return count


async def _delete(conn: Connection, pipeline_id: uuid.UUID) -> Deletion:
    # The row lock keeps new builds out (their foreign key needs a share lock on it).
    locked = await conn.fetchval("SELECT true FROM pipelines WHERE id = $1 FOR UPDATE", pipeline_id)
    if locked is None:
        return Deletion.NOT_FOUND
    active = await conn.fetchval(
        "SELECT count(*) FROM builds WHERE pipeline_id = $1 AND status = ANY($2::text[])",
        pipeline_id,
        ACTIVE_BUILD_STATUSES,
    )
    if active:
        raise Conflict("active_builds", f"The pipeline has {active} unfinished build(s)")
    if await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM artifacts a JOIN builds b ON b.id = a.build_id
                          WHERE b.pipeline_id = $1)""",
        pipeline_id,
    ):
        return Deletion.ARTIFACTS_LEFT
    await conn.execute("DELETE FROM builds WHERE pipeline_id = $1", pipeline_id)
    await conn.execute("DELETE FROM pipelines WHERE id = $1", pipeline_id)
    return Deletion.DELETED


class PipelineStore:
    """Pipelines of projects."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, pipeline_id: str) -> Pipeline | None:
        """The pipeline, or None when unknown (or ``pipeline_id`` is not a UUID)."""
        key = as_uuid(pipeline_id)
        return None if key is None else await self._db.run(_get, key)

    async def create(self, new: NewPipeline) -> Pipeline:
        return await self._db.run(_create, new)

    async def page(
        self,
        project_id: str,
        *,
        search: str | None,
        sort: str,
        descending: bool,
        limit: int | None,
        offset: int,
    ) -> tuple[list[Pipeline], int]:
        """A page of the project's pipelines (``limit`` None = all) and how many match."""
        key = as_uuid(project_id)
        if key is None:
            return [], 0
        return await self._db.run(_page, key, search, sort, descending, limit, offset)

    async def update(self, pipeline_id: str, changes: PipelineChanges, now: int) -> Pipeline | None:
        key = as_uuid(pipeline_id)
        return None if key is None else await self._db.run(_update, key, changes, now)

    async def build_count(self, pipeline_id: str) -> int:
        key = as_uuid(pipeline_id)
        return 0 if key is None else await self._db.run(_build_count, key)

    async def delete(self, pipeline_id: str) -> Deletion:
        """Delete the pipeline and its builds; 409 ``active_builds`` if one is unfinished,
        nothing (``ARTIFACTS_LEFT``) while one of its builds still has an artifact."""
        key = as_uuid(pipeline_id)
        return Deletion.NOT_FOUND if key is None else await self._db.transaction(_delete, key)
