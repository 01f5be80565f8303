"""SQL for runners, their heartbeats and runner enrollment tokens."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from oore.domain.ids import new_id
from oore.domain.runners import Runner, RunnerStatus
from oore.errors import Conflict, Unauthorized
from oore.store.database import Connection, Database
from oore.store.projects import as_uuid, like_pattern


def runner_from_row(row: Any) -> Runner:
    return Runner(
        id=str(row["id"]),
        name=row["name"],
        status=RunnerStatus(row["status"]),
        capabilities=row["capabilities"],
        labels=tuple(row["labels"]),
        max_concurrent=row["max_concurrent"],
        draining=row["draining"],
        last_heartbeat_at=row["last_heartbeat_at"],
        registered_by=str(row["registered_by"]) if row["registered_by"] else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        current_builds=tuple(row.get("current_builds") or ()),
    )


# The builds a runner holds now: only assigned and running builds name their runner.
_CURRENT_BUILDS = """ARRAY(SELECT b.id::text FROM builds b WHERE b.runner_id = runners.id
    ORDER BY b.queued_at, b.seq) AS current_builds"""


@dataclass(frozen=True)
class NewRunner:
    name: str
    capabilities: Any
    labels: tuple[str, ...]
    max_concurrent: int
    token_hash: str
    registered_by: str | None
    enrollment_token_hash: str | None
    now: int


async def _register(conn: Connection, new: NewRunner) -> Runner:
    labels = list(new.labels)
    enrollment_id = None
    if new.enrollment_token_hash is not None:
        token = await conn.fetchrow(
            """UPDATE runner_enrollment_tokens SET uses = uses + 1
               WHERE token_hash = $1 AND revoked_at IS NULL
                 AND (expires_at IS NULL OR expires_at > $2)
                 AND (max_uses IS NULL OR uses < max_uses)
               RETURNING id, labels""",
            new.enrollment_token_hash,
            new.now,
        )
        if token is None:
            raise Unauthorized(
                "invalid_session",
                "Not a valid session or runner enrollment token"
                " (unknown, expired, revoked or used up)",
            )
        enrollment_id = token["id"]
        labels = sorted(set(labels) | set(token["labels"]))
    row = await conn.fetchrow(
        """INSERT INTO runners (id, name, status, capabilities, labels, max_concurrent,
               token_hash, registered_by, enrollment_token_id, created_at, updated_at)
           VALUES ($1, $2, 'offline', $3, $4, $5, $6, $7, $8, $9, $9) RETURNING *""",
        new_id(),
        new.name,
        new.capabilities,
        labels,
        new.max_concurrent,
        new.token_hash,
        new.registered_by,
        enrollment_id,
        new.now,
    )
    return runner_from_row(row)


async def _by_token(conn: Connection, token_hash: str) -> Runner | None:
    row = await conn.fetchrow("SELECT * FROM runners WHERE token_hash = $1", token_hash)
    return None if row is None else runner_from_row(row)


async def _get(conn: Connection, runner_id: uuid.UUID) -> Runner | None:
    row = await conn.fetchrow(f"SELECT *, {_CURRENT_BUILDS} FROM runners WHERE id = $1", runner_id)
    return None if row is None else runner_from_row(row)


_SORTS = {
    "name": "name",
    "status": "status",
    "last_heartbeat_at": "last_heartbeat_at",
    "created_at": "created_at",
}


async def _list(
    conn: Connection, q: str | None, sort: str, descending: bool, limit: int, offset: int
) -> tuple[list[Runner], int, int]:
    condition = "true" if q is None else "name ILIKE $3"
    args: list[Any] = [limit, offset] + ([] if q is None else [like_pattern(q)])
    direction = "DESC" if descending else "ASC"
    rows = await conn.fetch(
        f"""SELECT *, {_CURRENT_BUILDS} FROM runners WHERE {condition}
            ORDER BY {_SORTS[sort]} {direction} NULLS LAST, id {direction}
            LIMIT $1 OFFSET $2""",
        *args,
    )
    counts = await conn.fetchrow(
        f"""SELECT count(*) AS total,
                   count(*) FILTER (WHERE status IN ('online', 'busy')) AS online
            FROM runners WHERE {condition.replace("$3", "$1")}""",
        *args[2:],
    )
    return [runner_from_row(row) for row in rows], counts["total"], counts["online"]


@dataclass(frozen=True)
class RunnerChanges:
    """What a user may change on a runner; None leaves a field as it is."""

    name: str | None = None
    labels: tuple[str, ...] | None = None
    max_concurrent: int | None = None
    draining: bool | None = None


async def _update(
    conn: Connection, runner_id: uuid.UUID, changes: RunnerChanges, now: int
) -> tuple[Runner, Runner] | None:
    before = await conn.fetchrow("SELECT * FROM runners WHERE id = $1 FOR UPDATE", runner_id)
    if before is None:
        return None
    row = await conn.fetchrow(
        f"""UPDATE runners SET name = COALESCE($2, name), labels = COALESCE($3, labels),
               max_concurrent = COALESCE($4, max_concurrent),
               draining = COALESCE($5, draining), updated_at = $6
           WHERE id = $1 RETURNING *, {_CURRENT_BUILDS}""",
        runner_id,
        changes.name,
        None if changes.labels is None else list(changes.labels),
        changes.max_concurrent,
        changes.draining,
        now,
    )
    return runner_from_row(before), runner_from_row(row)


@dataclass(frozen=True)
class Heartbeat:
    runner_id: str
    status: RunnerStatus
    capabilities: Any
    at: int


async def _commit_heartbeats(conn: Connection, beats: list[Heartbeat]) -> None:
    latest: dict[str, Heartbeat] = {}
    for beat in beats:
        latest[beat.runner_id] = beat
    await conn.execute(
        """UPDATE runners r SET status = h.status, last_heartbeat_at = h.at, updated_at = h.at,
               capabilities = COALESCE(h.capabilities, r.capabilities)
           FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::bigint[])
                AS h(id, status, capabilities, at)
           WHERE r.id = h.id""",
        [b.runner_id for b in latest.values()],
        [b.status.value for b in latest.values()],
        [b.capabilities if b.capabilities else None for b in latest.values()],
        [b.at for b in latest.values()],
    )


async def _touch(conn: Connection, seen: Sequence[tuple[str, int]]) -> None:
    await conn.execute(
        """UPDATE runners r SET last_heartbeat_at = s.at
           FROM unnest($1::uuid[], $2::bigint[]) AS s(id, at)
           WHERE r.id = s.id AND (r.last_heartbeat_at IS NULL OR r.last_heartbeat_at < s.at)""",
        [runner_id for runner_id, _ in seen],
        [at for _, at in seen],
    )


async def _online_holding(
    conn: Connection, since: int, needs: list[frozenset[str]]
) -> dict[frozenset[str], bool]:
    # One EXISTS per label set: it stops at the first runner found, where collecting the
    # label sets of a large fleet would read every row.
    held = {}
    for need in needs:
        held[need] = await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM runners
                   WHERE status IN ('online', 'busy') AND NOT draining
                     AND last_heartbeat_at >= $1 AND labels @> $2::text[])""",
            since,
            sorted(need),
        )
    return held


