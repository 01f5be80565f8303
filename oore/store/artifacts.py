"""SQL for build artifacts and the artifact storage settings row."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from oore.domain.artifact_storage import StorageProvider, StoredStorageSettings
from oore.domain.artifacts import Artifact, ArtifactState, ArtifactType
from oore.store.database import Connection, Database
from oore.store.projects import as_uuid

_COLUMNS = """a.id, a.build_id, b.project_id, a.name, a.artifact_type, a.file_path,
    a.file_size, a.checksum, a.metadata, a.state, a.error_message, a.expires_at,
    a.created_at"""
_FROM = "artifacts a JOIN builds b ON b.id = a.build_id"


def _artifact(row: Any) -> Artifact:
    return Artifact(
        id=str(row["id"]),
        build_id=str(row["build_id"]),
        project_id=str(row["project_id"]),
        name=row["name"],
        artifact_type=ArtifactType(row["artifact_type"]),
        file_path=row["file_path"],
        file_size=row["file_size"],
        checksum=row["checksum"],
        metadata=row["metadata"],
        created_at=row["created_at"],
        state=ArtifactState(row["state"]),
        expires_at=row["expires_at"],
        error_message=row["error_message"],
    )


@dataclass(frozen=True)
class NewArtifact:
    id: str
    build_id: str
    name: str
    artifact_type: ArtifactType
    file_path: str
    file_size: int | None
    checksum: str | None
    metadata: Any
    expires_at: int | None
    now: int


async def _get(conn: Connection, artifact_id: uuid.UUID) -> Artifact | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM {_FROM} WHERE a.id = $1", artifact_id)
    return None if row is None else _artifact(row)


async def _available_with_checksum(
    conn: Connection, build_id: uuid.UUID, checksum: str
) -> Artifact | None:
    row = await conn.fetchrow(
        f"""SELECT {_COLUMNS} FROM {_FROM}
            WHERE a.build_id = $1 AND a.checksum = $2 AND a.state = 'available'
            ORDER BY a.seq LIMIT 1""",
        build_id,
        checksum,
    )
    return None if row is None else _artifact(row)


async def _insert(conn: Connection, new: NewArtifact) -> Artifact | None:
    row = await conn.fetchrow(
        f"""WITH inserted AS (
                INSERT INTO artifacts (id, build_id, name, artifact_type, file_path, file_size,
                                       checksum, metadata, state, expires_at, created_at,
                                       updated_at)
                SELECT $1, b.id, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $10
                FROM builds b WHERE b.id = $2
                RETURNING *)
            SELECT {_COLUMNS} FROM inserted a JOIN builds b ON b.id = a.build_id""",
        uuid.UUID(new.id),
        uuid.UUID(new.build_id),
        new.name,
        new.artifact_type.value,
        new.file_path,
        new.file_size,
        new.checksum,
        new.metadata,
        new.expires_at,
        new.now,
    )
    return None if row is None else _artifact(row)


async def _finish(
    conn: Connection,
    artifact_id: uuid.UUID,
    build_id: uuid.UUID,
    runner_id: uuid.UUID,
    state: str,
    error_message: str | None,
    now: int,
) -> Artifact | None:
    row = await conn.fetchrow(
        f"""WITH finished AS (
                UPDATE artifacts a SET state = $4, error_message = $5, updated_at = $6
                FROM builds b
                WHERE a.id = $1 AND a.build_id = $2 AND a.state = 'pending'
                  AND b.id = a.build_id AND b.runner_id = $3
                RETURNING a.*)
            SELECT {_COLUMNS} FROM finished a JOIN builds b ON b.id = a.build_id""",
        artifact_id,
        build_id,
        runner_id,
        state,
        error_message,
        now,
    )
    return None if row is None else _artifact(row)


async def _for_build(conn: Connection, build_id: uuid.UUID) -> list[Artifact]:
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM {_FROM}
            WHERE a.build_id = $1 AND a.state = 'available' ORDER BY a.seq""",
        build_id,
    )
    return [_artifact(row) for row in rows]


