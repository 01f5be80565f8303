"""SQL for scoped download tokens and install tokens of artifacts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from oore.domain.artifact_tokens import ArtifactToken, TokenKind
from oore.store.database import Connection, Database
from oore.store.projects import as_uuid

_COLUMNS = """t.id, t.artifact_id, t.kind, t.prefix, t.created_by, u.email AS created_by_email,
    t.single_use, t.expires_at, t.used_at, t.revoked_at, t.created_at"""
_FROM = "artifact_download_tokens t LEFT JOIN users u ON u.id = t.created_by"


def _token(row: Any) -> ArtifactToken:
    return ArtifactToken(
        id=str(row["id"]),
        artifact_id=str(row["artifact_id"]),
        kind=TokenKind(row["kind"]),
        prefix=row["prefix"],
        created_by=None if row["created_by"] is None else str(row["created_by"]),
        created_by_email=row["created_by_email"],
        single_use=row["single_use"],
        expires_at=row["expires_at"],
        used_at=row["used_at"],
        revoked_at=row["revoked_at"],
        created_at=row["created_at"],
    )


@dataclass(frozen=True)
class NewArtifactToken:
    id: str
    artifact_id: str
    kind: TokenKind
    token_hash: str
    prefix: str
    created_by: str
    single_use: bool
    expires_at: int
    now: int


async def _insert(conn: Connection, new: NewArtifactToken) -> ArtifactToken:
    row = await conn.fetchrow(
        f"""WITH inserted AS (
                INSERT INTO artifact_download_tokens (id, artifact_id, kind, token_hash, prefix,
                    created_by, single_use, expires_at, created_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                RETURNING *)
            SELECT {_COLUMNS} FROM inserted t LEFT JOIN users u ON u.id = t.created_by""",
        uuid.UUID(new.id),
        uuid.UUID(new.artifact_id),
        new.kind.value,
        new.token_hash,
        new.prefix,
        uuid.UUID(new.created_by),
        new.single_use,
        new.expires_at,
        new.now,
    )
    return _token(row)


async def _get(conn: Connection, token_id: uuid.UUID) -> ArtifactToken | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM {_FROM} WHERE t.id = $1", token_id)
    return None if row is None else _token(row)


async def _by_hash(conn: Connection, token_hash: str) -> ArtifactToken | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM {_FROM} WHERE t.token_hash = $1", token_hash)
    return None if row is None else _token(row)


async def _for_artifact(conn: Connection, artifact_id: uuid.UUID, kind: str) -> list[ArtifactToken]:
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM {_FROM} WHERE t.artifact_id = $1 AND t.kind = $2
            ORDER BY t.created_at DESC, t.id""",
        artifact_id,
        kind,
    )
    return [_token(row) for row in rows]


async def _revoke(conn: Connection, token_id: uuid.UUID, now: int) -> ArtifactToken | None:
    row = await conn.fetchrow(
        f"""WITH revoked AS (
                UPDATE artifact_download_tokens SET revoked_at = coalesce(revoked_at, $2)
                WHERE id = $1 RETURNING *)
            SELECT {_COLUMNS} FROM revoked t LEFT JOIN users u ON u.id = t.created_by""",
        token_id,
        now,
    )
    return None if row is None else _token(row)


async def _consume(conn: Connection, token_id: uuid.UUID, now: int) -> bool:
    used: bool | None = await conn.fetchval(
        """UPDATE artifact_download_tokens SET used_at = $2
           WHERE id = $1 AND single_use AND used_at IS NULL AND revoked_at IS NULL
             AND expires_at > $2
           RETURNING true""",
        token_id,
        now,
    )
    return bool(used)


class ArtifactTokenStore:
    """Rows of ``artifact_download_tokens``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, new: NewArtifactToken) -> ArtifactToken:
        return await self._db.run(_insert, new)

    async def get(self, token_id: str) -> ArtifactToken | None:
        key = as_uuid(token_id)
        return None if key is None else await self._db.run(_get, key)

    async def by_hash(self, token_hash: str) -> ArtifactToken | None:
        return await self._db.run(_by_hash, token_hash)

    async def for_artifact(self, artifact_id: str, kind: TokenKind) -> list[ArtifactToken]:
        """The artifact's tokens of one kind, newest first."""
        key = as_uuid(artifact_id)
        return [] if key is None else await self._db.run(_for_artifact, key, kind.value)

    async def revoke(self, token_id: str, now: int) -> ArtifactToken | None:
        """Mark the token revoked (the first revocation time is kept); None if unknown."""
        key = as_uuid(token_id)
        return None if key is None else await self._db.run(_revoke, key, now)

    async def consume(self, token_id: str, now: int) -> bool:
        """Compare-and-set ``used_at`` of a live single-use token; False when another redeem
        won, or the token was revoked or expired meanwhile."""
        key = as_uuid(token_id)
        return False if key is None else await self._db.run(_consume, key, now)