async def _online_holding_by_os(
    conn: Connection, since: int, needs: list[frozenset[str]], macos: list[str]
) -> dict[frozenset[str], tuple[bool, bool]]:
    held = {}
    for need in needs:
        row = await conn.fetchrow(
            """WITH r AS (SELECT capabilities FROM runners
                          WHERE status IN ('online', 'busy') AND NOT draining
                            AND last_heartbeat_at >= $1 AND labels @> $2::text[])
               SELECT EXISTS (SELECT 1 FROM r WHERE lower(btrim(capabilities->>'os')) = ANY($3))
                          AS macos,
                      EXISTS (SELECT 1 FROM r
                              WHERE lower(btrim(capabilities->>'os')) = ANY($3) IS NOT TRUE)
                          AS other""",
            since,
            sorted(need),
            macos,
        )
        held[need] = (row["macos"], row["other"])
    return held


async def _last_seen(conn: Connection, runner_id: str) -> Any:
    return await conn.fetchval("SELECT last_heartbeat_at FROM runners WHERE id = $1", runner_id)


async def _overdue(conn: Connection, since: int) -> list[str]:
    rows = await conn.fetch(
        """SELECT r.id FROM runners r
           WHERE r.last_heartbeat_at < $1
             AND (r.status <> 'offline'
                  OR EXISTS (SELECT 1 FROM builds b WHERE b.runner_id = r.id))""",
        since,
    )
    return [str(row["id"]) for row in rows]


