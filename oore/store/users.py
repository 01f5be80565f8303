"""SQL for users and user sessions."""

from __future__ import annotations

import uuid
from typing import Any

from oore.domain.ids import new_id
from oore.domain.setup import SetupState
from oore.domain.users import USER_SORTS, Role, Session, User, UserStatus
from oore.store.audit import AuditEntry, insert_audit
from oore.store.database import Connection, Database

# The user columns of ``users u``, aliased with the ``u_`` prefix user_from_row reads.
USER_COLUMNS = (
    "u.id AS u_id, u.email AS u_email, u.display_name AS u_display_name, u.role AS u_role,"
    " u.status AS u_status, u.oidc_subject AS u_oidc_subject, u.avatar_url AS u_avatar_url,"
    " u.created_at AS u_created_at, u.updated_at AS u_updated_at"
)

# Sort keys of GET /v1/users; anything else sorts by creation time.
# The column each sort key of GET /v1/users orders by (each is named like its key).
ORDER_BY = {sort: sort for sort in USER_SORTS}


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


async def session_row(conn: Connection, token_hash: str, now: int) -> Session | None:
    """The live session with this hash whose user is active (see :meth:`UserStore.session`)."""
    row = await conn.fetchrow(
        f"""SELECT s.token_hash, s.expires_at, {USER_COLUMNS}
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


async def _invite(conn: Connection, email: str, role: Role, now: int) -> User | None:
    user_id = new_id()
    row = await conn.fetchrow(
        """INSERT INTO users (id, email, display_name, role, status, oidc_subject,
                              created_at, updated_at)
           VALUES ($1, $2, $2, $3, 'invited', $4, $5, $5)
           ON CONFLICT (email) DO NOTHING RETURNING *""",
        user_id,
        email,
        role.value,
        f"pending-{user_id}",
        now,
    )
    return None if row is None else user_from_row(row)


async def _get(conn: Connection, user_id: uuid.UUID) -> User | None:
    row = await conn.fetchrow("SELECT * FROM users WHERE id = $1", user_id)
    return None if row is None else user_from_row(row)


async def _page(
    conn: Connection, q: str | None, sort: str, descending: bool, limit: int, offset: int
) -> tuple[list[User], int]:
    condition = (
        "true"
        if q is None
        else """(strpos(lower(email), lower($3)) > 0
                 OR strpos(lower(coalesce(display_name, '')), lower($3)) > 0
                 OR strpos(role, lower($3)) > 0 OR strpos(status, lower($3)) > 0)"""
    )
    args: list[Any] = [limit, offset] + ([] if q is None else [q])
    direction = "DESC" if descending else "ASC"
    rows = await conn.fetch(
        f"""SELECT * FROM users WHERE {condition}
            ORDER BY {ORDER_BY[sort]} {direction}, id {direction} LIMIT $1 OFFSET $2""",
        *args,
    )
    total = await conn.fetchval(
        f"SELECT count(*) FROM users WHERE {condition.replace('$3', '$1')}", *args[2:]
    )
    return [user_from_row(row) for row in rows], total


async def _set_role(conn: Connection, user_id: uuid.UUID, role: Role, now: int) -> User | None:
    row = await conn.fetchrow(
        """UPDATE users SET role = $2, updated_at = $3 WHERE id = $1 AND role <> 'owner'
           RETURNING *""",
        user_id,
        role.value,
        now,
    )
    return None if row is None else user_from_row(row)


async def _disable(conn: Connection, user_id: uuid.UUID, now: int) -> User | None:
    row = await conn.fetchrow(
        """UPDATE users SET status = 'disabled', updated_at = $2
           WHERE id = $1 AND role <> 'owner' RETURNING *""",
        user_id,
        now,
    )
    if row is None:
        return None
    await conn.execute(
        "UPDATE api_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        user_id,
        now,
    )
    await conn.execute("DELETE FROM sessions WHERE user_id = $1", user_id)
    return user_from_row(row)


async def _enable(conn: Connection, user_id: uuid.UUID, now: int) -> User | None:
    row = await conn.fetchrow(
        """UPDATE users SET status = 'active', updated_at = $2
           WHERE id = $1 AND status = 'disabled' AND role <> 'owner' RETURNING *""",
        user_id,
        now,
    )
    return None if row is None else user_from_row(row)


def _key(user_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(user_id)
    except ValueError:
        return None


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
        return await self._db.run(session_row, token_hash, now)

    async def delete_session(self, token_hash: str) -> bool:
        return await self._db.run(_delete_session, token_hash)

    async def invite(self, email: str, role: Role, now: int) -> User | None:
        """A new invited user (display name = email); None when the email is taken."""
        return await self._db.run(_invite, email, role, now)

    async def get(self, user_id: str) -> User | None:
        """A user by id; None for an unknown id or one that is not a UUID."""
        key = _key(user_id)
        return None if key is None else await self._db.run(_get, key)

    async def page(
        self, *, q: str | None, sort: str, descending: bool, limit: int, offset: int
    ) -> tuple[list[User], int]:
        """Users matching ``q`` (case-insensitive substring of email, name, role, status)."""
        return await self._db.run(_page, q, sort, descending, limit, offset)

    async def set_role(self, user_id: str, role: Role, now: int) -> User | None:
        """Change a (non-owner) user's role; None if there is no such user."""
        key = _key(user_id)
        return None if key is None else await self._db.run(_set_role, key, role, now)

    async def disable(self, user_id: str, now: int) -> User | None:
        """Atomically: status ``disabled``, every API token revoked, every session deleted."""
        key = _key(user_id)
        return None if key is None else await self._db.transaction(_disable, key, now)

    async def enable(self, user_id: str, now: int) -> User | None:
        """A disabled (non-owner) user made active again; None if it was not disabled."""
        key = _key(user_id)
        return None if key is None else await self._db.run(_enable, key, now)
