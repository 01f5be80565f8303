"""SQL for webhook deliveries: who may sign them, the durable queue, and build claims."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from oore.domain.ids import new_id
from oore.domain.projects import Pipeline, Project
from oore.domain.webhooks import LEASE_SECONDS, MAX_ATTEMPTS, RETRY_SECONDS, Provider
from oore.errors import StoreError
from oore.store.database import Connection, Database
from oore.store.pipelines import pipeline_from_row
from oore.store.projects import PROJECT_COLUMNS, PROJECT_FROM, project_from_row


@dataclass(frozen=True)
class SigningSecret:
    """An encrypted secret that may sign deliveries for an integration."""

    integration_id: str
    secret_enc: str


@dataclass(frozen=True)
class NewDelivery:
    provider: Provider
    integration_id: str
    delivery_key: str
    event: str
    payload: Any
    now: int


@dataclass(frozen=True)
class Delivery:
    id: str
    provider: Provider
    integration_id: str
    delivery_key: str
    event: str
    payload: Any
    status: str
    attempts: int
    processing_error: str | None
    received_at: int
    processed_at: int | None


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=str(row["id"]),
        provider=Provider(row["provider"]),
        integration_id=str(row["integration_id"]),
        delivery_key=row["delivery_key"],
        event=row["event"],
        payload=row["payload"],
        status=row["status"],
        attempts=row["attempts"],
        processing_error=row["processing_error"],
        received_at=row["received_at"],
        processed_at=row["processed_at"],
    )


async def _github_secrets(conn: Connection) -> list[SigningSecret]:
    rows = await conn.fetch(
        """SELECT id, webhook_secret_enc FROM integrations
           WHERE provider = 'github' AND status = 'active' AND webhook_secret_enc IS NOT NULL
           ORDER BY created_at, id"""
    )
    return [SigningSecret(str(row["id"]), row["webhook_secret_enc"]) for row in rows]


async def _gitlab_secrets(conn: Connection, external_id: str) -> list[SigningSecret]:
    rows = await conn.fetch(
        """SELECT i.id, r.webhook_secret_enc
           FROM repositories r
           JOIN integration_installations n ON n.id = r.installation_id
           JOIN integrations i ON i.id = n.integration_id
           WHERE r.external_id = $1 AND r.webhook_secret_enc IS NOT NULL
             AND i.provider = 'gitlab' AND i.status = 'active'
           ORDER BY i.created_at, i.id""",
        external_id,
    )
    return [SigningSecret(str(row["id"]), row["webhook_secret_enc"]) for row in rows]


async def _known(conn: Connection, integration_id: uuid.UUID, key: str) -> bool:
    found = await conn.fetchval(
        "SELECT true FROM webhook_deliveries WHERE integration_id = $1 AND delivery_key = $2",
        integration_id,
        key,
    )
    return bool(found)


async def _insert(conn: Connection, new: NewDelivery) -> str | None:
    delivery_id = await conn.fetchval(
        """INSERT INTO webhook_deliveries (id, provider, integration_id, delivery_key, event,
               payload, status, next_attempt_at, received_at)
           VALUES ($1, $2, $3, $4, $5, $6, 'received', $7, $7)
           ON CONFLICT (integration_id, delivery_key) DO NOTHING
           RETURNING id""",
        new_id(),
        new.provider.value,
        uuid.UUID(new.integration_id),
        new.delivery_key,
        new.event,
        new.payload,
        new.now,
    )
    await conn.execute(
        "UPDATE integrations SET last_webhook_at = $2 WHERE id = $1",
        uuid.UUID(new.integration_id),
        new.now,
    )
    return None if delivery_id is None else str(delivery_id)


async def _lease(conn: Connection, now: int, limit: int) -> list[Delivery]:
    # A row is due when it is new or waiting for a retry, or when its lease ran out.
    rows = await conn.fetch(
        """SELECT id, attempts FROM webhook_deliveries
           WHERE status IN ('received', 'processing') AND next_attempt_at <= $1
           ORDER BY next_attempt_at, received_at
           LIMIT $2
           FOR UPDATE SKIP LOCKED""",
        now,
        limit,
    )
    spent = [row["id"] for row in rows if row["attempts"] >= MAX_ATTEMPTS]
    if spent:
        await conn.execute(
            """UPDATE webhook_deliveries
               SET status = 'failed', lease_expires_at = NULL, processed_at = $2,
                   processing_error = coalesce(processing_error, 'processing did not finish')
               WHERE id = ANY($1::uuid[])""",
            spent,
            now,
        )
    due = [row["id"] for row in rows if row["attempts"] < MAX_ATTEMPTS]
    if not due:
        return []
    leased = await conn.fetch(
        """UPDATE webhook_deliveries
           SET status = 'processing', attempts = attempts + 1,
               lease_expires_at = $2, next_attempt_at = $2
           WHERE id = ANY($1::uuid[])
           RETURNING *""",
        due,
        now + LEASE_SECONDS,
    )
    return sorted((_delivery(row) for row in leased), key=lambda d: d.received_at)


async def _finish(
    conn: Connection, delivery_id: uuid.UUID, status: str, reason: str | None, now: int
) -> None:
    await conn.execute(
        """UPDATE webhook_deliveries
           SET status = $2, processing_error = $3, processed_at = $4, lease_expires_at = NULL
           WHERE id = $1""",
        delivery_id,
        status,
        reason,
        now,
    )


async def _retry(conn: Connection, delivery_id: uuid.UUID, error: str, now: int) -> str:
    status: str = await conn.fetchval(
        """UPDATE webhook_deliveries
           SET status = CASE WHEN attempts >= $4 THEN 'failed' ELSE 'received' END,
               processed_at = CASE WHEN attempts >= $4 THEN $3 ELSE NULL END,
               next_attempt_at = $3 + $5, lease_expires_at = NULL, processing_error = $2
           WHERE id = $1
           RETURNING status""",
        delivery_id,
        error,
        now,
        MAX_ATTEMPTS,
        RETRY_SECONDS,
    )
    return status


async def _next_due(conn: Connection) -> int | None:
    found: int | None = await conn.fetchval(
        """SELECT min(next_attempt_at) FROM webhook_deliveries
           WHERE status IN ('received', 'processing')"""
    )
    return found


async def _targets(
    conn: Connection,
    integration_id: uuid.UUID,
    full_name: str | None,
    external_id: str | None,
) -> list[tuple[Project, list[Pipeline]]]:
    """Projects linked to the event's repository under the integration, with enabled pipelines."""
    rows = await conn.fetch(
        f"""SELECT {PROJECT_COLUMNS} FROM {PROJECT_FROM}
            JOIN integration_installations n ON n.id = r.installation_id
            WHERE n.integration_id = $1
              AND ($2::text IS NULL OR r.full_name = $2)
              AND ($3::text IS NULL OR r.external_id = $3)
            ORDER BY p.created_at, p.id""",
        integration_id,
        full_name,
        external_id,
    )
    found: list[tuple[Project, list[Pipeline]]] = []
    for row in rows:
        pipelines = await conn.fetch(
            """SELECT * FROM pipelines WHERE project_id = $1 AND enabled
               ORDER BY created_at, id""",
            row["id"],
        )
        found.append((project_from_row(row), [pipeline_from_row(p) for p in pipelines]))
    return found