async def _mark_offline(conn: Connection, runner_id: str, now: int) -> None:
    await conn.execute(
        "UPDATE runners SET status = 'offline', updated_at = $2 WHERE id = $1", runner_id, now
    )


async def _delete(conn: Connection, runner_id: uuid.UUID) -> bool:
    # The lock waits for claims being committed to this runner, so none slips past.
    if await conn.fetchval("SELECT true FROM runners WHERE id = $1 FOR UPDATE", runner_id) is None:
        return False
    held = await conn.fetch(
        "SELECT id FROM builds WHERE runner_id = $1 ORDER BY queued_at, seq", runner_id
    )
    if held:
        ids = ", ".join(str(row["id"]) for row in held)
        raise Conflict(
            "runner_has_builds",
            f"The runner is busy with builds {ids}: drain it and let them finish (or cancel"
            " them), then delete it",
        )
    await conn.execute("DELETE FROM runners WHERE id = $1", runner_id)
    return True


@dataclass(frozen=True)
class EnrollmentToken:
    id: str
    label: str
    labels: tuple[str, ...]
    max_uses: int | None
    uses: int
    expires_at: int | None
    revoked_at: int | None
    created_by: str | None
    created_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "labels": list(self.labels),
            "max_uses": self.max_uses,
            "uses": self.uses,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "created_by": self.created_by,
            "created_at": self.created_at,
        }


