"""SQL for builds, their events, claims and log lines.

Every status change is a compare-and-set on the current status, in the same transaction
as its event row, so two writers (two oored processes, or a user and a runner) can never
both win one transition.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from oore.domain.builds import (
    TERMINAL,
    Build,
    BuildEvent,
    BuildStatus,
    LiveBuilds,
    QueuedBuild,
    StepResult,
    Transition,
    TriggerType,
    check_transition,
    concurrent_modification,
)
from oore.domain.ids import new_id
from oore.domain.logs import LogLine, LogWrite
from oore.errors import Conflict, NotFound
from oore.store.database import Connection, Database
from oore.store.projects import as_uuid
from oore.store.variables import StoredVariable, variable_from_row

_TERMINAL = [status.value for status in TERMINAL]


def _steps(value: Any) -> tuple[StepResult, ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(
        StepResult(
            name=step["name"],
            status=step["status"],
            started_at=step["started_at"],
            finished_at=step["finished_at"],
            duration_ms=step["duration_ms"],
            exit_code=step.get("exit_code"),
        )
        for step in value
    )


def build_from_row(row: Any) -> Build:
    keys = row.keys()
    context = {
        "project_name": row["project_name"] if "project_name" in keys else None,
        "pipeline_name": row["pipeline_name"] if "pipeline_name" in keys else None,
        "runner_name": row["runner_name"] if "runner_name" in keys else None,
    }
    last_runner_id = row.get("last_runner_id")
    return Build(
        id=str(row["id"]),
        project_id=str(row["project_id"]),
        pipeline_id=str(row["pipeline_id"]),
        build_number=row["build_number"],
        status=BuildStatus(row["status"]),
        trigger_type=TriggerType(row["trigger_type"]),
        trigger_actor=row["trigger_actor"],
        trigger_event=row["trigger_event"],
        trigger_ref=row["trigger_ref"],
        commit_sha=row["commit_sha"],
        branch=row["branch"],
        changelog=row["changelog"],
        source_build_id=str(row["source_build_id"]) if row["source_build_id"] else None,
        config_snapshot=row["config_snapshot"],
        required_labels=tuple(row["required_labels"]),
        runner_id=str(row["runner_id"]) if row["runner_id"] else None,
        step_results=_steps(row["step_results"]),
        exit_code=row["exit_code"],
        attempt=row["attempt"],
        lease_expires_at=row["lease_expires_at"],
        queued_at=row["queued_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        context=context,
        last_runner_id=str(last_runner_id) if last_runner_id else None,
    )


def _event_from_row(row: Any) -> BuildEvent:
    return BuildEvent(
        id=str(row["id"]),
        build_id=str(row["build_id"]),
        from_status=BuildStatus(row["from_status"]) if row["from_status"] else None,
        to_status=BuildStatus(row["to_status"]),
        actor=row["actor"],
        reason=row["reason"],
        created_at=row["created_at"],
    )


@dataclass(frozen=True)
class EventRow:
    build_id: uuid.UUID | str
    from_status: BuildStatus | None
    to_status: BuildStatus
    actor: str | None
    reason: str | None
    created_at: int


async def _insert_events(conn: Connection, events: Sequence[EventRow]) -> None:
    # One statement for any number of events, in order; PostgreSQL makes their ids. The
    # builds it returns name what changed for the answer caches (oore/store/changes.py).
    await conn.fetch(
        """INSERT INTO build_events (id, build_id, from_status, to_status, actor, reason,
                                     created_at)
           SELECT gen_random_uuid(), e.build_id, e.from_status, e.to_status, e.actor,
                  e.reason, e.created_at
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                       $6::bigint[]) WITH ORDINALITY
                AS e(build_id, from_status, to_status, actor, reason, created_at, n)
           ORDER BY e.n
           RETURNING build_id""",
        [e.build_id for e in events],
        [e.from_status.value if e.from_status else None for e in events],
        [e.to_status.value for e in events],
        [e.actor for e in events],
        [e.reason for e in events],
        [e.created_at for e in events],
    )


@dataclass(frozen=True)
class NewBuild:
    """A build to insert in ``queued``; the store numbers it."""

    project_id: str
    pipeline_id: str
    trigger_type: TriggerType
    trigger_actor: str | None
    trigger_event: str | None
    trigger_ref: str | None
    commit_sha: str | None
    branch: str | None
    changelog: str | None
    source_build_id: str | None
    config_snapshot: dict[str, Any]
    required_labels: tuple[str, ...]
    reason: str
    now: int


# Returned with a changed build so log lines can name its project.
_PROJECT_NAME = "(SELECT p.name FROM projects p WHERE p.id = project_id) AS project_name"


@dataclass(frozen=True)
class LogPage:
    """Lines of one attempt, how many that attempt has, and its number; ``whole``: the
    lines are all the attempt's, and it has finished (they will not change)."""

    lines: list[LogLine]
    total: int
    attempt: int
    whole: bool = False


def _log_line(r: Any) -> LogLine:
    """A stored log line as its row reads."""
    return LogLine(
        r["sequence"],
        r["content"],
        r["stream"],
        r["created_at"],
        step=r["step"],
        step_name=r["step_name"],
    )


async def _create(conn: Connection, new: NewBuild) -> Build | None:
    # Locking the project row serialises numbering per project (contract §4.5) and orders
    # the insert against a change of the project's source (which cancels waiting builds).
    locked = await conn.fetchrow(
        "SELECT repository_id FROM projects WHERE id = $1 FOR UPDATE", new.project_id
    )
    if locked is None:
        return None
    source = new.config_snapshot.get("repository_id")
    if source is not None and str(locked["repository_id"]) != source:
        raise Conflict("source_changed", "The project's source changed while the build was made")
    row = await conn.fetchrow(
        f"""INSERT INTO builds (id, project_id, pipeline_id, build_number, status, trigger_type,
               trigger_actor, trigger_event, trigger_ref, commit_sha, branch, changelog,
               source_build_id, config_snapshot, required_labels, queued_at, created_at,
               updated_at)
           SELECT $1, $2, $3, COALESCE(MAX(build_number), 0) + 1, 'queued', $4, $5, $6, $7,
                  $8, $9, $10, $11, $12, $13, $14, $14, $14
           FROM builds WHERE project_id = $2
           RETURNING *, {_PROJECT_NAME}""",
        new_id(),
        new.project_id,
        new.pipeline_id,
        new.trigger_type.value,
        new.trigger_actor,
        new.trigger_event,
        new.trigger_ref,
        new.commit_sha,
        new.branch,
        new.changelog,
        new.source_build_id,
        new.config_snapshot,
        list(new.required_labels),
        new.now,
    )
    await _insert_events(
        conn,
        [EventRow(row["id"], None, BuildStatus.QUEUED, new.trigger_actor, new.reason, new.now)],
    )
    return build_from_row(row)


