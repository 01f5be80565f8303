"""SQL for build signing material, and for the signing grant of a build (contract §5.6,
§8.3); sealed values arrive and leave sealed."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from oore.domain.builds import Build
from oore.domain.signing import SealedAndroidProfile
from oore.errors import NotFound
from oore.store.builds import build_from_row, sealed_passwords_of
from oore.store.database import Connection, Database
from oore.store.projects import as_uuid

# Builds the current profiles into the ones to save (or raises to save nothing).
AndroidChange = Callable[[dict[str, SealedAndroidProfile]], Sequence[SealedAndroidProfile]]


def _android_from_row(row: Any) -> SealedAndroidProfile:
    return SealedAndroidProfile(
        pipeline_id=str(row["pipeline_id"]),
        build_type=row["build_type"],
        enabled=row["enabled"],
        keystore_filename=row["keystore_filename"],
        keystore_sealed=row["keystore_encrypted"],
        keystore_checksum=row["keystore_checksum"],
        store_password_sealed=row["store_password_encrypted"],
        key_alias_sealed=row["key_alias_encrypted"],
        key_password_sealed=row["key_password_encrypted"],
        updated_at=row["updated_at"],
    )


async def _android(conn: Connection, pipeline_id: uuid.UUID) -> dict[str, SealedAndroidProfile]:
    rows = await conn.fetch(
        "SELECT * FROM android_signing_profiles WHERE pipeline_id = $1", pipeline_id
    )
    return {row["build_type"]: _android_from_row(row) for row in rows}


async def _change_android(
    conn: Connection, pipeline_id: uuid.UUID, change: AndroidChange
) -> dict[str, SealedAndroidProfile]:
    # The pipeline's row lock serializes changes of its profiles (and sees it deleted).
    found = await conn.fetchval("SELECT true FROM pipelines WHERE id = $1 FOR UPDATE", pipeline_id)
    if not found:
        raise NotFound("not_found", "Pipeline not found")
    current = await _android(conn, pipeline_id)
    for profile in change(current):
        await conn.execute(
            """INSERT INTO android_signing_profiles (pipeline_id, build_type, enabled,
                   keystore_filename, keystore_encrypted, keystore_checksum,
                   store_password_encrypted, key_alias_encrypted, key_password_encrypted,
                   updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
               ON CONFLICT (pipeline_id, build_type) DO UPDATE SET
                   enabled = EXCLUDED.enabled,
                   keystore_filename = EXCLUDED.keystore_filename,
                   keystore_encrypted = EXCLUDED.keystore_encrypted,
                   keystore_checksum = EXCLUDED.keystore_checksum,
                   store_password_encrypted = EXCLUDED.store_password_encrypted,
                   key_alias_encrypted = EXCLUDED.key_alias_encrypted,
                   key_password_encrypted = EXCLUDED.key_password_encrypted,
                   updated_at = EXCLUDED.updated_at""",
            pipeline_id,
            profile.build_type,
            profile.enabled,
            profile.keystore_filename,
            profile.keystore_sealed,
            profile.keystore_checksum,
            profile.store_password_sealed,
            profile.key_alias_sealed,
            profile.key_password_sealed,
            profile.updated_at,
        )
    return await _android(conn, pipeline_id)


@dataclass(frozen=True)
class GrantedBuild:
    """A build and the hash of the signing token its current claim was given (None once
    the build is no longer held)."""

    build: Build
    signing_token_hash: str | None


async def _grant(conn: Connection, build_id: uuid.UUID) -> GrantedBuild | None:
    row = await conn.fetchrow(
        """SELECT *, (SELECT p.name FROM projects p WHERE p.id = project_id) AS project_name
           FROM builds WHERE id = $1""",
        build_id,
    )
    if row is None:
        return None
    return GrantedBuild(build_from_row(row), row["signing_token_hash"])


async def _sealed_passwords(conn: Connection, pipeline_id: uuid.UUID) -> list[str]:
    rows = await conn.fetch(sealed_passwords_of("$1"), pipeline_id)
    return [row["sealed"] for row in rows if row["sealed"] is not None]


class SigningStore:
    """Signing profiles per pipeline, and the signing grants of builds."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def android(self, pipeline_id: str) -> dict[str, SealedAndroidProfile]:
        """The pipeline's stored Android profiles by build type (absent: never saved)."""
        key = as_uuid(pipeline_id)
        return {} if key is None else await self._db.run(_android, key)

    async def change_android(
        self, pipeline_id: str, change: AndroidChange
    ) -> dict[str, SealedAndroidProfile]:
        """Save what ``change`` makes of the current profiles, in one transaction that
        holds the pipeline; the profiles after it. 404 when the pipeline is gone."""
        key = as_uuid(pipeline_id)
        if key is None:
            raise NotFound("not_found", "Pipeline not found")
        return await self._db.transaction(_change_android, key, change)

    async def sealed_passwords(self, pipeline_id: str) -> list[str]:
        """The sealed signing passwords of the pipeline, Android's and iOS's, enabled or
        not (what a build's log must never show)."""
        key = as_uuid(pipeline_id)
        return [] if key is None else await self._db.run(_sealed_passwords, key)

    async def grant(self, build_id: str) -> GrantedBuild | None:
        key = as_uuid(build_id)
        return None if key is None else await self._db.run(_grant, key)