def _enrollment_from_row(row: Any) -> EnrollmentToken:
    return EnrollmentToken(
        id=str(row["id"]),
        label=row["label"],
        labels=tuple(row["labels"]),
        max_uses=row["max_uses"],
        uses=row["uses"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        created_by=str(row["created_by"]) if row["created_by"] else None,
        created_at=row["created_at"],
    )


async def _create_enrollment(
    conn: Connection,
    label: str,
    labels: tuple[str, ...],
    token_hash: str,
    max_uses: int | None,
    expires_at: int | None,
    created_by: str,
    now: int,
) -> EnrollmentToken:
    row = await conn.fetchrow(
        """INSERT INTO runner_enrollment_tokens (id, label, labels, token_hash, max_uses,
               expires_at, created_by, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *""",
        new_id(),
        label,
        list(labels),
        token_hash,
        max_uses,
        expires_at,
        created_by,
        now,
    )
    return _enrollment_from_row(row)


async def _list_enrollment(conn: Connection) -> list[EnrollmentToken]:
    rows = await conn.fetch("SELECT * FROM runner_enrollment_tokens ORDER BY created_at DESC, id")
    return [_enrollment_from_row(row) for row in rows]


async def _revoke_enrollment(
    conn: Connection, token_id: uuid.UUID, now: int
) -> EnrollmentToken | None:
    row = await conn.fetchrow(
        """UPDATE runner_enrollment_tokens SET revoked_at = COALESCE(revoked_at, $2)
           WHERE id = $1 RETURNING *""",
        token_id,
        now,
    )
    return None if row is None else _enrollment_from_row(row)


async def _by_state(conn: Connection) -> dict[str, int]:
    rows = await conn.fetch(
        """SELECT CASE WHEN draining AND status <> 'offline' THEN 'draining' ELSE status END
                  AS state, count(*) AS n
           FROM runners GROUP BY 1"""
    )
    return {row["state"]: row["n"] for row in rows}


class RunnerStore:
    """Runners and enrollment tokens."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def register(self, new: NewRunner) -> Runner:
        """Insert a runner (``offline``); with an enrollment token, consume one use of it."""
        return await self._db.transaction(_register, new)

    async def by_token(self, token_hash: str) -> Runner | None:
        return await self._db.run(_by_token, token_hash)

    async def get(self, runner_id: str) -> Runner | None:
        key = as_uuid(runner_id)
        return None if key is None else await self._db.run(_get, key)

    async def page(
        self, *, q: str | None, sort: str, descending: bool, limit: int, offset: int
    ) -> tuple[list[Runner], int, int]:
        """A page of runners, the total, and how many are online or busy."""
        return await self._db.run(_list, q, sort, descending, limit, offset)

    async def update(
        self, runner_id: str, changes: RunnerChanges, now: int
    ) -> tuple[Runner, Runner] | None:
        """Apply changes; (before, after), or None if there is no such runner."""
        key = as_uuid(runner_id)
        return None if key is None else await self._db.transaction(_update, key, changes, now)

    async def commit_heartbeats(self, beats: list[Heartbeat]) -> None:
        """The heartbeat group-commit target: the latest beat of each runner wins."""
        await self._db.transaction(_commit_heartbeats, beats)

    async def touch(self, seen: Sequence[tuple[str, int]]) -> None:
        """Record when runners were last heard from: (runner id, Unix time), one statement;
        a time never goes back."""
        if seen:
            await self._db.run(_touch, seen)

    async def by_state(self) -> dict[str, int]:
        """Runners per state: their status, ``draining`` for a live one told to drain."""
        return await self._db.run(_by_state)

    async def online_holding(
        self, since: int, needs: list[frozenset[str]]
    ) -> dict[frozenset[str], bool]:
        """For each label set, whether an online or busy, non-draining runner heard from
        since ``since`` has all of those labels (the empty set: whether any is online)."""
        return await self._db.run(_online_holding, since, needs)

    async def online_holding_by_os(
        self, since: int, needs: list[frozenset[str]], macos: list[str]
    ) -> dict[frozenset[str], tuple[bool, bool]]:
        """Like :meth:`online_holding`, told apart: (a direct macOS runner has them, another
        runner has them), a runner being a macOS one when its ``capabilities.os`` is one
        of ``macos`` (lower case)."""
        return await self._db.run(_online_holding_by_os, since, needs, macos)

    async def last_seen(self, runner_id: str) -> int | None:
        """When the runner was last heard from, as written (by any daemon)."""
        return await self._db.run(_last_seen, runner_id)

    async def overdue(self, since: int) -> list[str]:
        """Runners last heard from before ``since`` that are not offline or still hold
        builds: their lease has run out wherever they were connected."""
        return await self._db.run(_overdue, since)

    async def mark_offline(self, runner_id: str, now: int) -> None:
        await self._db.run(_mark_offline, runner_id, now)

    async def delete(self, runner_id: str) -> bool:
        """Delete a runner; 409 ``runner_has_builds`` while it holds builds.

        Builds it ran keep its id and name (``last_runner_id``, ``last_runner_name``).
        """
        key = as_uuid(runner_id)
        return False if key is None else await self._db.transaction(_delete, key)

    async def create_enrollment_token(
        self,
        *,
        label: str,
        labels: tuple[str, ...],
        token_hash: str,
        max_uses: int | None,
        expires_at: int | None,
        created_by: str,
        now: int,
    ) -> EnrollmentToken:
        return await self._db.run(
            _create_enrollment, label, labels, token_hash, max_uses, expires_at, created_by, now
        )

    async def enrollment_tokens(self) -> list[EnrollmentToken]:
        return await self._db.run(_list_enrollment)

    async def revoke_enrollment_token(self, token_id: str, now: int) -> EnrollmentToken | None:
        key = as_uuid(token_id)
        return None if key is None else await self._db.run(_revoke_enrollment, key, now)
