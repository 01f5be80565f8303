"""SQL for the single-use sealed states of integration flows (table ``integration_states``,
migration ``shared_tokens``)."""

from __future__ import annotations

from oore.store.database import Connection, Database

SWEEP_BATCH = 64  # expired states deleted by each issue, at most


async def _issue(
    conn: Connection, nonce_hash: str, expires_at: int, capacity: int, now: int
) -> None:
    await conn.execute(
        """DELETE FROM integration_states WHERE id IN (
               SELECT id FROM integration_states WHERE expires_at < $1 LIMIT $2)""",
        now,
        SWEEP_BATCH,
    )
    issued = await conn.fetchval(
        """INSERT INTO integration_states (nonce_hash, expires_at) VALUES ($1, $2)
           ON CONFLICT (nonce_hash) DO UPDATE SET expires_at = excluded.expires_at
           RETURNING id""",
        nonce_hash,
        expires_at,
    )
    await conn.execute("DELETE FROM integration_states WHERE id <= $1", issued - capacity)


async def _consume(conn: Connection, nonce_hash: str, now: int) -> bool:
    expires_at = await conn.fetchval(
        "DELETE FROM integration_states WHERE nonce_hash = $1 RETURNING expires_at", nonce_hash
    )
    return expires_at is not None and expires_at >= now


class IntegrationStateStore:
    """Rows of ``integration_states``: the nonces of issued states, each used at most once."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def issue(self, nonce_hash: str, *, expires_at: int, capacity: int, now: int) -> None:
        """Record a state's nonce; the oldest go when there are more than ``capacity``."""
        await self._db.transaction(_issue, nonce_hash, expires_at, capacity, now)

    async def consume(self, nonce_hash: str, now: int) -> bool:
        """Use the nonce up; True when it was issued, unused and not expired (on any daemon)."""
        return await self._db.run(_consume, nonce_hash, now)
