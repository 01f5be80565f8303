"""SQL for retention: the settings rows, the last cleanup run, and the cleanup's batches.

Every cleanup query works out each project's policy in SQL (the instance's values,
passed as ``$1``..``$5``, replaced by the keys of the project's override) and touches
only builds in a terminal status.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from oore.domain.artifacts import Artifact
from oore.domain.builds import TERMINAL, BuildStatus
from oore.domain.retention import (
    CleanupReport,
    Policy,
    ProjectOverride,
    RetentionSettings,
    Target,
)
from oore.store.artifacts import _COLUMNS, _artifact
from oore.store.database import Connection, Database
from oore.store.projects import as_uuid

_TERMINAL = sorted(status.value for status in TERMINAL)


def _override_key(name: str, param: int, cast: str) -> str:
    return (
        f"CASE WHEN r.settings ? '{name}' THEN (r.settings->>'{name}')::{cast}"
        f" ELSE ${param}::{cast} END AS {name}"
    )


# Each project's policy; $1..$5 are the instance's numbers and target.
_POLICY = f"""policy AS (
    SELECT p.id AS project_id,
        {_override_key("artifact_retention_days", 1, "int")},
        {_override_key("log_retention_days", 2, "int")},
        {_override_key("build_retention_days", 3, "int")},
        {_override_key("keep_last_builds", 4, "int")},
        {_override_key("target", 5, "text")}
    FROM projects p LEFT JOIN project_retention r ON r.project_id = p.id)"""

# Ended builds past their project's build limits ($6: now, $7: the terminal statuses).
_PAST = """past AS (
    SELECT ranked.id, ranked.seq, ranked.status, policy.target
    FROM (SELECT b.id, b.seq, b.status, b.project_id,
                 COALESCE(b.finished_at, b.updated_at) AS ended_at,
                 row_number() OVER (PARTITION BY b.project_id ORDER BY b.seq DESC) AS rank
          FROM builds b) ranked
    JOIN policy ON policy.project_id = ranked.project_id
    WHERE ranked.status = ANY($7::text[])
      AND ((policy.build_retention_days IS NOT NULL
            AND ranked.ended_at <= $6 - policy.build_retention_days::bigint * 86400)
        OR (policy.keep_last_builds IS NOT NULL AND ranked.rank > policy.keep_last_builds)))"""


def _policy_args(policy: Policy) -> list[Any]:
    return [
        policy.artifact_retention_days,
        policy.log_retention_days,
        policy.build_retention_days,
        policy.keep_last_builds,
        policy.target.value,
    ]


def _settings_of(row: Any) -> RetentionSettings:
    return RetentionSettings(
        Policy(
            artifact_retention_days=row["artifact_retention_days"],
            log_retention_days=row["log_retention_days"],
            build_retention_days=row["build_retention_days"],
            keep_last_builds=row["keep_last_builds"],
            target=Target(row["target"]),
        ),
        cleanup_interval_secs=row["cleanup_interval_secs"],
        updated_at=row["updated_at"],
    )


async def _settings(conn: Connection) -> RetentionSettings | None:
    row = await conn.fetchrow("SELECT * FROM retention_settings")
    return None if row is None else _settings_of(row)


async def _save_settings(conn: Connection, s: RetentionSettings, now: int) -> RetentionSettings:
    p = s.policy
    row = await conn.fetchrow(
        """INSERT INTO retention_settings (artifact_retention_days, log_retention_days,
               build_retention_days, keep_last_builds, target, cleanup_interval_secs,
               updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (singleton) DO UPDATE SET
               artifact_retention_days = EXCLUDED.artifact_retention_days,
               log_retention_days = EXCLUDED.log_retention_days,
               build_retention_days = EXCLUDED.build_retention_days,
               keep_last_builds = EXCLUDED.keep_last_builds,
               target = EXCLUDED.target,
               cleanup_interval_secs = EXCLUDED.cleanup_interval_secs,
               updated_at = EXCLUDED.updated_at
           RETURNING *""",
        p.artifact_retention_days,
        p.log_retention_days,
        p.build_retention_days,
        p.keep_last_builds,
        p.target.value,
        s.cleanup_interval_secs,
        now,
    )
    return _settings_of(row)


async def _override(conn: Connection, project_id: uuid.UUID) -> ProjectOverride | None:
    row = await conn.fetchrow(
        "SELECT settings, updated_at FROM project_retention WHERE project_id = $1", project_id
    )
    return None if row is None else ProjectOverride(dict(row["settings"]), row["updated_at"])


async def _save_override(
    conn: Connection, project_id: uuid.UUID, fields: dict[str, Any], now: int
) -> ProjectOverride:
    await conn.execute(
        """INSERT INTO project_retention (project_id, settings, updated_at) VALUES ($1, $2, $3)
           ON CONFLICT (project_id) DO UPDATE SET settings = EXCLUDED.settings,
               updated_at = EXCLUDED.updated_at""",
        project_id,
        fields,
        now,
    )
    return ProjectOverride(fields, now)


async def _delete_override(conn: Connection, project_id: uuid.UUID) -> bool:
    status: str = await conn.execute(
        "DELETE FROM project_retention WHERE project_id = $1", project_id
    )
    return status.split()[-1] != "0"


@dataclass(frozen=True)
class StoredPolicy:
    """The saved rows that make one project's policy (None: nothing saved)."""

    settings: RetentionSettings | None
    override: ProjectOverride | None


async def _policy_rows(conn: Connection, project_id: uuid.UUID) -> StoredPolicy:
    return StoredPolicy(await _settings(conn), await _override(conn, project_id))


def _report_of(row: Any) -> CleanupReport:
    return CleanupReport(
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        duration_ms=row["duration_ms"],
        artifacts_deleted=row["artifacts_deleted"],
        bytes_freed=row["bytes_freed"],
        builds_expired=row["builds_expired"],
        builds_deleted=row["builds_deleted"],
        log_lines_deleted=row["log_lines_deleted"],
        errors=tuple(row["errors"]),
    )


async def _last_run(conn: Connection) -> CleanupReport | None:
    row = await conn.fetchrow("SELECT * FROM retention_runs")
    return None if row is None else _report_of(row)


async def _save_run(conn: Connection, r: CleanupReport) -> None:
    await conn.execute(
        """INSERT INTO retention_runs (started_at, finished_at, duration_ms, artifacts_deleted,
               bytes_freed, builds_expired, builds_deleted, log_lines_deleted, errors)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (singleton) DO UPDATE SET started_at = EXCLUDED.started_at,
               finished_at = EXCLUDED.finished_at, duration_ms = EXCLUDED.duration_ms,
               artifacts_deleted = EXCLUDED.artifacts_deleted,
               bytes_freed = EXCLUDED.bytes_freed, builds_expired = EXCLUDED.builds_expired,
               builds_deleted = EXCLUDED.builds_deleted,
               log_lines_deleted = EXCLUDED.log_lines_deleted, errors = EXCLUDED.errors""",
        r.started_at,
        r.finished_at,
        r.duration_ms,
        r.artifacts_deleted,
        r.bytes_freed,
        r.builds_expired,
        r.builds_deleted,
        r.log_lines_deleted,
        list(r.errors),
    )


async def _expiring_artifacts(
    conn: Connection, policy: Policy, now: int, skip: list[uuid.UUID], limit: int
) -> list[Artifact]:
    rows = await conn.fetch(
        f"""WITH {_POLICY}, {_PAST}
            SELECT {_COLUMNS} FROM artifacts a
            JOIN builds b ON b.id = a.build_id
            JOIN policy ON policy.project_id = b.project_id
            WHERE a.state = 'available' AND a.purged_at IS NULL
              AND b.status = ANY($7::text[]) AND a.id <> ALL($8::uuid[])
              AND (a.expires_at <= $6
                OR (policy.artifact_retention_days IS NOT NULL
                    AND a.created_at <= $6 - policy.artifact_retention_days::bigint * 86400)
                OR (policy.target = 'artifacts_only'
                    AND b.id IN (SELECT id FROM past)))
            ORDER BY a.seq LIMIT $9""",
        *_policy_args(policy),
        now,
        _TERMINAL,
        skip,
        limit,
    )
    return [_artifact(row) for row in rows]


@dataclass(frozen=True)
class Purged:
    """Artifacts whose rows this call marked purged, and their reported bytes."""

    count: int
    bytes: int


async def _mark_purged(conn: Connection, ids: list[uuid.UUID], now: int) -> Purged:
    row = await conn.fetchrow(
        """WITH marked AS (
               UPDATE artifacts SET purged_at = $2, updated_at = $2,
                   expires_at = LEAST(COALESCE(expires_at, $2), $2)
               WHERE id = ANY($1::uuid[]) AND purged_at IS NULL
               RETURNING COALESCE(file_size, 0) AS size)
           SELECT count(*) AS count, COALESCE(sum(size), 0)::bigint AS bytes FROM marked""",
        ids,
        now,
    )
    return Purged(int(row["count"]), int(row["bytes"]))


async def _builds_to_expire(
    conn: Connection, policy: Policy, now: int, skip: list[uuid.UUID], limit: int
) -> list[tuple[str, BuildStatus]]:
    rows = await conn.fetch(
        f"""WITH {_POLICY}, {_PAST}
            SELECT b.id, b.status FROM builds b
            JOIN policy ON policy.project_id = b.project_id
            WHERE b.status = ANY($7::text[]) AND b.status <> 'expired'
              AND policy.target = 'artifacts_only' AND b.id <> ALL($8::uuid[])
              AND NOT EXISTS (
                    SELECT 1 FROM artifacts a WHERE a.build_id = b.id
                      AND (a.state = 'pending' OR (a.state = 'available' AND a.purged_at IS NULL)))
              AND (EXISTS (SELECT 1 FROM artifacts a
                           WHERE a.build_id = b.id AND a.purged_at IS NOT NULL)
                OR b.id IN (SELECT id FROM past))
            ORDER BY b.seq LIMIT $9""",
        *_policy_args(policy),
        now,
        _TERMINAL,
        skip,
        limit,
    )
    return [(str(row["id"]), BuildStatus(row["status"])) for row in rows]


async def _remove_logs(conn: Connection, policy: Policy, now: int, limit: int) -> tuple[int, int]:
    row = await conn.fetchrow(
        f"""WITH {_POLICY},
            doomed AS (
                SELECT b.id FROM builds b JOIN policy ON policy.project_id = b.project_id
                WHERE b.status = ANY($7::text[]) AND b.logs_removed_at IS NULL
                  AND policy.log_retention_days IS NOT NULL
                  AND COALESCE(b.finished_at, b.updated_at)
                      <= $6 - policy.log_retention_days::bigint * 86400
                ORDER BY b.seq LIMIT $8 FOR UPDATE OF b SKIP LOCKED),
            marked AS (
                UPDATE builds SET logs_removed_at = $6
                WHERE id IN (SELECT id FROM doomed) RETURNING id),
            gone AS (
                DELETE FROM build_logs WHERE build_id IN (SELECT id FROM marked) RETURNING 1)
            SELECT (SELECT count(*) FROM marked) AS builds, (SELECT count(*) FROM gone) AS lines""",
        *_policy_args(policy),
        now,
        _TERMINAL,
        limit,
    )
    return int(row["builds"]), int(row["lines"])


async def _builds_to_delete(
    conn: Connection, policy: Policy, now: int, skip: list[uuid.UUID], limit: int
) -> list[str]:
    rows = await conn.fetch(
        f"""WITH {_POLICY}, {_PAST}
            SELECT id FROM past WHERE target = 'full' AND id <> ALL($8::uuid[])
            ORDER BY seq LIMIT $9""",
        *_policy_args(policy),
        now,
        _TERMINAL,
        skip,
        limit,
    )
    return [str(row["id"]) for row in rows]


async def _objects_of_builds(conn: Connection, build_ids: list[uuid.UUID]) -> list[Artifact]:
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM artifacts a JOIN builds b ON b.id = a.build_id
            WHERE a.build_id = ANY($1::uuid[]) AND a.purged_at IS NULL ORDER BY a.seq""",
        build_ids,
    )
    return [_artifact(row) for row in rows]


@dataclass(frozen=True)
class Deleted:
    builds: int
    log_lines: int
    artifacts: int
    bytes: int


async def _delete_builds(conn: Connection, build_ids: list[uuid.UUID]) -> Deleted:
    """Delete ended builds and everything of theirs; a build that is not ended is kept."""
    ids: list[uuid.UUID] = [
        row["id"]
        for row in await conn.fetch(
            """SELECT id FROM builds WHERE id = ANY($1::uuid[]) AND status = ANY($2::text[])
               FOR UPDATE""",
            build_ids,
            _TERMINAL,
        )
    ]
    if not ids:
        return Deleted(0, 0, 0, 0)
    lines: str = await conn.execute("DELETE FROM build_logs WHERE build_id = ANY($1::uuid[])", ids)
    artifacts = await conn.fetchrow(
        """SELECT count(*) AS count, COALESCE(sum(file_size), 0)::bigint AS bytes
           FROM artifacts WHERE build_id = ANY($1::uuid[]) AND state = 'available'
             AND purged_at IS NULL""",
        ids,
    )
    builds: str = await conn.execute("DELETE FROM builds WHERE id = ANY($1::uuid[])", ids)
    return Deleted(
        int(builds.split()[-1]),
        int(lines.split()[-1]),
        int(artifacts["count"]),
        int(artifacts["bytes"]),
    )


def _uuids(ids: Sequence[str]) -> list[uuid.UUID]:
    return [key for key in (as_uuid(i) for i in ids) if key is not None]


class RetentionStore:
    """Retention settings, the last cleanup run, and the cleanup's batches."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def settings(self) -> RetentionSettings | None:
        """The saved instance settings, or None while the defaults apply."""
        return await self._db.run(_settings)

    async def save_settings(self, settings: RetentionSettings, now: int) -> RetentionSettings:
        return await self._db.run(_save_settings, settings, now)

    async def override(self, project_id: str) -> ProjectOverride | None:
        key = as_uuid(project_id)
        return None if key is None else await self._db.run(_override, key)

    async def save_override(
        self, project_id: str, fields: dict[str, Any], now: int
    ) -> ProjectOverride:
        key = as_uuid(project_id)
        assert key is not None, "the caller found the project"
        return await self._db.run(_save_override, key, fields, now)

    async def delete_override(self, project_id: str) -> bool:
        """Remove the project's override; whether there was one."""
        key = as_uuid(project_id)
        return key is not None and await self._db.run(_delete_override, key)

    async def policy_rows(self, project_id: str) -> StoredPolicy:
        """The instance row and the project's override, read on one connection."""
        key = as_uuid(project_id)
        if key is None:
            return StoredPolicy(await self.settings(), None)
        return await self._db.run(_policy_rows, key)

    async def last_run(self) -> CleanupReport | None:
        return await self._db.run(_last_run)

    async def save_run(self, report: CleanupReport) -> None:
        await self._db.run(_save_run, report)

    async def expiring_artifacts(
        self, policy: Policy, now: int, *, skip: Sequence[str], limit: int
    ) -> list[Artifact]:
        """Available artifacts of ended builds whose object is due to go (past
        ``expires_at``, older than the artifact retention, or of a build past the build
        limits of an ``artifacts_only`` project), oldest first, not those in ``skip``."""
        return await self._db.run(_expiring_artifacts, policy, now, _uuids(skip), limit)

    async def mark_purged(self, artifact_ids: Sequence[str], now: int) -> Purged:
        """Mark these artifacts' objects deleted (their rows stay, expired); those this
        call marked (an overlapping run marks each once)."""
        keys = _uuids(artifact_ids)
        return Purged(0, 0) if not keys else await self._db.run(_mark_purged, keys, now)

    async def builds_to_expire(
        self, policy: Policy, now: int, *, skip: Sequence[str], limit: int
    ) -> list[tuple[str, BuildStatus]]:
        """Ended builds of ``artifacts_only`` projects with no artifact left that retention
        removed artifacts of, or that are past the build limits."""
        return await self._db.run(_builds_to_expire, policy, now, _uuids(skip), limit)

    async def remove_logs(self, policy: Policy, now: int, *, limit: int) -> tuple[int, int]:
        """Delete the log lines of up to ``limit`` ended builds past their log retention;
        (builds, lines)."""
        return await self._db.transaction(_remove_logs, policy, now, limit)

    async def builds_to_delete(
        self, policy: Policy, now: int, *, skip: Sequence[str], limit: int
    ) -> list[str]:
        """Ended builds of ``full`` projects past the build limits, oldest first."""
        return await self._db.run(_builds_to_delete, policy, now, _uuids(skip), limit)

    async def objects_of_builds(self, build_ids: Sequence[str]) -> list[Artifact]:
        """The artifacts of these builds whose object may still exist."""
        keys = _uuids(build_ids)
        return [] if not keys else await self._db.run(_objects_of_builds, keys)

    async def delete_builds(self, build_ids: Sequence[str]) -> Deleted:
        """Delete these builds (if ended) with their logs, events and artifact rows."""
        keys = _uuids(build_ids)
        return Deleted(0, 0, 0, 0) if not keys else await self._db.transaction(_delete_builds, keys)