# The runner's name: its current one, or the one it had at the claim once it is deleted.
_DETAIL_COLUMNS = """b.*, p.name AS project_name, pl.name AS pipeline_name,
    COALESCE(r.name, b.last_runner_name) AS runner_name"""
_DETAIL_FROM = """builds b JOIN projects p ON p.id = b.project_id
    JOIN pipelines pl ON pl.id = b.pipeline_id
    LEFT JOIN runners r ON r.id = COALESCE(b.runner_id, b.last_runner_id)"""


async def _get(conn: Connection, build_id: uuid.UUID) -> Build | None:
    row = await conn.fetchrow(
        f"SELECT {_DETAIL_COLUMNS} FROM {_DETAIL_FROM} WHERE b.id = $1", build_id
    )
    return None if row is None else build_from_row(row)


async def _many(conn: Connection, keys: list[uuid.UUID]) -> list[Build]:
    rows = await conn.fetch(
        f"SELECT {_DETAIL_COLUMNS} FROM {_DETAIL_FROM} WHERE b.id = ANY($1::uuid[])", keys
    )
    return [build_from_row(row) for row in rows]


async def _statuses(conn: Connection, keys: list[uuid.UUID]) -> dict[str, BuildStatus]:
    rows = await conn.fetch("SELECT id, status FROM builds WHERE id = ANY($1::uuid[])", keys)
    return {str(row["id"]): BuildStatus(row["status"]) for row in rows}


async def _overdue(conn: Connection, now: int, assigned: float, running: float) -> list[Build]:
    rows = await conn.fetch(
        f"""SELECT {_DETAIL_COLUMNS} FROM {_DETAIL_FROM}
            WHERE b.runner_id IS NOT NULL
              AND ((b.status = 'assigned' AND b.updated_at + $2::float8 <= $1)
                OR (b.status = 'running'
                    AND COALESCE(b.started_at, b.updated_at) + LEAST($3::float8,
                        CASE WHEN (b.config_snapshot ->> 'timeout_seconds') ~ '^[0-9]{1, 12}$'
                                  AND (b.config_snapshot ->> 'timeout_seconds')::bigint > 0
                             THEN (b.config_snapshot ->> 'timeout_seconds')::float8
                             ELSE $3::float8 END) <= $1))""",
        now,
        assigned,
        running,
    )
    return [build_from_row(row) for row in rows]


async def _events(conn: Connection, build_id: uuid.UUID) -> list[BuildEvent]:
    rows = await conn.fetch("SELECT * FROM build_events WHERE build_id = $1 ORDER BY seq", build_id)
    return [_event_from_row(row) for row in rows]


@dataclass(frozen=True)
class BuildFilter:
    """What ``GET /v1/builds`` may narrow by; ``member_of`` limits to a user's projects."""

    project_id: uuid.UUID | None = None
    pipeline_id: uuid.UUID | None = None
    statuses: tuple[str, ...] | None = None
    branch: str | None = None
    member_of: str | None = None


_SORTS = {
    "created_at": "b.created_at",
    "status": "b.status",
    "project_name": "p.name",
    "pipeline_name": "pl.name",
    "branch": "b.branch",
}


async def _list(
    conn: Connection,
    where: BuildFilter,
    sort: str,
    descending: bool,
    limit: int,
    offset: int,
) -> tuple[list[Build], int]:
    clauses: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if where.project_id is not None:
        clauses.append(f"b.project_id = {arg(where.project_id)}")
    if where.pipeline_id is not None:
        clauses.append(f"b.pipeline_id = {arg(where.pipeline_id)}")
    if where.statuses is not None:
        clauses.append(f"b.status = ANY({arg(list(where.statuses))}::text[])")
    if where.branch is not None:
        clauses.append(f"b.branch = {arg(where.branch)}")
    if where.member_of is not None:
        clauses.append(
            "EXISTS (SELECT 1 FROM project_members m WHERE m.project_id = b.project_id"
            f" AND m.user_id = {arg(where.member_of)})"
        )
    condition = " AND ".join(clauses) or "true"
    total = await conn.fetchval(f"SELECT count(*) FROM {_DETAIL_FROM} WHERE {condition}", *args)
    direction = "DESC" if descending else "ASC"
    # Creation order breaks ties, so pages are stable and same-second builds keep their order.
    order = f"{_SORTS[sort]} {direction} NULLS LAST, b.seq {direction}"
    rows = await conn.fetch(
        f"""SELECT {_DETAIL_COLUMNS} FROM {_DETAIL_FROM} WHERE {condition}
            ORDER BY {order} LIMIT {arg(limit)} OFFSET {arg(offset)}""",
        *args,
    )
    return [build_from_row(row) for row in rows], total


@dataclass(frozen=True)
class ClaimRow:
    """One claim to commit: the build goes to the runner if it is still queued."""

    build_id: str
    runner_id: str
    signing_token_hash: str
    lease_expires_at: int
    now: int


@dataclass(frozen=True)
class PickRow:
    """One claim the database picks a build for: the oldest queued build that the
    runner's ``labels`` allow and no other transaction holds."""

    runner_id: str
    labels: frozenset[str]
    signing_token_hash: str
    lease_expires_at: int
    now: int


@dataclass(frozen=True)
class ClaimOutcome:
    """What became of one claim: ``build`` (now assigned) if it won, with the stored
    variables of its project and pipeline (read in the same transaction);
    ``runner_gone`` when the runner was deleted meanwhile."""

    build: Build | None
    runner_gone: bool = False
    variables: tuple[StoredVariable, ...] = ()
    # Whether the build's pipeline has an enabled Android signing profile, and enabled
    # iOS signing.
    android_signing: bool = False
    ios_signing: bool = False
    # The pipeline's signing passwords, sealed (see :func:`sealed_passwords_of`).
    sealed_passwords: tuple[str, ...] = ()


# The stored variables a claimed build's runner gets: its project's and its pipeline's.
_CLAIMED_VARIABLES = """(SELECT COALESCE(jsonb_agg(v), '[]') FROM variables v
                         WHERE v.project_id = b.project_id
                           AND (v.pipeline_id IS NULL OR v.pipeline_id = b.pipeline_id))
                        AS claimed_variables"""


