"""SQL for log stream tokens (table ``stream_tokens``, migration ``shared_tokens``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from oore.store.database import Connection, Database

# Any constant works; every oored sharing a database must use the same one.
MINT_LOCK_KEY = 0x6F6F7265_0001
SWEEP_BATCH = 64  # expired tokens deleted by each mint, at most


@dataclass(frozen=True)
class StreamToken:
    """What a stream token stands for: one stream of a build, for a credential, until."""

    build_id: str
    user_id: str
    credential_hash: str
    via_api_token: bool
    expires_at: int


@dataclass(frozen=True)
class TokenLimits:
    """Caps on unused, unexpired tokens."""

    total: int
    per_user: int
    per_build: int


async def _sweep(conn: Connection, now: int) -> None:
    await conn.execute(
        """DELETE FROM stream_tokens WHERE token_hash IN (
               SELECT token_hash FROM stream_tokens WHERE expires_at <= $1 LIMIT $2)""",
        now,
        SWEEP_BATCH,
    )


async def _mint(
    conn: Connection, token_hash: str, token: StreamToken, limits: TokenLimits, now: int
) -> bool:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", MINT_LOCK_KEY)
    await _sweep(conn, now)
    user, build = uuid.UUID(token.user_id), uuid.UUID(token.build_id)
    # A new token replaces the user's unused one for this build, even when refused below.
    await conn.execute(
        "DELETE FROM stream_tokens WHERE user_id = $1 AND build_id = $2", user, build
    )
    held = await conn.fetchrow(
        """SELECT count(*) AS total,
                  count(*) FILTER (WHERE user_id = $2) AS of_user,
                  count(*) FILTER (WHERE build_id = $3) AS of_build
           FROM stream_tokens WHERE expires_at > $1""",
        now,
        user,
        build,
    )
    if (
        held["total"] >= limits.total
        or held["of_user"] >= limits.per_user
        or held["of_build"] >= limits.per_build
    ):
        return False
    await conn.execute(
        """INSERT INTO stream_tokens (token_hash, build_id, user_id, credential_hash,
                                      via_api_token, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        token_hash,
        build,
        user,
        token.credential_hash,
        token.via_api_token,
        token.expires_at,
    )
    return True


async def _redeem(conn: Connection, token_hash: str) -> StreamToken | None:
    row = await conn.fetchrow(
        """DELETE FROM stream_tokens WHERE token_hash = $1
           RETURNING build_id, user_id, credential_hash, via_api_token, expires_at""",
        token_hash,
    )
    if row is None:
        return None
    return StreamToken(
        str(row["build_id"]),
        str(row["user_id"]),
        row["credential_hash"],
        row["via_api_token"],
        row["expires_at"],
    )


class StreamTokenStore:
    """Rows of ``stream_tokens``: minted under the caps, redeemed once by any daemon."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def mint(
        self, token_hash: str, token: StreamToken, limits: TokenLimits, now: int
    ) -> bool:
        """Store a new token, replacing the user's unused one for the build; False (and
        nothing stored) when a cap is reached. Serialized across daemons, so the caps hold
        exactly."""
        return await self._db.transaction(_mint, token_hash, token, limits, now)

    async def redeem(self, token_hash: str) -> StreamToken | None:
        """The token, deleted by this call (expired or not); None when unknown or used."""
        return await self._db.run(_redeem, token_hash)