async def _claim(
    conn: Connection, delivery_id: uuid.UUID, pipeline_id: uuid.UUID, now: int
) -> bool:
    claimed = await conn.fetchval(
        """INSERT INTO webhook_build_claims (delivery_id, pipeline_id, created_at)
           VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING true""",
        delivery_id,
        pipeline_id,
        now,
    )
    return bool(claimed)


async def _claimed(
    conn: Connection, delivery_id: uuid.UUID, pipeline_id: uuid.UUID, build_id: uuid.UUID | None
) -> None:
    if build_id is None:
        await conn.execute(
            "DELETE FROM webhook_build_claims WHERE delivery_id = $1 AND pipeline_id = $2",
            delivery_id,
            pipeline_id,
        )
    else:
        await conn.execute(
            """UPDATE webhook_build_claims SET build_id = $3
               WHERE delivery_id = $1 AND pipeline_id = $2""",
            delivery_id,
            pipeline_id,
            build_id,
        )


async def _get(conn: Connection, delivery_id: uuid.UUID) -> Delivery | None:
    row = await conn.fetchrow("SELECT * FROM webhook_deliveries WHERE id = $1", delivery_id)
    return None if row is None else _delivery(row)


async def _of_integration(conn: Connection, integration_id: uuid.UUID) -> list[Delivery]:
    rows = await conn.fetch(
        """SELECT * FROM webhook_deliveries WHERE integration_id = $1
           ORDER BY received_at DESC, id""",
        integration_id,
    )
    return [_delivery(row) for row in rows]


class WebhookStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def github_secrets(self) -> list[SigningSecret]:
        """Webhook secrets of the active GitHub integrations."""
        return await self._db.run(_github_secrets)

    async def gitlab_secrets(self, external_id: str) -> list[SigningSecret]:
        """Per-repository secrets of the GitLab repository ``external_id`` (active only)."""
        return await self._db.run(_gitlab_secrets, external_id)

    async def known(self, integration_id: str, delivery_key: str) -> bool:
        return await self._db.run(_known, uuid.UUID(integration_id), delivery_key)

    async def insert(self, new: NewDelivery) -> str | None:
        """Store a received delivery; None when its key was seen before (a duplicate)."""
        return await self._db.transaction(_insert, new)

    async def insert_unkeyed(self, new: NewDelivery) -> str:
        """Store a delivery with no id: a second one breaks the unique key (500 store_error)."""
        found = await self._db.transaction(_insert, new)
        if found is None:
            raise StoreError()
        return found

    async def lease(self, now: int, limit: int = 50) -> list[Delivery]:
        """Take due deliveries for processing (attempts + 1, leased for five minutes)."""
        return await self._db.transaction(_lease, now, limit)

    async def finish(self, delivery_id: str, status: str, reason: str | None, now: int) -> None:
        """Record a final outcome: processed, or ignored with its reason."""
        await self._db.run(_finish, uuid.UUID(delivery_id), status, reason, now)

    async def retry(self, delivery_id: str, error: str, now: int) -> str:
        """Record a failed attempt: retried after 30 s, or failed after the fifth."""
        return await self._db.run(_retry, uuid.UUID(delivery_id), error, now)

    async def next_due(self) -> int | None:
        """Wall-clock time the next delivery falls due, or None when none waits."""
        return await self._db.run(_next_due)

    async def targets(
        self, integration_id: str, full_name: str | None, external_id: str | None
    ) -> list[tuple[Project, list[Pipeline]]]:
        if full_name is None and external_id is None:
            return []
        return await self._db.run(_targets, uuid.UUID(integration_id), full_name, external_id)

    async def claim(self, delivery_id: str, pipeline_id: str, now: int) -> bool:
        """Claim the (delivery, pipeline) build; False when it was claimed before."""
        return await self._db.run(_claim, uuid.UUID(delivery_id), uuid.UUID(pipeline_id), now)

    async def settle_claim(self, delivery_id: str, pipeline_id: str, build_id: str | None) -> None:
        """Record the claim's build, or give the claim back (None) so a retry may build."""
        build = None if build_id is None else uuid.UUID(build_id)
        await self._db.run(_claimed, uuid.UUID(delivery_id), uuid.UUID(pipeline_id), build)

    async def get(self, delivery_id: str) -> Delivery | None:
        return await self._db.run(_get, uuid.UUID(delivery_id))

    async def of_integration(self, integration_id: str) -> list[Delivery]:
        return await self._db.run(_of_integration, uuid.UUID(integration_id))