def sealed_passwords_of(pipeline: str) -> str:
    """A query of the sealed signing passwords of the pipeline whose id is ``pipeline`` (an
    SQL expression): Android's and the iOS P12's, enabled or not, in one column
    ``sealed`` (NULL where a profile has none). What a build's log must never show."""
    return f"""SELECT store_password_encrypted AS sealed FROM android_signing_profiles
                   WHERE pipeline_id = {pipeline}
               UNION ALL SELECT key_password_encrypted FROM android_signing_profiles
                   WHERE pipeline_id = {pipeline}
               UNION ALL SELECT p12_password_encrypted FROM pipeline_ios_signing
                   WHERE pipeline_id = {pipeline}"""


# Whether the runner is to fetch signing material (one probe of a primary key per
# platform), and the passwords to mask in the build's log, sealed.
_CLAIMED_SIGNING = f"""EXISTS (SELECT 1 FROM android_signing_profiles s
                              WHERE s.pipeline_id = b.pipeline_id AND s.enabled)
                      AS claimed_android_signing,
                      EXISTS (SELECT 1 FROM pipeline_ios_signing i
                              WHERE i.pipeline_id = b.pipeline_id AND i.enabled)
                      AS claimed_ios_signing,
                      ARRAY(SELECT p.sealed FROM ({sealed_passwords_of("b.pipeline_id")}) AS p
                            WHERE p.sealed IS NOT NULL) AS claimed_sealed_passwords"""


def _claiming(pairs: str, source: str) -> str:
    """One statement (atomic on its own) that assigns the builds of ``source`` (rows of
    build_id, runner_id, signing_hash, lease, now, after the CTEs ``pairs``), records each
    one's two transitions and returns them with their variables. The runners are locked
    as the foreign key would lock them, but first: a runner deleted meanwhile loses its
    claims here instead of failing the whole batch."""
    return f"""WITH live AS (SELECT id, name FROM runners WHERE id = ANY($2::uuid[])
                         FOR KEY SHARE),
           {pairs}
           claimed AS (
               UPDATE builds b
               SET status = 'assigned', runner_id = c.runner_id,
                   signing_token_hash = c.signing_hash, lease_expires_at = c.lease,
                   updated_at = c.now, last_runner_id = c.runner_id,
                   last_runner_name = live.name
               FROM {source} JOIN live ON live.id = c.runner_id
               WHERE b.id = c.build_id AND b.status = 'queued' AND b.runner_id IS NULL
               RETURNING b.*, {_PROJECT_NAME}, {_CLAIMED_VARIABLES}, {_CLAIMED_SIGNING}),
           logged AS (
               INSERT INTO build_events (id, build_id, from_status, to_status, actor, reason,
                                         created_at)
               SELECT gen_random_uuid(), claimed.id, t.from_status, t.to_status,
                      'runner:' || claimed.runner_id, t.reason, claimed.updated_at
               FROM claimed CROSS JOIN (VALUES
                   (1, 'queued', 'scheduled', 'claimed by runner'),
                   (2, 'scheduled', 'assigned', 'assigned to runner'))
                   AS t(n, from_status, to_status, reason)
               ORDER BY claimed.id, t.n)
           SELECT * FROM claimed"""


_CLAIM_BY_ID = _claiming(
    "",
    "unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::bigint[])"
    " AS c(build_id, runner_id, signing_hash, lease, now)",
)

# The oldest queued builds that the runners' labels allow, skipping those another
# transaction (another daemon's claims) holds, paired in order with the runners that are
# still there: the first runner asking gets the oldest build.
_CLAIM_PICKED = _claiming(
    """want AS (
               SELECT w.*, row_number() OVER (ORDER BY w.n) AS k
               FROM unnest($2::uuid[], $3::text[], $4::bigint[], $5::bigint[])
                    WITH ORDINALITY AS w(runner_id, signing_hash, lease, now, n)
               WHERE w.runner_id IN (SELECT id FROM live)),
           picked AS (
               SELECT q.id, row_number() OVER (ORDER BY q.queued_at, q.seq) AS k
               FROM (SELECT id, queued_at, seq FROM builds
                     WHERE status = 'queued' AND runner_id IS NULL
                       AND required_labels <@ $1::text[]
                     ORDER BY queued_at, seq
                     LIMIT (SELECT count(*) FROM want)
                     FOR UPDATE SKIP LOCKED) AS q),
           pairs AS (
               SELECT picked.id AS build_id, want.runner_id, want.signing_hash, want.lease,
                      want.now
               FROM picked JOIN want USING (k)),""",
    "pairs AS c",
)


async def _outcomes(
    conn: Connection, claims: Sequence[ClaimRow | PickRow], rows: Sequence[Any]
) -> list[ClaimOutcome]:
    """One outcome per claim, in order, from the rows its statement assigned (each
    claim's signing token is its own, so it tells which row is whose)."""
    won = {row["signing_token_hash"]: row for row in rows}
    lost = {claim.runner_id for claim in claims if claim.signing_token_hash not in won}
    gone: set[str] = set()
    if lost:
        present = await conn.fetch("SELECT id FROM runners WHERE id = ANY($1::uuid[])", list(lost))
        gone = lost - {str(row["id"]) for row in present}
    outcomes: list[ClaimOutcome] = []
    for claim in claims:
        row = won.get(claim.signing_token_hash)
        if row is None or str(row["runner_id"]) != claim.runner_id:
            outcomes.append(ClaimOutcome(None, runner_gone=claim.runner_id in gone))
            continue
        variables = tuple(variable_from_row(v) for v in row["claimed_variables"])
        outcomes.append(
            ClaimOutcome(
                build_from_row(row),
                variables=variables,
                android_signing=row["claimed_android_signing"],
                ios_signing=row["claimed_ios_signing"],
                sealed_passwords=tuple(row["claimed_sealed_passwords"]),
            )
        )
    return outcomes


async def _commit_claims(conn: Connection, claims: Sequence[ClaimRow]) -> list[ClaimOutcome]:
    rows = await conn.fetch(
        _CLAIM_BY_ID,
        [c.build_id for c in claims],
        [c.runner_id for c in claims],
        [c.signing_token_hash for c in claims],
        [c.lease_expires_at for c in claims],
        [c.now for c in claims],
    )
    return await _outcomes(conn, claims, rows)


async def _claimed_with(conn: Connection, runner_id: str, signing_token_hash: str) -> Build | None:
    row = await conn.fetchrow(
        f"""SELECT *, {_PROJECT_NAME} FROM builds
            WHERE runner_id = $1 AND signing_token_hash = $2""",
        runner_id,
        signing_token_hash,
    )
    return None if row is None else build_from_row(row)


