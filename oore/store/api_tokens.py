"""SQL for personal API tokens (table ``api_tokens``, migration 0006)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from oore.domain.api_tokens import ApiToken
from oore.domain.ids import new_id
from oore.domain.users import Role, Session, User
from oore.store.database import Connection, Database
from oore.store.projects import as_uuid
from oore.store.users import USER_COLUMNS, session_row, user_from_row

# last_used_at is written at most this often per token, so a busy token costs no write
# per request.
TOUCH_EVERY = 60


def _token(row: Any, prefix: str = "") -> ApiToken:
    return ApiToken(
        id=str(row[prefix + "id"]),
        user_id=str(row[prefix + "user_id"]),
        name=row[prefix + "name"],
        prefix=row[prefix + "prefix"],
        role=Role(row[prefix + "role"]),
        created_at=row[prefix + "created_at"],
        expires_at=row[prefix + "expires_at"],
        revoked_at=row[prefix + "revoked_at"],
        last_used_at=row[prefix + "last_used_at"],
    )


_TOKEN_COLUMNS = (
    "t.id AS t_id, t.user_id AS t_user_id, t.name AS t_name, t.prefix AS t_prefix,"
    " t.role AS t_role, t.created_at AS t_created_at, t.expires_at AS t_expires_at,"
    " t.revoked_at AS t_revoked_at, t.last_used_at AS t_last_used_at"
)


@dataclass(frozen=True)
class NewApiToken:
    user_id: str
    name: str
    prefix: str
    token_hash: str
    role: Role
    expires_at: int | None
    now: int


async def _create(conn: Connection, new: NewApiToken) -> ApiToken:
    row = await conn.fetchrow(
        """INSERT INTO api_tokens (id, user_id, name, prefix, token_hash, role, created_at,
                                   expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *""",
        uuid.UUID(new_id()),
        uuid.UUID(new.user_id),
        new.name,
        new.prefix,
        new.token_hash,
        new.role.value,
        new.now,
        new.expires_at,
    )
    return _token(row)


async def _holder(
    conn: Connection, token_hash: str, now: int, touch: bool
) -> tuple[ApiToken, User] | None:
    """The live token with this hash and its creator; touches last_used_at (throttled)."""
    row = await conn.fetchrow(
        f"""SELECT {_TOKEN_COLUMNS}, {USER_COLUMNS}
            FROM api_tokens t JOIN users u ON u.id = t.user_id
            WHERE t.token_hash = $1 AND t.revoked_at IS NULL
              AND (t.expires_at IS NULL OR t.expires_at > $2) AND u.status = 'active'""",
        token_hash,
        now,
    )
    if row is None:
        return None
    token = _token(row, "t_")
    if touch and (token.last_used_at is None or token.last_used_at <= now - TOUCH_EVERY):
        await conn.execute(
            "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1", row["t_id"], now
        )
    return token, user_from_row(row, "u_")


async def _credential(
    conn: Connection, token_hash: str, now: int
) -> Session | tuple[ApiToken, User] | None:
    session = await session_row(conn, token_hash, now)
    if session is not None:
        return session
    return await _holder(conn, token_hash, now, True)


async def _list(
    conn: Connection, user_id: uuid.UUID | None, limit: int, offset: int
) -> tuple[list[ApiToken], int]:
    condition = "revoked_at IS NULL" + ("" if user_id is None else " AND user_id = $3")
    args: list[Any] = [limit, offset] + ([] if user_id is None else [user_id])
    rows = await conn.fetch(
        f"""SELECT * FROM api_tokens WHERE {condition}
            ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2""",
        *args,
    )
    total = await conn.fetchval(
        f"SELECT count(*) FROM api_tokens WHERE {condition.replace('$3', '$1')}", *args[2:]
    )
    return [_token(row) for row in rows], total


async def _get(conn: Connection, token_id: uuid.UUID) -> ApiToken | None:
    row = await conn.fetchrow(
        "SELECT * FROM api_tokens WHERE id = $1 AND revoked_at IS NULL", token_id
    )
    return None if row is None else _token(row)


async def _revoke(conn: Connection, token_id: uuid.UUID, now: int) -> bool:
    revoked = await conn.fetchval(
        """UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL
           RETURNING true""",
        token_id,
        now,
    )
    return revoked is True


class ApiTokenStore:
    """Personal API tokens, kept only as SHA-256 hashes."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, new: NewApiToken) -> ApiToken:
        return await self._db.run(_create, new)

    async def holder(
        self, token_hash: str, now: int, *, touch: bool = True
    ) -> tuple[ApiToken, User] | None:
        """The unrevoked, unexpired token with this hash whose creator is active."""
        return await self._db.run(_holder, token_hash, now, touch)

    async def credential(self, token_hash: str, now: int) -> Session | tuple[ApiToken, User] | None:
        """The live user session with this hash, else the live API token (touched, as
        :meth:`holder` does) and its creator: both looked up in one database call."""
        return await self._db.run(_credential, token_hash, now)

    async def page(
        self, user_id: str | None, *, limit: int, offset: int
    ) -> tuple[list[ApiToken], int]:
        """Unrevoked tokens, newest first: one user's, or everyone's with None."""
        key = None if user_id is None else as_uuid(user_id)
        if user_id is not None and key is None:
            return [], 0
        return await self._db.run(_list, key, limit, offset)

    async def get(self, token_id: str) -> ApiToken | None:
        """An unrevoked token by id (None for an unknown or malformed id)."""
        key = as_uuid(token_id)
        return None if key is None else await self._db.run(_get, key)

    async def revoke(self, token_id: str, now: int) -> bool:
        key = as_uuid(token_id)
        return key is not None and await self._db.run(_revoke, key, now)
