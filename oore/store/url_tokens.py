"""SQL for local artifact storage URL tokens (table ``url_tokens``, migration ``shared_tokens``)."""

from __future__ import annotations

from enum import Enum
from typing import Any

from oore.domain.artifact_storage import StoredObject
from oore.store.database import Connection, Database

SWEEP_BATCH = 64  # expired tokens deleted by each issue, at most


class UrlTokenKind(Enum):
    UPLOAD = "upload"
    DOWNLOAD = "download"


def _object(row: Any) -> StoredObject:
    return StoredObject(row["object_key"], row["artifact_id"], row["filename"])


async def _issue(
    conn: Connection,
    kind: str,
    token_hash: str,
    obj: StoredObject,
    expires_at: int,
    capacity: int,
    now: int,
) -> None:
    await conn.execute(
        """DELETE FROM url_tokens WHERE token_hash IN (
               SELECT token_hash FROM url_tokens WHERE expires_at <= $1 LIMIT $2)""",
        now,
        SWEEP_BATCH,
    )
    seq = await conn.fetchval(
        """INSERT INTO url_tokens (token_hash, kind, seq, object_key, artifact_id, filename,
                                   expires_at)
           VALUES ($1, $2,
                   nextval(CASE $2 WHEN 'upload' THEN 'url_tokens_upload_seq'
                                   ELSE 'url_tokens_download_seq' END::regclass),
                   $3, $4, $5, $6)
           RETURNING seq""",
        token_hash,
        kind,
        obj.key,
        obj.artifact_id,
        obj.filename,
        expires_at,
    )
    # The oldest of this kind beyond the capacity make room.
    await conn.execute("DELETE FROM url_tokens WHERE kind = $1 AND seq <= $2", kind, seq - capacity)


async def _take(conn: Connection, kind: str, token_hash: str, now: int) -> StoredObject | None:
    row = await conn.fetchrow(
        """DELETE FROM url_tokens WHERE token_hash = $1 AND kind = $2
           RETURNING object_key, artifact_id, filename, expires_at""",
        token_hash,
        kind,
    )
    if row is None or row["expires_at"] <= now:
        return None
    return _object(row)


async def _peek(conn: Connection, kind: str, token_hash: str, now: int) -> StoredObject | None:
    row = await conn.fetchrow(
        """SELECT object_key, artifact_id, filename, expires_at FROM url_tokens
           WHERE token_hash = $1 AND kind = $2""",
        token_hash,
        kind,
    )
    if row is None:
        return None
    if row["expires_at"] <= now:
        await conn.execute("DELETE FROM url_tokens WHERE token_hash = $1", token_hash)
        return None
    return _object(row)


async def _revoke(conn: Connection, artifact_ids: list[str]) -> int:
    deleted = await conn.fetch(
        "DELETE FROM url_tokens WHERE artifact_id = ANY($1::text[]) RETURNING 1", artifact_ids
    )
    return len(deleted)


async def _count(conn: Connection, kind: str) -> int:
    found: int = await conn.fetchval("SELECT count(*) FROM url_tokens WHERE kind = $1", kind)
    return found


class UrlTokenStore:
    """Rows of ``url_tokens``: upload and download tokens, at most ``capacity`` of each kind."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def issue(
        self,
        kind: UrlTokenKind,
        token_hash: str,
        obj: StoredObject,
        *,
        expires_at: int,
        capacity: int,
        now: int,
    ) -> None:
        """Store a token; the oldest of its kind go when there are more than ``capacity``."""
        await self._db.transaction(_issue, kind.value, token_hash, obj, expires_at, capacity, now)

    async def take(self, kind: UrlTokenKind, token_hash: str, now: int) -> StoredObject | None:
        """The object of a live token, which this call uses up (on whichever daemon)."""
        return await self._db.run(_take, kind.value, token_hash, now)

    async def peek(self, kind: UrlTokenKind, token_hash: str, now: int) -> StoredObject | None:
        """The object of a live token, which stays usable; an expired one is deleted."""
        return await self._db.run(_peek, kind.value, token_hash, now)

    async def revoke(self, artifact_ids: list[str]) -> int:
        """Delete every token, of both kinds, that reaches one of these artifacts."""
        return await self._db.run(_revoke, artifact_ids)

    async def count(self, kind: UrlTokenKind) -> int:
        """How many tokens of this kind are stored, expired ones included."""
        return await self._db.run(_count, kind.value)
