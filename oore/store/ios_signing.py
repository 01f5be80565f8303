"""SQL for the iOS signing of pipelines; secrets arrive and leave sealed."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from oore.domain.ios_signing import IosSigningState, StoredProfile, check_mode
from oore.store.database import Connection, Database
from oore.store.projects import as_uuid

Change = Callable[[IosSigningState], IosSigningState]


def _profile_from_row(row: Any) -> StoredProfile:
    return StoredProfile(
        bundle_id=row["bundle_id"],
        profile_filename=row["profile_filename"],
        profile_encrypted=row["profile_encrypted"],
        checksum=row["checksum"],
        profile_uuid=row["profile_uuid"],
        profile_name=row["profile_name"],
        expires_at=row["expires_at"],
        updated_at=row["updated_at"],
    )


def _state_from_rows(row: Any, profiles: list[Any]) -> IosSigningState:
    return IosSigningState(
        pipeline_id=str(row["pipeline_id"]),
        enabled=row["enabled"],
        mode=check_mode(row["mode"]),
        team_id=row["team_id"],
        export_method=row["export_method"],
        bundle_ids=tuple(row["bundle_ids"]),
        p12_filename=row["p12_filename"],
        p12_encrypted=row["p12_encrypted"],
        p12_checksum=row["p12_checksum"],
        p12_password_encrypted=row["p12_password_encrypted"],
        api_key_id=row["api_key_id"],
        api_issuer_id=row["api_issuer_id"],
        api_private_key_encrypted=row["api_private_key_encrypted"],
        profiles=tuple(_profile_from_row(p) for p in profiles),
        last_synced_at=row["last_synced_at"],
        updated_at=row["updated_at"],
    )


async def _get(conn: Connection, pipeline_id: uuid.UUID, lock: bool = False) -> Any:
    suffix = " FOR UPDATE" if lock else ""
    row = await conn.fetchrow(
        "SELECT * FROM pipeline_ios_signing WHERE pipeline_id = $1" + suffix, pipeline_id
    )
    if row is None:
        return None
    profiles = await conn.fetch(
        "SELECT * FROM pipeline_ios_profiles WHERE pipeline_id = $1 ORDER BY position",
        pipeline_id,
    )
    return _state_from_rows(row, profiles)


async def _update(
    conn: Connection, pipeline_id: uuid.UUID, change: Change
) -> IosSigningState | None:
    # The pipeline row serializes writers, also before the signing row exists; a deleted
    # pipeline has nothing to configure.
    exists = await conn.fetchval(
        "SELECT true FROM pipelines WHERE id = $1 FOR NO KEY UPDATE", pipeline_id
    )
    if not exists:
        return None
    current = await _get(conn, pipeline_id, lock=True)
    state = change(current or IosSigningState(pipeline_id=str(pipeline_id)))
    await conn.execute(
        """INSERT INTO pipeline_ios_signing (pipeline_id, enabled, mode, team_id,
               export_method, bundle_ids, p12_filename, p12_encrypted, p12_checksum,
               p12_password_encrypted, api_key_id, api_issuer_id, api_private_key_encrypted,
               last_synced_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
           ON CONFLICT (pipeline_id) DO UPDATE SET
               enabled = EXCLUDED.enabled, mode = EXCLUDED.mode, team_id = EXCLUDED.team_id,
               export_method = EXCLUDED.export_method, bundle_ids = EXCLUDED.bundle_ids,
               p12_filename = EXCLUDED.p12_filename, p12_encrypted = EXCLUDED.p12_encrypted,
               p12_checksum = EXCLUDED.p12_checksum,
               p12_password_encrypted = EXCLUDED.p12_password_encrypted,
               api_key_id = EXCLUDED.api_key_id, api_issuer_id = EXCLUDED.api_issuer_id,
               api_private_key_encrypted = EXCLUDED.api_private_key_encrypted,
               last_synced_at = EXCLUDED.last_synced_at, updated_at = EXCLUDED.updated_at""",
        pipeline_id,
        state.enabled,
        state.mode,
        state.team_id,
        state.export_method,
        list(state.bundle_ids),
        state.p12_filename,
        state.p12_encrypted,
        state.p12_checksum,
        state.p12_password_encrypted,
        state.api_key_id,
        state.api_issuer_id,
        state.api_private_key_encrypted,
        state.last_synced_at,
        state.updated_at or 0,
    )
    kept = [p.bundle_id for p in state.profiles]
    await conn.execute(
        """DELETE FROM pipeline_ios_profiles
           WHERE pipeline_id = $1 AND NOT (bundle_id = ANY($2::text[]))""",
        pipeline_id,
        kept,
    )
    before = {} if current is None else {p.bundle_id: p for p in current.profiles}
    for position, profile in enumerate(state.profiles):
        if before.get(profile.bundle_id) == profile:
            await conn.execute(
                """UPDATE pipeline_ios_profiles SET position = $3
                   WHERE pipeline_id = $1 AND bundle_id = $2""",
                pipeline_id,
                profile.bundle_id,
                position,
            )
            continue
        await conn.execute(
            """INSERT INTO pipeline_ios_profiles (pipeline_id, bundle_id, position,
                   profile_filename, profile_encrypted, checksum, profile_uuid, profile_name,
                   expires_at, updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
               ON CONFLICT (pipeline_id, bundle_id) DO UPDATE SET
                   position = EXCLUDED.position, profile_filename = EXCLUDED.profile_filename,
                   profile_encrypted = EXCLUDED.profile_encrypted,
                   checksum = EXCLUDED.checksum, profile_uuid = EXCLUDED.profile_uuid,
                   profile_name = EXCLUDED.profile_name, expires_at = EXCLUDED.expires_at,
                   updated_at = EXCLUDED.updated_at""",
            pipeline_id,
            profile.bundle_id,
            position,
            profile.profile_filename,
            profile.profile_encrypted,
            profile.checksum,
            profile.profile_uuid,
            profile.profile_name,
            profile.expires_at,
            profile.updated_at,
        )
    return state


class IosSigningStore:
    """One pipeline's iOS signing: read it, or change it under the pipeline's row lock."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, pipeline_id: str) -> IosSigningState | None:
        """The stored signing, or None when the pipeline has none (or the id is no UUID)."""
        key = as_uuid(pipeline_id)
        found: IosSigningState | None = None if key is None else await self._db.run(_get, key)
        return found

    async def update(self, pipeline_id: str, change: Change) -> IosSigningState | None:
        """Apply ``change`` (pure; it may raise to refuse) to the stored signing (defaults
        when none) and store the result in one transaction; None when the pipeline is gone."""
        key = as_uuid(pipeline_id)
        if key is None:
            return None
        return await self._db.transaction(_update, key, change)