async def _pick_claims(conn: Connection, picks: Sequence[PickRow]) -> list[ClaimOutcome]:
    # One statement per distinct label set, each atomic on its own: a later one cannot
    # pick what an earlier one assigned.
    groups: dict[frozenset[str], list[PickRow]] = {}
    for pick in picks:
        groups.setdefault(pick.labels, []).append(pick)
    rows: list[Any] = []
    for labels, group in groups.items():
        rows += await conn.fetch(
            _CLAIM_PICKED,
            sorted(labels),
            [p.runner_id for p in group],
            [p.signing_token_hash for p in group],
            [p.lease_expires_at for p in group],
            [p.now for p in group],
        )
    return await _outcomes(conn, picks, rows)


@dataclass(frozen=True)
class ClaimTo:
    """A runner waiting for work that a new build goes to in its creating transaction."""

    runner_id: str
    signing_token_hash: str
    lease_expires_at: int


async def _create_claimed(
    conn: Connection, new: NewBuild, to: ClaimTo
) -> tuple[Build, ClaimOutcome] | None:
    created = await _create(conn, new)
    if created is None:
        return None
    [outcome] = await _commit_claims(
        conn,
        [ClaimRow(created.id, to.runner_id, to.signing_token_hash, to.lease_expires_at, new.now)],
    )
    return (created if outcome.build is None else outcome.build), outcome


async def _transition(conn: Connection, t: Transition, *, events: bool = False) -> Any:
    """One statement (atomic on its own, one round trip): the compare-and-set, its event,
    and with ``events`` the build's events with the new one (``moved_events``, in order).
    The row as committed."""
    check_transition(t.expected, t.target)
    sets = ["status = $3", "updated_at = $4"]
    args: list[Any] = [t.build_id, t.expected.value, t.target.value, t.now, t.actor, t.reason]
    if t.target is BuildStatus.RUNNING:
        sets.append("started_at = COALESCE(started_at, $4)")
    if t.target in TERMINAL and t.expected not in TERMINAL:
        sets.append("finished_at = $4")
    if t.target in TERMINAL or t.target is BuildStatus.QUEUED:
        sets += ["runner_id = NULL", "signing_token_hash = NULL", "lease_expires_at = NULL"]
    if t.requeue:
        sets += ["attempt = attempt + 1", "queued_at = $4", "started_at = NULL"]
        # The next attempt writes a log of its own, with the whole line limit.
        sets += ["log_lines = 0", "log_truncated = false"]
    if t.exit_code is not None:
        args.append(t.exit_code)
        sets.append(f"exit_code = ${len(args)}")
    if t.steps:
        args.append([step.to_json() for step in t.steps])
        sets.append(f"step_results = ${len(args)}::jsonb")
    guard = ""
    if t.runner_id is not None:
        args.append(t.runner_id)
        guard = f" AND runner_id = ${len(args)}"
    # The statement's own snapshot does not show the event it inserts: the history is the
    # events before it and the one it returns.
    history = (
        """, (SELECT jsonb_agg(to_jsonb(e) ORDER BY e.seq)
              FROM (SELECT * FROM build_events WHERE build_id = $1
                    UNION ALL SELECT * FROM logged) AS e) AS moved_events"""
        if events
        else ""
    )
    row = await conn.fetchrow(
        f"""WITH moved AS (
                UPDATE builds SET {", ".join(sets)}
                WHERE id = $1 AND status = $2{guard} RETURNING *, {_PROJECT_NAME}),
            logged AS (
                INSERT INTO build_events (id, build_id, from_status, to_status, actor,
                                          reason, created_at)
                SELECT gen_random_uuid(), moved.id, $2, $3, $5, $6, $4 FROM moved
                RETURNING *)
            SELECT moved.*{history} FROM moved""",
        *args,
    )
    if row is None:
        exists = await conn.fetchval("SELECT true FROM builds WHERE id = $1", t.build_id)
        if not exists:
            raise NotFound("not_found", "Build not found")
        raise concurrent_modification()
    return row


async def _transition_build(conn: Connection, t: Transition) -> Build:
    return build_from_row(await _transition(conn, t))


async def _transition_with_events(
    conn: Connection, t: Transition
) -> tuple[Build, list[BuildEvent]]:
    row = await _transition(conn, t, events=True)
    return build_from_row(row), [_event_from_row(e) for e in row["moved_events"]]


async def _queued(conn: Connection, limit: int | None) -> list[QueuedBuild]:
    rows = await conn.fetch(
        """SELECT id, required_labels, queued_at FROM builds WHERE status = 'queued'
           ORDER BY queued_at, seq LIMIT $1""",
        limit,
    )
    return [
        QueuedBuild(str(r["id"]), frozenset(r["required_labels"]), r["queued_at"]) for r in rows
    ]


async def _active(conn: Connection, runner_id: str | None) -> list[Build]:
    rows = await conn.fetch(
        """SELECT * FROM builds WHERE status IN ('assigned', 'running')
             AND ($1::uuid IS NULL OR runner_id = $1) ORDER BY queued_at""",
        runner_id,
    )
    return [build_from_row(row) for row in rows]


async def _recover_scheduled(conn: Connection, now: int) -> int:
    rows = await conn.fetch(
        """UPDATE builds SET status = 'queued', runner_id = NULL, signing_token_hash = NULL,
               updated_at = $1
           WHERE status = 'scheduled' RETURNING id""",
        now,
    )
    await _insert_events(
        conn,
        [
            EventRow(
                r["id"],
                BuildStatus.SCHEDULED,
                BuildStatus.QUEUED,
                "system",
                "daemon restart recovery",
                now,
            )
            for r in rows
        ],
    )
    return len(rows)


async def _last_succeeded_commit(conn: Connection, pipeline_id: str) -> str | None:
    found: str | None = await conn.fetchval(
        """SELECT commit_sha FROM builds
           WHERE pipeline_id = $1 AND status = 'succeeded' AND commit_sha IS NOT NULL
           ORDER BY finished_at DESC NULLS LAST, build_number DESC LIMIT 1""",
        pipeline_id,
    )
    return found


async def _older_active(
    conn: Connection, pipeline_id: str, branch: str | None, newer_than: str
) -> list[Build]:
    rows = await conn.fetch(
        """SELECT * FROM builds
           WHERE pipeline_id = $1 AND branch IS NOT DISTINCT FROM $2 AND id <> $3
             AND status <> ALL($4::text[]) ORDER BY build_number""",
        pipeline_id,
        branch,
        newer_than,
        _TERMINAL,
    )
    return [build_from_row(row) for row in rows]


@dataclass(frozen=True)
class LogAppend:
    """What one group of appends stored: each append's new rows (None: refused, the build
    is no longer held by that runner at that attempt), and all of them in order (with the
    truncation notice, if this group filled the log), all of ``attempt``."""

    counts: list[int | None]
    lines: list[LogLine]
    attempt: int


