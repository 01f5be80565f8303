"""SQL for notification channels and their delivery queue (migration 0019).

Deliveries of build outcomes are inserted by the database itself, in the transaction that
ends a build; this module reads and works them off: :meth:`NotificationStore.lease` takes
due rows with ``FOR UPDATE SKIP LOCKED`` so daemons sharing the database never send one
twice at the same time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from oore.domain.ids import new_id
from oore.domain.notifications import (
    LEASE_SECONDS,
    RECENT_DELIVERIES,
    Channel,
    ChannelKind,
    Delivery,
    DeliveryStatus,
    EmailSettings,
    NotificationEvent,
)
from oore.store.database import Connection, Database
from oore.store.projects import as_uuid


@dataclass(frozen=True)
class StoredChannel:
    """Every column of a channel, as written (secrets already encrypted)."""

    name: str
    kind: ChannelKind
    enabled: bool
    events: tuple[NotificationEvent, ...]
    project_ids: tuple[str, ...]
    url_enc: str | None
    url_host: str | None
    secret_enc: str | None
    email: EmailSettings | None
    smtp_password_enc: str | None


def _channel(row: Any) -> Channel:
    email = row["email"]
    return Channel(
        id=str(row["id"]),
        name=row["name"],
        kind=ChannelKind(row["kind"]),
        enabled=row["enabled"],
        events=tuple(NotificationEvent(e) for e in row["events"]),
        project_ids=tuple(str(p) for p in row["project_ids"]),
        url_enc=row["url_enc"],
        url_host=row["url_host"],
        secret_enc=row["secret_enc"],
        email=None if email is None else EmailSettings.from_stored(email),
        smtp_password_enc=row["smtp_password_enc"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=str(row["id"]),
        channel_id=str(row["channel_id"]),
        event=row["event"],
        build_id=None if row["build_id"] is None else str(row["build_id"]),
        build=row["build"],
        previous_status=row["previous_status"],
        status=DeliveryStatus(row["status"]),
        attempts=row["attempts"],
        last_error=row["last_error"],
        next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
    )


def _columns(channel: StoredChannel) -> tuple[Any, ...]:
    return (
        channel.name,
        channel.kind.value,
        channel.enabled,
        [e.value for e in channel.events],
        [uuid.UUID(p) for p in channel.project_ids],
        channel.url_enc,
        channel.url_host,
        channel.secret_enc,
        None if channel.email is None else channel.email.to_stored(),
        channel.smtp_password_enc,
    )


async def _insert(
    conn: Connection, channel: StoredChannel, created_by: str | None, now: int
) -> Channel:
    row = await conn.fetchrow(
        """INSERT INTO notification_channels (id, name, kind, enabled, events, project_ids,
               url_enc, url_host, secret_enc, email, smtp_password_enc, created_by,
               created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)
           RETURNING *""",
        uuid.UUID(new_id()),
        *_columns(channel),
        None if created_by is None else uuid.UUID(created_by),
        now,
    )
    return _channel(row)


async def _update(
    conn: Connection, channel_id: uuid.UUID, channel: StoredChannel, now: int
) -> Channel | None:
    row = await conn.fetchrow(
        """UPDATE notification_channels
           SET name = $2, kind = $3, enabled = $4, events = $5, project_ids = $6,
               url_enc = $7, url_host = $8, secret_enc = $9, email = $10,
               smtp_password_enc = $11, updated_at = $12
           WHERE id = $1
           RETURNING *""",
        channel_id,
        *_columns(channel),
        now,
    )
    return None if row is None else _channel(row)


async def _get(conn: Connection, channel_id: uuid.UUID) -> Channel | None:
    row = await conn.fetchrow("SELECT * FROM notification_channels WHERE id = $1", channel_id)
    return None if row is None else _channel(row)


async def _all(conn: Connection) -> list[Channel]:
    rows = await conn.fetch("SELECT * FROM notification_channels ORDER BY created_at, id")
    return [_channel(row) for row in rows]


async def _delete(conn: Connection, channel_id: uuid.UUID) -> Channel | None:
    row = await conn.fetchrow(
        "DELETE FROM notification_channels WHERE id = $1 RETURNING *", channel_id
    )
    return None if row is None else _channel(row)


async def _queue_test(conn: Connection, channel_id: uuid.UUID, now: int) -> Delivery:
    row = await conn.fetchrow(
        """INSERT INTO notification_deliveries (id, channel_id, event, status,
               next_attempt_at, created_at)
           VALUES ($1, $2, 'test', 'pending', $3, $3)
           RETURNING *""",
        uuid.UUID(new_id()),
        channel_id,
        now,
    )
    return _delivery(row)


async def _of_channel(conn: Connection, channel_id: uuid.UUID, limit: int) -> list[Delivery]:
    rows = await conn.fetch(
        """SELECT * FROM notification_deliveries WHERE channel_id = $1
           ORDER BY seq DESC LIMIT $2""",
        channel_id,
        limit,
    )
    return [_delivery(row) for row in rows]


async def _lease(conn: Connection, now: int, limit: int) -> list[Delivery]:
    # Due: pending and its time has come, or sending and its sender's lease ran out.
    rows = await conn.fetch(
        """UPDATE notification_deliveries d
           SET status = 'sending', attempts = d.attempts + 1, next_attempt_at = $1 + $3
           WHERE d.id IN (
               SELECT id FROM notification_deliveries
               WHERE status IN ('pending', 'sending') AND next_attempt_at <= $1
               ORDER BY next_attempt_at, seq
               LIMIT $2
               FOR UPDATE SKIP LOCKED)
           RETURNING d.*""",
        now,
        limit,
        LEASE_SECONDS,
    )
    return [_delivery(row) for row in sorted(rows, key=lambda row: row["seq"])]


async def _sent(conn: Connection, delivery_id: uuid.UUID, now: int) -> None:
    await conn.execute(
        """UPDATE notification_deliveries
           SET status = 'sent', sent_at = $2, last_error = NULL
           WHERE id = $1 AND status = 'sending'""",
        delivery_id,
        now,
    )


async def _failed_attempt(
    conn: Connection, delivery_id: uuid.UUID, error: str, retry_at: int | None
) -> None:
    await conn.execute(
        """UPDATE notification_deliveries
           SET status = CASE WHEN $3::bigint IS NULL THEN 'failed' ELSE 'pending' END,
               next_attempt_at = coalesce($3::bigint, next_attempt_at), last_error = $2
           WHERE id = $1 AND status = 'sending'""",
        delivery_id,
        error,
        retry_at,
    )


async def _backlog(conn: Connection) -> tuple[int, int | None]:
    row = await conn.fetchrow(
        """SELECT count(*) AS waiting, min(next_attempt_at) AS due
           FROM notification_deliveries WHERE status IN ('pending', 'sending')"""
    )
    return row["waiting"], row["due"]


class NotificationStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, channel: StoredChannel, created_by: str | None, now: int) -> Channel:
        return await self._db.run(_insert, channel, created_by, now)

    async def update(self, channel_id: str, channel: StoredChannel, now: int) -> Channel | None:
        key = as_uuid(channel_id)
        return None if key is None else await self._db.run(_update, key, channel, now)

    async def get(self, channel_id: str) -> Channel | None:
        """The channel, or None (also for an id that is not a UUID)."""
        key = as_uuid(channel_id)
        return None if key is None else await self._db.run(_get, key)

    async def all(self) -> list[Channel]:
        return await self._db.run(_all)

    async def delete(self, channel_id: str) -> Channel | None:
        """Delete a channel and its deliveries; the channel as it was, or None."""
        key = as_uuid(channel_id)
        return None if key is None else await self._db.run(_delete, key)

    async def queue_test(self, channel_id: str, now: int) -> Delivery:
        """A test message to the channel, due at once."""
        return await self._db.run(_queue_test, uuid.UUID(channel_id), now)

    async def deliveries(self, channel_id: str, limit: int = RECENT_DELIVERIES) -> list[Delivery]:
        """The channel's most recent deliveries, newest first."""
        return await self._db.run(_of_channel, uuid.UUID(channel_id), limit)

    async def lease(self, now: int, limit: int) -> list[Delivery]:
        """Take due deliveries for sending (attempts + 1, leased for two minutes)."""
        return await self._db.transaction(_lease, now, limit)

    async def sent(self, delivery_id: str, now: int) -> None:
        await self._db.run(_sent, uuid.UUID(delivery_id), now)

    async def failed_attempt(self, delivery_id: str, error: str, retry_at: int | None) -> None:
        """Record a failed attempt: pending again at ``retry_at``, or failed (None)."""
        await self._db.run(_failed_attempt, uuid.UUID(delivery_id), error, retry_at)

    async def backlog(self) -> tuple[int, int | None]:
        """Deliveries not yet sent nor given up, and the wall-clock time the next of them
        falls due (None when none waits)."""
        return await self._db.run(_backlog)
