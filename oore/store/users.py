"""SQL for users and user sessions."""

from __future__ import annotations

from typing import Any

from oore.domain.ids import new_id
from oore.domain.setup import SetupState
from oore.domain.users import Role, Session, User, UserStatus
from oore.store.audit import AuditEntry, insert_audit
from oore.store.database import Connection, Database


def user_from_row(row: Any, prefix: str = "") -> User:
    """Build a User from a row whose user columns may carry a prefix."""
    return User(
        id=str(row[prefix + "id"]),
        email=row[prefix + "email"],
        display_name=row[prefix + "display_name"],
        role=Role(row[prefix + "role"]),
        status=UserStatus(row[prefix + "status"]),
        oidc_subject=row[prefix + "oidc_subject"],
        avatar_url=row[prefix + "avatar_url"],
        created_at=row[prefix + "created_at"],
        updated_at=row[prefix + "updated_at"],
    )


async def _insert_session(
    conn: Connection, token_hash: str, user_id: str, now: int, expires_at: int
) -> None:
    await conn.execute(
        """INSERT INTO sessions (token_hash, user_id, created_at, expires_at)
           VALUES ($1, $2, $3, $4)""",
        token_hash,
        user_id,
        now,
        expires_at,
    )


async def _upsert_owner(conn: Connection, email: str, subject: str, now: int) -> User:
    row = await conn.fetchrow(
        """INSERT INTO users (id, email, role, status, oidc_subject, created_at, updated_at)
           VALUES ($1, $2, 'owner', 'active', $3, $4, $4)
           ON CONFLICT (email) DO UPDATE
               SET role = 'owner', status = 'active', oidc_subject = EXCLUDED.oidc_subject,
                   updated_at = EXCLUDED.updated_at
           RETURNING *""",
        new_id(),
        email,
        subject,
        now,
    )
    return user_from_row(row)


async def _complete_local(
    conn: Connection,
    email: str,
    subject: str,
    token_hash: str,
    now: int,
    expires_at: int,
    client_ip: str | None,
) -> User | None:
    state = await conn.fetchval("SELECT state FROM instance FOR UPDATE")
    if state == SetupState.READY.value:
        return None
    owner = await _upsert_owner(conn, email, subject, now)
    await conn.execute(
        """UPDATE instance SET state = 'ready', owner_email = $1, owner_subject = $2,
               setup_session_hash = NULL, setup_session_expires_at = NULL, updated_at = $3""",
        email,
        subject,
        now,
    )
    await insert_audit(
        conn,
        [
            AuditEntry(owner.id, email, "owner_created", "user", owner.id, None, client_ip, now),
            AuditEntry(owner.id, email, "setup_completed", "instance", None, None, client_ip, now),
        ],
    )
    await _insert_session(conn, token_hash, owner.id, now, expires_at)
    return owner


async def _create(
    conn: Connection, email: str, role: Role, status: UserStatus, subject: str | None, now: int
) -> User:
    user_id = new_id()
    row = await conn.fetchrow(
        """INSERT INTO users (id, email, role, status, oidc_subject, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING *""",
        user_id,
        email,
        role.value,
        status.value,
        subject or f"pending-{user_id}",
        now,
    )
    return user_from_row(row)


async def _active_users(conn: Connection, email: str | None) -> list[User]:
    if email is None:
        rows = await conn.fetch(
            "SELECT * FROM users WHERE status = 'active' ORDER BY created_at LIMIT 2"
        )
    else:
        rows = await conn.fetch(
            "SELECT * FROM users WHERE status = 'active' AND lower(email) = lower($1)", email
        )
    return [user_from_row(row) for row in rows]


async def _session(conn: Connection, token_hash: str, now: int) -> Session | None:
    row = await conn.fetchrow(
        """SELECT s.token_hash, s.expires_at, u.id AS u_id, u.email AS u_email,
                  u.display_name AS u_display_name, u.role AS u_role, u.status AS u_status,
                  u.oidc_subject AS u_oidc_subject, u.avatar_url AS u_avatar_url,
                  u.created_at AS u_created_at, u.updated_at AS u_updated_at
           FROM sessions s JOIN users u ON u.id = s.user_id
           WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.status = 'active'""",
        token_hash,
        now,
    )
    if row is None:
        return None
    return Session(row["token_hash"], user_from_row(row, "u_"), row["expires_at"])


async def _delete_session(conn: Connection, token_hash: str) -> bool:
    return (
        await conn.fetchval("DELETE FROM sessions WHERE token_hash = $1 RETURNING true", token_hash)
        is True
    )


class UserStore:
    """Users and their sessions."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def complete_local_setup(
        self,
        *,
        email: str,
        subject: str,
        token_hash: str,
        now: int,
        expires_at: int,
        client_ip: str | None,
    ) -> User | None:
        """Atomically: owner upserted, setup ``ready``, session created. None if already ready."""
        return await self._db.transaction(
            _complete_local, email, subject, token_hash, now, expires_at, client_ip
        )

    async def create(
        self, *, email: str, role: Role, status: UserStatus, subject: str | None, now: int
    ) -> User:
        """Insert a user; invited users get the placeholder subject ``pending-<id>``."""
        return await self._db.run(_create, email, role, status, subject, now)

    async def active_users(self, email: str | None) -> list[User]:
        """Active users with this email (case-insensitive), or up to two of any email."""
        return await self._db.run(_active_users, email)

    async def create_session(
        self, token_hash: str, user_id: str, now: int, expires_at: int
    ) -> None:
        await self._db.run(_insert_session, token_hash, user_id, now, expires_at)

    async def session(self, token_hash: str, now: int) -> Session | None:
        """The live session with this hash, if its user is active and it has not expired."""
        return await self._db.run(_session, token_hash, now)

    async def delete_session(self, token_hash: str) -> bool:
        return await self._db.run(_delete_session, token_hash)