async def _for_project(conn: Connection, project_id: uuid.UUID, limit: int) -> list[Artifact]:
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM {_FROM}
            WHERE b.project_id = $1 AND a.state = 'available'
            ORDER BY a.created_at DESC, a.seq DESC LIMIT $2""",
        project_id,
        limit,
    )
    return [_artifact(row) for row in rows]


async def _of_builds(
    conn: Connection, build_ids: list[uuid.UUID], member_of: str | None
) -> list[Artifact]:
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM {_FROM}
            WHERE a.build_id = ANY($1::uuid[]) AND a.state = 'available'
              AND ($2::uuid IS NULL OR EXISTS (
                    SELECT 1 FROM project_members m
                    WHERE m.project_id = b.project_id AND m.user_id = $2))
            ORDER BY a.created_at DESC, a.seq DESC""",
        build_ids,
        member_of,
    )
    return [_artifact(row) for row in rows]


async def _fail_pending(
    conn: Connection, cutoff: int, message: str, now: int, limit: int
) -> list[Artifact]:
    rows = await conn.fetch(
        f"""WITH failed AS (
                UPDATE artifacts a SET state = 'failed', error_message = $2, updated_at = $3
                WHERE a.id IN (
                    SELECT id FROM artifacts
                    WHERE state = 'pending' AND created_at <= $1
                    ORDER BY created_at LIMIT $4 FOR UPDATE SKIP LOCKED)
                RETURNING a.*)
            SELECT {_COLUMNS} FROM failed a JOIN builds b ON b.id = a.build_id
            ORDER BY a.created_at, a.seq""",
        cutoff,
        message,
        now,
        limit,
    )
    return [_artifact(row) for row in rows]


