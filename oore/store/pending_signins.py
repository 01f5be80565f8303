"""SQL for pending OIDC sign-ins and start reservations (table ``pending_signins``,
migration ``shared_tokens``)."""

from __future__ import annotations

from dataclasses import dataclass

from oore.store.database import Connection, Database

# Any constant works; every oored sharing a database must use the same one.
ADMIT_LOCK_KEY = 0x6F6F7265_0002
SWEEP_BATCH = 64  # rows past keeping deleted by each admission, at most


@dataclass(frozen=True)
class PendingLimits:
    """At most ``capacity`` rows; a row expires ``ttl`` seconds after it was made and is
    deleted at the latest ``keep`` seconds after."""

    capacity: int
    ttl: int
    keep: int


@dataclass(frozen=True)
class SealedRequest:
    """A pending request as stored: its state's hash and the request, sealed."""

    state_hash: str
    request_enc: str
    setup: bool
    created_at: int


async def _admit(conn: Connection, limits: PendingLimits, now: int) -> bool:
    """Is there room for one more row? Expired rows make room when there is none."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", ADMIT_LOCK_KEY)
    await conn.execute(
        """DELETE FROM pending_signins WHERE id IN (
               SELECT id FROM pending_signins WHERE created_at <= $1 LIMIT $2)""",
        now - limits.keep,
        SWEEP_BATCH,
    )
    if await conn.fetchval("SELECT count(*) FROM pending_signins") < limits.capacity:
        return True
    await conn.execute("DELETE FROM pending_signins WHERE created_at <= $1", now - limits.ttl)
    held: int = await conn.fetchval("SELECT count(*) FROM pending_signins")
    return held < limits.capacity


async def _insert(conn: Connection, request: SealedRequest) -> None:
    await conn.execute(
        """INSERT INTO pending_signins (state_hash, request_enc, setup, created_at)
           VALUES ($1, $2, $3, $4)""",
        request.state_hash,
        request.request_enc,
        request.setup,
        request.created_at,
    )


async def _add(conn: Connection, request: SealedRequest, limits: PendingLimits, now: int) -> bool:
    if not await _admit(conn, limits, now):
        return False
    await _insert(conn, request)
    return True


async def _reserve(conn: Connection, limits: PendingLimits, now: int) -> int | None:
    if not await _admit(conn, limits, now):
        return None
    ticket: int = await conn.fetchval(
        "INSERT INTO pending_signins (created_at) VALUES ($1) RETURNING id", now
    )
    return ticket


async def _fulfil(
    conn: Connection, ticket: int, request: SealedRequest, ttl: int, now: int
) -> bool:
    reserved_at = await conn.fetchval(
        """DELETE FROM pending_signins WHERE id = $1 AND state_hash IS NULL
           RETURNING created_at""",
        ticket,
    )
    if reserved_at is None or now - reserved_at >= ttl:
        return False
    await _insert(conn, request)
    return True


async def _take(conn: Connection, state_hash: str) -> SealedRequest | None:
    row = await conn.fetchrow(
        "DELETE FROM pending_signins WHERE state_hash = $1 RETURNING *", state_hash
    )
    if row is None:
        return None
    return SealedRequest(row["state_hash"], row["request_enc"], row["setup"], row["created_at"])


async def _execute(conn: Connection, sql: str, *args: object) -> None:
    await conn.execute(sql, *args)


async def _count(conn: Connection) -> int:
    held: int = await conn.fetchval("SELECT count(*) FROM pending_signins")
    return held


class PendingSignInStore:
    """Rows of ``pending_signins``, shared by every daemon: admissions are serialized by a
    transaction-scoped advisory lock, so the capacity holds exactly."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, request: SealedRequest, limits: PendingLimits, now: int) -> bool:
        """Store a request; False (nothing stored) when there is no room."""
        return await self._db.transaction(_add, request, limits, now)

    async def reserve(self, limits: PendingLimits, now: int) -> int | None:
        """Hold a slot; its ticket, or None when there is no room."""
        return await self._db.transaction(_reserve, limits, now)

    async def release(self, ticket: int) -> None:
        await self._db.run(_execute, "DELETE FROM pending_signins WHERE id = $1", ticket)

    async def fulfil(self, ticket: int, request: SealedRequest, ttl: int, now: int) -> bool:
        """Turn a reservation into a request; False when it was dropped or has lapsed (it
        is gone either way)."""
        return await self._db.transaction(_fulfil, ticket, request, ttl, now)

    async def take(self, state_hash: str) -> SealedRequest | None:
        """Remove and return the request with this state's hash (used once, by any daemon)."""
        return await self._db.run(_take, state_hash)

    async def drop_all(self) -> None:
        """Every request and reservation."""
        await self._db.run(_execute, "DELETE FROM pending_signins")

    async def drop_setup(self) -> None:
        """The requests of the setup flow."""
        await self._db.run(_execute, "DELETE FROM pending_signins WHERE setup")

    async def count(self) -> int:
        """Requests and reservations, expired ones included."""
        return await self._db.run(_count)