@dataclass
class _LogTarget:
    """One build's row as a batch of appends found it, and what the batch did to it."""

    holder: str | None
    attempt: int
    room: int
    truncated: bool
    claimed: set[int] = field(default_factory=set)  # sequences stored or taken in this batch
    added: int = 0


def _offered(
    writes: Sequence[LogWrite], holder: str | None, attempt: int
) -> tuple[list[int | None], dict[int, tuple[int, LogLine]]]:
    """A group's counts (0 for a write whose runner holds the build at its attempt, None
    for one refused) and, per sequence, the first line the kept writes offer for it."""
    counts: list[int | None] = [
        0 if w.runner_id == holder and w.attempt == attempt else None for w in writes
    ]
    owners: dict[int, tuple[int, LogLine]] = {}
    for index, write in enumerate(writes):
        if counts[index] is not None:
            for line in write.lines:
                owners.setdefault(line.sequence, (index, line))
    return counts, owners


# Every line of a batch in one statement, when each build's lines fit under its cap:
# lock the builds (in id order), keep the first line offered per sequence among the
# writes whose runner holds the build at its attempt, insert those not stored yet and
# add them to the builds' counts. If any build's kept lines could pass its cap, nothing
# is written (``fits`` is false) and the batch takes the exact path.
_APPEND_AT_ONCE = """
    WITH held AS (
        SELECT id, runner_id, attempt, log_lines, log_truncated FROM builds
        WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE),
    offered AS (
        SELECT * FROM unnest($2::uuid[], $3::text[], $4::integer[], $5::bigint[],
                             $6::text[], $7::text[], $8::integer[], $9::text[])
            WITH ORDINALITY AS o(build_id, runner_id, attempt, sequence, content, stream,
                                 step, step_name, n)),
    kept AS (
        SELECT DISTINCT ON (o.build_id, o.sequence) o.*
        FROM offered o JOIN held h ON h.id = o.build_id AND h.runner_id::text = o.runner_id
            AND h.attempt = o.attempt
        WHERE NOT h.log_truncated
        ORDER BY o.build_id, o.sequence, o.n),
    over AS (
        SELECT 1 FROM held h
        JOIN (SELECT build_id, count(*) AS lines FROM kept GROUP BY build_id) AS k
            ON k.build_id = h.id
        WHERE h.log_lines + k.lines > $10),
    stored AS (
        INSERT INTO build_logs
            (build_id, attempt, sequence, content, stream, created_at, step, step_name)
        SELECT build_id, attempt, sequence, content, stream, $11, step, step_name FROM kept
        WHERE NOT EXISTS (SELECT 1 FROM over)
        ON CONFLICT DO NOTHING
        RETURNING build_id, sequence),
    counted AS (
        UPDATE builds SET log_lines = log_lines + c.lines
        FROM (SELECT build_id, count(*) AS lines FROM stored GROUP BY build_id) AS c
        WHERE builds.id = c.build_id)
    SELECT h.id, h.runner_id, h.attempt, h.log_truncated,
           NOT EXISTS (SELECT 1 FROM over) AS fits,
           ARRAY(SELECT s.sequence FROM stored s WHERE s.build_id = h.id) AS stored
    FROM held h"""


async def _append_logs(
    conn: Connection,
    groups: Sequence[tuple[str, Sequence[LogWrite]]],
    cap: int,
    notice: str,
    now: int,
) -> list[LogAppend]:
    """A batch of appends in one statement (one round trip, atomic on its own) when its
    lines fit under their caps; otherwise in the exact, cutting transaction."""
    quick = await _append_logs_at_once(conn, groups, cap, now)
    if quick is not None:
        return quick
    async with conn.transaction():
        return await _append_logs_many(conn, groups, cap, notice, now)


async def _append_logs_at_once(
    conn: Connection,
    groups: Sequence[tuple[str, Sequence[LogWrite]]],
    cap: int,
    now: int,
) -> list[LogAppend] | None:
    """:data:`_APPEND_AT_ONCE` for the batch: its answers, or None if nothing was written
    (a build's lines could pass its cap)."""
    keys = {build_id: as_uuid(build_id) for build_id, _ in groups}
    offered = [
        (key, write, line)
        for build_id, writes in groups
        if (key := keys[build_id]) is not None
        for write in writes
        for line in write.lines
    ]
    rows = await conn.fetch(
        _APPEND_AT_ONCE,
        sorted({key for key in keys.values() if key is not None}),
        [key for key, _, _ in offered],
        [write.runner_id for _, write, _ in offered],
        [write.attempt for _, write, _ in offered],
        [line.sequence for _, _, line in offered],
        [line.content for _, _, line in offered],
        [line.stream for _, _, line in offered],
        [line.step for _, _, line in offered],
        [line.step_name for _, _, line in offered],
        cap,
        now,
    )
    if rows and not rows[0]["fits"]:
        return None
    found = {row["id"]: row for row in rows}
    new = {row["id"]: set(row["stored"]) for row in rows}  # left to count, per build
    results: list[LogAppend] = []
    for build_id, writes in groups:
        key = keys[build_id]
        row = found.get(key) if key is not None else None
        if row is None or key is None:
            results.append(LogAppend([None] * len(writes), [], 0))
            continue
        holder = str(row["runner_id"]) if row["runner_id"] is not None else None
        counts, owners = _offered(writes, holder, row["attempt"])
        stored: list[LogLine] = []
        if not row["log_truncated"]:
            for sequence, (index, line) in owners.items():
                if sequence in new[key]:  # an earlier group of the build takes it first
                    new[key].discard(sequence)
                    counts[index] = (counts[index] or 0) + 1
                    stored.append(line)
        stored.sort(key=lambda line: line.sequence)
        results.append(LogAppend(counts, stored, row["attempt"]))
    return results