async def _of_project_builds(
    conn: Connection, project_id: uuid.UUID, pipeline_id: uuid.UUID | None, limit: int
) -> list[Artifact]:
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM {_FROM}
            WHERE b.project_id = $1 AND ($2::uuid IS NULL OR b.pipeline_id = $2)
            ORDER BY a.seq LIMIT $3""",
        project_id,
        pipeline_id,
        limit,
    )
    return [_artifact(row) for row in rows]


async def _delete_rows(conn: Connection, ids: list[uuid.UUID]) -> int:
    status: str = await conn.execute("DELETE FROM artifacts WHERE id = ANY($1::uuid[])", ids)
    return int(status.split()[-1])


async def _oldest_pending(conn: Connection) -> int | None:
    oldest: int | None = await conn.fetchval(
        "SELECT min(created_at) FROM artifacts WHERE state = 'pending'"
    )
    return oldest


async def _settings(conn: Connection) -> StoredStorageSettings | None:
    row = await conn.fetchrow("SELECT * FROM artifact_storage_settings")
    if row is None:
        return None
    return StoredStorageSettings(
        provider=StorageProvider(row["provider"]),
        local_base_dir=row["local_base_dir"],
        s3_bucket=row["s3_bucket"],
        s3_region=row["s3_region"],
        s3_endpoint=row["s3_endpoint"],
        access_key_id_encrypted=row["access_key_id_encrypted"],
        secret_access_key_encrypted=row["secret_access_key_encrypted"],
        updated_at=row["updated_at"],
    )


async def _save_settings(conn: Connection, s: StoredStorageSettings) -> None:
    await conn.execute(
        """INSERT INTO artifact_storage_settings (provider, local_base_dir, s3_bucket,
               s3_region, s3_endpoint, access_key_id_encrypted, secret_access_key_encrypted,
               updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (singleton) DO UPDATE SET provider = EXCLUDED.provider,
               local_base_dir = EXCLUDED.local_base_dir, s3_bucket = EXCLUDED.s3_bucket,
               s3_region = EXCLUDED.s3_region, s3_endpoint = EXCLUDED.s3_endpoint,
               access_key_id_encrypted = EXCLUDED.access_key_id_encrypted,
               secret_access_key_encrypted = EXCLUDED.secret_access_key_encrypted,
               updated_at = EXCLUDED.updated_at""",
        s.provider.value,
        s.local_base_dir,
        s.s3_bucket,
        s.s3_region,
        s.s3_endpoint,
        s.access_key_id_encrypted,
        s.secret_access_key_encrypted,
        s.updated_at,
    )


class ArtifactStore:
    """Artifact rows and the storage settings row."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, artifact_id: str) -> Artifact | None:
        key = as_uuid(artifact_id)
        return None if key is None else await self._db.run(_get, key)

    async def available_with_checksum(self, build_id: str, checksum: str) -> Artifact | None:
        """The build's first available artifact with this checksum (upload dedupe)."""
        key = as_uuid(build_id)
        return None if key is None else await self._db.run(_available_with_checksum, key, checksum)

    async def insert(self, new: NewArtifact) -> Artifact | None:
        """A new ``pending`` row; None when the build is gone."""
        return await self._db.run(_insert, new)

    async def finish(
        self,
        artifact_id: str,
        build_id: str,
        runner_id: str,
        state: ArtifactState,
        error_message: str | None,
        now: int,
    ) -> Artifact | None:
        """Compare-and-set ``pending`` → ``state`` for an artifact of a build bound to the
        runner; None when any of that does not hold."""
        keys = [as_uuid(artifact_id), as_uuid(build_id), as_uuid(runner_id)]
        if any(key is None for key in keys):
            return None
        artifact, build, runner = keys
        assert artifact is not None and build is not None and runner is not None
        return await self._db.run(_finish, artifact, build, runner, state.value, error_message, now)

    async def for_build(self, build_id: str) -> list[Artifact]:
        """The build's available artifacts, oldest first."""
        key = as_uuid(build_id)
        return [] if key is None else await self._db.run(_for_build, key)

    async def for_project(self, project_id: str, limit: int) -> list[Artifact]:
        """The project's available artifacts, newest first."""
        key = as_uuid(project_id)
        return [] if key is None else await self._db.run(_for_project, key, limit)

    async def of_builds(self, build_ids: Sequence[str], member_of: str | None) -> list[Artifact]:
        """Available artifacts of these builds, newest first; with ``member_of``, only of
        projects that user is a member of. Ids that are not UUIDs are ignored."""
        keys = [key for key in (as_uuid(b) for b in build_ids) if key is not None]
        if not keys:
            return []
        return await self._db.run(_of_builds, keys, member_of)

    async def fail_pending(
        self, cutoff: int, message: str, now: int, *, limit: int = 500
    ) -> list[Artifact]:
        """Fail up to ``limit`` pending rows created at or before ``cutoff``; those rows."""
        return await self._db.run(_fail_pending, cutoff, message, now, limit)

    async def first_of_project(
        self, project_id: str, limit: int, *, pipeline_id: str | None = None
    ) -> list[Artifact]:
        """Up to ``limit`` artifacts of the project's builds (of one pipeline's builds with
        ``pipeline_id``) in any state, oldest first: the next ones to purge."""
        key = as_uuid(project_id)
        pipeline = None if pipeline_id is None else as_uuid(pipeline_id)
        if key is None or (pipeline_id is not None and pipeline is None):
            return []
        return await self._db.run(_of_project_builds, key, pipeline, limit)

    async def delete_rows(self, artifact_ids: Sequence[str]) -> int:
        """Delete these artifact rows (their scoped and install tokens go with them); how
        many there were."""
        keys = [key for key in (as_uuid(a) for a in artifact_ids) if key is not None]
        return 0 if not keys else await self._db.run(_delete_rows, keys)

    async def oldest_pending(self) -> int | None:
        """When the oldest pending reservation was made, or None when there is none."""
        return await self._db.run(_oldest_pending)

    async def storage_settings(self) -> StoredStorageSettings | None:
        return await self._db.run(_settings)

    async def save_storage_settings(self, settings: StoredStorageSettings) -> None:
        await self._db.run(_save_settings, settings)