async def _append_logs_many(
    conn: Connection,
    groups: Sequence[tuple[str, Sequence[LogWrite]]],
    cap: int,
    notice: str,
    now: int,
) -> list[LogAppend]:
    keys = {build_id: as_uuid(build_id) for build_id, _ in groups}
    ids = sorted({key for key in keys.values() if key is not None})
    # The row locks order these lines against a requeue: a write is kept only if, right
    # now, its runner holds the build at its attempt. One statement locks every build of
    # the batch, in id order.
    targets: dict[uuid.UUID, _LogTarget] = {
        row["id"]: _LogTarget(
            holder=str(row["runner_id"]) if row["runner_id"] is not None else None,
            attempt=row["attempt"],
            room=max(0, cap - row["log_lines"]),
            truncated=row["log_truncated"],
        )
        for row in await conn.fetch(
            """SELECT id, runner_id, attempt, log_lines, log_truncated FROM builds
               WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE""",
            ids,
        )
    }
    # Each group: its counts and, per sequence, the first line offered for it.
    offered: list[tuple[list[int | None], dict[int, tuple[int, LogLine]]]] = []
    asked: tuple[list[uuid.UUID], list[int], list[int]] = ([], [], [])
    for build_id, writes in groups:
        key = keys[build_id]
        target = targets.get(key) if key is not None else None
        if target is None:
            offered.append(([None] * len(writes), {}))
            continue
        counts, owners = _offered(writes, target.holder, target.attempt)
        if target.truncated:
            owners = {}
        else:
            assert key is not None
            asked[0].extend([key] * len(owners))
            asked[1].extend([target.attempt] * len(owners))
            asked[2].extend(owners)
        offered.append((counts, owners))
    known: set[tuple[uuid.UUID, int]] = set()
    if asked[0]:
        known = {
            (r["build_id"], r["sequence"])
            for r in await conn.fetch(
                """SELECT l.build_id, l.sequence
                   FROM unnest($1::uuid[], $2::integer[], $3::bigint[]) AS k(b, a, s)
                   JOIN build_logs l ON l.build_id = k.b AND l.attempt = k.a
                       AND l.sequence = k.s""",
                *asked,
            )
        }
    results: list[LogAppend] = []
    rows: list[tuple[uuid.UUID, int, LogLine]] = []
    cutters: dict[uuid.UUID, int] = {}  # build -> the group whose lines filled its log
    for (build_id, _), (counts, owners) in zip(groups, offered, strict=True):
        key = keys[build_id]
        target = targets.get(key) if key is not None else None
        if target is None or key is None:
            results.append(LogAppend(counts, [], 0))
            continue
        if target.truncated:  # before the batch, or by an earlier group of it
            results.append(LogAppend(counts, [], target.attempt))
            continue
        fresh = [
            owners[seq] for seq in owners if (key, seq) not in known and seq not in target.claimed
        ]
        room = target.room - target.added
        kept = [line for _, line in fresh[:room]]
        for index, _ in fresh[:room]:
            counts[index] = (counts[index] or 0) + 1
        target.claimed.update(line.sequence for line in kept)
        target.added += len(kept)
        rows.extend((key, target.attempt, line) for line in kept)
        stored = sorted(kept, key=lambda line: line.sequence)
        if len(fresh) > room:  # this group filled the log: the notice goes last, once
            target.truncated = True
            cutters[key] = len(results)
        results.append(LogAppend(counts, stored, target.attempt))
    if rows:
        await conn.execute(
            """INSERT INTO build_logs
                   (build_id, attempt, sequence, content, stream, created_at, step, step_name)
               SELECT b, a, s, c, t, $6, i, n
               FROM unnest($1::uuid[], $2::integer[], $3::bigint[], $4::text[], $5::text[],
                           $7::integer[], $8::text[]) AS l(b, a, s, c, t, i, n)""",
            [key for key, _, _ in rows],
            [attempt for _, attempt, _ in rows],
            [line.sequence for _, _, line in rows],
            [line.content for _, _, line in rows],
            [line.stream for _, _, line in rows],
            now,
            [line.step for _, _, line in rows],
            [line.step_name for _, _, line in rows],
        )
    for key, index in cutters.items():  # the notice follows every line of the batch
        target = targets[key]
        last = await conn.fetchval(
            "SELECT max(sequence) FROM build_logs WHERE build_id = $1 AND attempt = $2",
            key,
            target.attempt,
        )
        marker = LogLine((last if last is not None else -1) + 1, notice, "stderr")
        await conn.execute(
            """INSERT INTO build_logs (build_id, attempt, sequence, content, stream, created_at)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            key,
            target.attempt,
            marker.sequence,
            marker.content,
            marker.stream,
            now,
        )
        results[index].lines.append(marker)
    changed = [key for key, target in targets.items() if target.added or key in cutters]
    if changed:
        await conn.execute(
            """UPDATE builds SET log_lines = log_lines + u.n,
                      log_truncated = log_truncated OR u.t
               FROM unnest($1::uuid[], $2::integer[], $3::boolean[]) AS u(id, n, t)
               WHERE builds.id = u.id""",
            changed,
            [targets[key].added for key in changed],
            [key in cutters for key in changed],
        )
    return results


@dataclass(frozen=True)
class LogState:
    """What an open log stream needs to know of its build."""

    status: BuildStatus
    attempt: int


async def _log_state(conn: Connection, build_id: uuid.UUID) -> LogState | None:
    row = await conn.fetchrow("SELECT status, attempt FROM builds WHERE id = $1", build_id)
    return None if row is None else LogState(BuildStatus(row["status"]), row["attempt"])


async def _get_with_events(
    conn: Connection, build_id: uuid.UUID
) -> tuple[Build, list[BuildEvent]] | None:
    build = await _get(conn, build_id)
    return None if build is None else (build, await _events(conn, build_id))


async def _get_with_logs(
    conn: Connection,
    build_id: uuid.UUID,
    attempt: int | None,
    after: int,
    before: int | None,
    limit: int | None,
    whole_up_to: int | None,
) -> tuple[Build, LogPage | None] | None:
    build = await _get(conn, build_id)
    if build is None:
        return None
    wanted = build.attempt if attempt is None else attempt
    if not 1 <= wanted <= build.attempt:
        return build, None
    finished = wanted < build.attempt or build.status.terminal
    if whole_up_to is not None and finished:
        rows = await conn.fetch(
            f"""SELECT {_LINE_COLUMNS} FROM build_logs WHERE build_id = $1 AND attempt = $2
               ORDER BY sequence LIMIT $3""",
            build_id,
            wanted,
            whole_up_to + 1,
        )
        if len(rows) <= whole_up_to:
            return build, LogPage([_log_line(r) for r in rows], len(rows), wanted, whole=True)
    lines, total = await _logs(conn, build_id, wanted, after, before, limit)
    return build, LogPage(lines, total, wanted)


async def _logs(
    conn: Connection,
    build_id: uuid.UUID,
    attempt: int,
    after: int,
    before: int | None,
    limit: int | None,
) -> tuple[list[LogLine], int]:
    if before is None:
        rows = await conn.fetch(
            f"""SELECT {_LINE_COLUMNS} FROM build_logs
               WHERE build_id = $1 AND attempt = $2 AND sequence > $3
               ORDER BY sequence LIMIT $4""",
            build_id,
            attempt,
            after,
            limit,
        )
    else:  # the last ``limit`` lines before ``before``, read backwards, shown in order
        rows = await conn.fetch(
            f"""SELECT * FROM (
                   SELECT {_LINE_COLUMNS} FROM build_logs
                   WHERE build_id = $1 AND attempt = $2 AND sequence > $3 AND sequence < $5
                   ORDER BY sequence DESC LIMIT $4) AS page
               ORDER BY sequence""",
            build_id,
            attempt,
            after,
            limit,
            before,
        )
    total = await conn.fetchval(
        "SELECT count(*) FROM build_logs WHERE build_id = $1 AND attempt = $2", build_id, attempt
    )
    lines = [_log_line(r) for r in rows]
    return lines, total


_LINE_COLUMNS = "sequence, content, stream, created_at, step, step_name"


async def _tail_start(
    conn: Connection, build_id: uuid.UUID, attempt: int, count: int
) -> int | None:
    sequence: int | None = await conn.fetchval(
        """SELECT sequence FROM build_logs WHERE build_id = $1 AND attempt = $2
           ORDER BY sequence DESC OFFSET $3 LIMIT 1""",
        build_id,
        attempt,
        count,
    )
    return sequence


async def _log_marks(conn: Connection, keys: list[uuid.UUID]) -> dict[str, tuple[int, int | None]]:
    rows = await conn.fetch(
        """SELECT b.id, b.attempt,
                  (SELECT max(l.sequence) FROM build_logs l
                   WHERE l.build_id = b.id AND l.attempt = b.attempt) AS last
           FROM builds b WHERE b.id = ANY($1::uuid[])""",
        keys,
    )
    return {str(r["id"]): (r["attempt"], r["last"]) for r in rows}


async def _logs_of_builds(
    conn: Connection, keys: list[uuid.UUID], attempts: list[int], after: list[int], limit: int
) -> list[list[LogLine]]:
    rows = await conn.fetch(
        f"""SELECT k.n, l.sequence, l.content, l.stream, l.created_at, l.step, l.step_name
            FROM unnest($1::uuid[], $2::integer[], $3::bigint[]) WITH ORDINALITY AS k(b, a, s, n)
            CROSS JOIN LATERAL (
                SELECT {_LINE_COLUMNS} FROM build_logs
                WHERE build_id = k.b AND attempt = k.a AND sequence > k.s
                ORDER BY sequence LIMIT $4) AS l
            ORDER BY k.n, l.sequence""",
        keys,
        attempts,
        after,
        limit,
    )
    found: list[list[LogLine]] = [[] for _ in keys]
    for r in rows:
        found[r["n"] - 1].append(_log_line(r))
    return found


async def _active_counts(conn: Connection) -> dict[str, int]:
    rows = await conn.fetch(
        """SELECT runner_id, count(*) AS n FROM builds
           WHERE status IN ('assigned', 'running') AND runner_id IS NOT NULL
           GROUP BY runner_id"""
    )
    return {str(r["runner_id"]): r["n"] for r in rows}


async def _live(conn: Connection) -> LiveBuilds:
    rows = await conn.fetch(
        """SELECT status, CASE WHEN status = 'queued' THEN required_labels END AS labels,
                  count(*) AS n
           FROM builds WHERE status IN ('queued', 'scheduled', 'assigned', 'running')
           GROUP BY 1, 2"""
    )
    by_status: dict[BuildStatus, int] = {}
    by_labels: dict[tuple[str, ...], int] = {}
    for row in rows:
        status = BuildStatus(row["status"])
        by_status[status] = by_status.get(status, 0) + row["n"]
        if row["labels"] is not None:
            labels = tuple(sorted(row["labels"]))
            by_labels[labels] = by_labels.get(labels, 0) + row["n"]
    return LiveBuilds(by_status, by_labels)


class _Turns:
    """One caller at a time per key; the others wait here, in memory."""

    def __init__(self) -> None:
        self._locks: dict[str, trio.Lock] = {}

    @asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, trio.Lock())
        try:
            async with lock:
                yield
        finally:
            unused = not lock.locked() and not lock.statistics().tasks_waiting
            if unused and self._locks.get(key) is lock:
                del self._locks[key]


class BuildStore:
    """Builds, build events, claims and log lines.

    The builds of one project are made one at a time (their numbers follow each other),
    under a lock on the project's row. Here they also take turns per project before they
    take a pooled connection: a burst of builds for one project (a push that starts many
    pipelines, a script queueing a hundred) would otherwise hold every connection of the
    pool waiting for that lock, and every other database call would wait behind them.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._creating = _Turns()

    async def create(self, new: NewBuild) -> Build | None:
        """Insert a queued build with the next number of its project; None if no project,
        409 ``source_changed`` if the project no longer links the snapshot's repository."""
        async with self._creating.turn(str(new.project_id)):
            return await self._db.transaction(_create, new)

    async def get(self, build_id: str) -> Build | None:
        key = as_uuid(build_id)
        return None if key is None else await self._db.run(_get, key)

    async def get_with_events(self, build_id: str) -> tuple[Build, list[BuildEvent]] | None:
        """The build and its events, oldest first, in one database call."""
        key = as_uuid(build_id)
        return None if key is None else await self._db.run(_get_with_events, key)

    async def get_with_logs(
        self,
        build_id: str,
        *,
        attempt: int | None,
        after: int,
        limit: int | None,
        before: int | None = None,
        whole_up_to: int | None = None,
    ) -> tuple[Build, LogPage | None] | None:
        """The build and, in the same database call, a page of one attempt's lines as
        :meth:`logs` reads it (the build's current attempt unless named); the page is None
        when the build has no such attempt. With ``whole_up_to``, a finished attempt of
        at most that many lines is read whole instead (``LogPage.whole``)."""
        key = as_uuid(build_id)
        if key is None:
            return None
        return await self._db.run(_get_with_logs, key, attempt, after, before, limit, whole_up_to)

    async def events(self, build_id: str) -> list[BuildEvent]:
        key = as_uuid(build_id)
        return [] if key is None else await self._db.run(_events, key)

    async def page(
        self, where: BuildFilter, *, sort: str, descending: bool, limit: int, offset: int
    ) -> tuple[list[Build], int]:
        return await self._db.run(_list, where, sort, descending, limit, offset)

    async def create_claimed(self, new: NewBuild, to: ClaimTo) -> tuple[Build, ClaimOutcome] | None:
        """Insert a queued build and, in the same transaction, assign it to ``to`` (a
        compare-and-set like any claim); the build as committed and the claim's outcome,
        None if there is no project."""
        async with self._creating.turn(str(new.project_id)):
            return await self._db.transaction(_create_claimed, new, to)

    async def commit_claims(self, claims: Sequence[ClaimRow]) -> list[ClaimOutcome]:
        """Commit a batch of claims in one transaction; one outcome per claim, in order."""
        return await self._db.run(_commit_claims, claims)

    async def claimed_with(self, runner_id: str, signing_token_hash: str) -> Build | None:
        """The build a claim of ``runner_id`` committed with this signing token, if the
        runner holds it still."""
        return await self._db.run(_claimed_with, runner_id, signing_token_hash)

    async def pick_claims(self, picks: Sequence[PickRow]) -> list[ClaimOutcome]:
        """Commit a batch of claims, each given the oldest eligible queued build that no
        other transaction holds (``FOR UPDATE SKIP LOCKED``); one outcome per claim, in
        order (no build: nothing eligible was left)."""
        return await self._db.run(_pick_claims, picks)

    async def transition(self, t: Transition) -> Build:
        """Compare-and-set; 409 ``invalid_transition`` / ``concurrent_modification``."""
        return await self._db.run(_transition_build, t)

    async def transition_with_events(self, t: Transition) -> tuple[Build, list[BuildEvent]]:
        """:meth:`transition`, and the build's events with the new one, in one call."""
        return await self._db.run(_transition_with_events, t)

    async def queued(self, limit: int | None = None) -> list[QueuedBuild]:
        """The queued builds, oldest first (all of them: the dispatcher's start-up index)."""
        return await self._db.run(_queued, limit)

    async def many(self, build_ids: Sequence[str]) -> list[Build]:
        """The builds of these ids that exist, as :meth:`get` reads each."""
        keys = [key for key in map(as_uuid, build_ids) if key is not None]
        return await self._db.run(_many, keys) if keys else []

    async def statuses(self, build_ids: Sequence[str]) -> dict[str, BuildStatus]:
        """The status of each of these builds that exists."""
        keys = [key for key in map(as_uuid, build_ids) if key is not None]
        return await self._db.run(_statuses, keys) if keys else {}

    async def overdue(self, now: int, assigned: float, running: float) -> list[Build]:
        """Builds bound to a runner past a timeout: assigned for over ``assigned`` seconds,
        or running for over ``running`` seconds or their own file's ``timeout_seconds``."""
        return await self._db.run(_overdue, now, assigned, running)

    async def active(self, *, runner_id: str | None = None) -> list[Build]:
        """Builds bound to a runner (assigned or running): all, or those of one runner."""
        return await self._db.run(_active, runner_id)

    async def active_counts(self) -> dict[str, int]:
        """Per runner, how many builds it holds."""
        return await self._db.run(_active_counts)

    async def live(self) -> LiveBuilds:
        """Counts of the unfinished builds (one aggregate query, for ``/metrics``)."""
        return await self._db.run(_live)

    async def recover_scheduled(self, now: int) -> int:
        """Move every ``scheduled`` build back to ``queued`` (daemon start, contract §4.2)."""
        return await self._db.transaction(_recover_scheduled, now)

    async def last_succeeded_commit(self, pipeline_id: str) -> str | None:
        """The commit of the pipeline's build that succeeded last (one with a commit)."""
        return await self._db.run(_last_succeeded_commit, pipeline_id)

    async def older_active(
        self, pipeline_id: str, branch: str | None, newer_than: str
    ) -> list[Build]:
        """Non-terminal builds of the same pipeline and branch, other than ``newer_than``."""
        return await self._db.run(_older_active, pipeline_id, branch, newer_than)

    async def append_logs(
        self,
        build_id: str,
        writes: Sequence[LogWrite],
        *,
        cap: int,
        notice: str,
        now: int,
    ) -> LogAppend:
        """Insert several appends in one transaction (§6.1), each only if its runner still
        holds the build at its attempt; lines go to that attempt's log, where a sequence
        already stored or listed earlier is ignored; past ``cap`` lines the attempt's log
        ends with ``notice``, once."""
        (stored,) = await self.append_logs_of_builds(
            [(build_id, writes)], cap=cap, notice=notice, now=now
        )
        return stored

    async def append_logs_of_builds(
        self,
        groups: Sequence[tuple[str, Sequence[LogWrite]]],
        *,
        cap: int,
        notice: str,
        now: int,
    ) -> list[LogAppend]:
        """:meth:`append_logs` for the appends of several builds, in one transaction and
        a few set-based statements: one answer per group, each under the same rules as if
        alone (a build listed twice takes its groups in order). A build that no longer
        exists refuses its group's writes (counts None) and leaves the others be."""
        return await self._db.run(_append_logs, groups, cap, notice, now)

    async def log_state(self, build_id: str) -> LogState | None:
        """The build's status and current attempt, or None once it is gone."""
        key = as_uuid(build_id)
        return None if key is None else await self._db.run(_log_state, key)

    async def logs(
        self,
        build_id: str,
        *,
        attempt: int,
        after: int,
        limit: int | None,
        before: int | None = None,
    ) -> tuple[list[LogLine], int]:
        """Lines of one attempt after a sequence, and how many that attempt has: the first
        ``limit`` of them, or, given ``before``, the last ``limit`` before that sequence
        (in order either way)."""
        key = as_uuid(build_id)
        if key is None:
            return [], 0
        return await self._db.run(_logs, key, attempt, after, before, limit)

    async def tail_start(self, build_id: str, *, attempt: int, count: int) -> int | None:
        """The sequence right before the last ``count`` lines of one attempt (those lines
        are the ones after it); None when the attempt has no more than ``count`` lines."""
        key = as_uuid(build_id)
        if key is None:
            return None
        return await self._db.run(_tail_start, key, attempt, count)

    async def log_marks(self, build_ids: Sequence[str]) -> dict[str, tuple[int, int | None]]:
        """Each build's current attempt and the last sequence of that attempt's log (None
        while it has no line), in one statement; builds that no longer exist are left out."""
        keys = {key: build_id for build_id in build_ids if (key := as_uuid(build_id))}
        if not keys:
            return {}
        return await self._db.run(_log_marks, list(keys))

    async def logs_of_builds(
        self, wants: Sequence[tuple[str, int, int]], *, limit: int
    ) -> list[list[LogLine]]:
        """For each (build, attempt, after sequence): the first ``limit`` lines of that
        attempt after that sequence, in order; the reads of many builds in one statement."""
        keyed = [(as_uuid(build_id), attempt, after) for build_id, attempt, after in wants]
        known = [(key, attempt, after) for key, attempt, after in keyed if key is not None]
        if not known:
            return [[] for _ in wants]
        found = iter(
            await self._db.run(
                _logs_of_builds,
                [key for key, _, _ in known],
                [attempt for _, attempt, _ in known],
                [after for _, _, after in known],
                limit,
            )
        )
        return [next(found) if key is not None else [] for key, _, _ in keyed]
