"""What each committed write may have changed, as marks the answer caches forget by.

Every statement the store runs goes through a :class:`TrackedConnection`. A statement that
writes (``INSERT INTO``, ``UPDATE``, ``DELETE FROM``, ``TRUNCATE``) is read once for the
tables it writes, and each write gives marks:

- ``world``: anything may have changed (a project, a pipeline, a member, a user, a
  setting, a runner renamed or deleted, a table this module does not know);
- ``build:<id>``: that build, its events or its lines changed; ``build:*``: any build may
  have (a write to builds that does not return the ids of the rows it wrote);
- ``builds+:<scope>``: a build came or went, and ``builds~:<scope>``: a build's status
  or runner changed, in each scope it is in (every build's, its project's, its
  pipeline's); the lists of builds narrowed to that scope may read differently;
- ``builds``: builds changed in a way not told apart (the rows do not say which builds, or
  which project and pipeline, or a column a list filters or sorts by was set): every list
  of builds may read differently;
- ``runners``: some runner's state changed (a runner list, and why a queued build waits).

Writes that no cached answer shows give none: sessions, tokens, the audit log, deliveries
and the like (:data:`UNSHOWN`), a build's line count, and new log lines. New lines go
only to an attempt that is still running, and the caches keep the lines of finished
attempts only; removed lines are ``build:*``.

The ids come from the rows the statement returns: a statement that changes builds and
returns rows with an ``id`` column (``build_id`` for one that writes only events) returns
every build it changed (``RETURNING``, or the final ``SELECT`` of a ``WITH``). One that
returns nothing, or rows without that column, changes any build: ``build:*``. The scopes
come from the same rows' ``project_id`` and ``pipeline_id``; rows without them give
``builds``. Events show only in their build's own answer: a write of events alone gives
the builds' marks and no other.

:class:`Changes` hands the marks of each database call to its listeners on the trio side,
after the call's commit and before the caller resumes, so a read that follows a write in
the same task never finds the answer from before the write.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from oore.domain.changes import (
    ANY_BUILD,
    BUILDS,
    RUNNERS,
    WORLD,
    build_mark,
    came_mark,
    moved_mark,
    scopes_of,
)

# Tables none of the cached answers (projects, builds, a build, its log, runners) read.
UNSHOWN = frozenset(
    {
        "sessions",
        "api_tokens",
        "audit_log",
        "stream_tokens",
        "url_tokens",
        "artifact_download_tokens",
        "artifacts",
        "cluster_leases",
        "webhook_deliveries",
        "webhook_build_claims",
        "notification_deliveries",
        "pending_signins",
        "integration_states",
        "retention_runs",
        "runner_enrollment_tokens",
        "schema_migrations",
    }
)
# Columns of builds that no answer shows: a running build's line count and cut-off flag.
UNSHOWN_BUILD_COLUMNS = frozenset({"log_lines", "log_truncated"})
# Columns of builds a list of builds filters or sorts by that do change: a build written
# there may enter or leave a list, or move in it (``builds~``). The others a list narrows
# or sorts by (project, pipeline, branch, creation) are set once, at its creation.
MOVING_BUILD_COLUMNS = frozenset({"status", "runner_id"})
# Columns of builds that only the lists showing the build read (no list filters or sorts
# by them): written, they change the build's own answers and no other.
OWN_BUILD_COLUMNS = frozenset(
    {
        "build_number",
        "trigger_type",
        "trigger_actor",
        "trigger_event",
        "trigger_ref",
        "commit_sha",
        "changelog",
        "source_build_id",
        "config_snapshot",
        "required_labels",
        "step_results",
        "exit_code",
        "attempt",
        "lease_expires_at",
        "signing_token_hash",
        "queued_at",
        "started_at",
        "finished_at",
        "updated_at",
        "last_runner_id",
        "last_runner_name",
        "logs_removed_at",
    }
)

_WRITE = re.compile(
    r"\b(INSERT\s+INTO|DELETE\s+FROM|UPDATE|TRUNCATE(?:\s+TABLE)?)\s+(?:ONLY\s+)?(\w+)",
    re.IGNORECASE,
)
_WORD_BEFORE = re.compile(r"(\w+)\s*$")
_SET = re.compile(r"\bSET\b(.*?)(?:\bFROM\b|\bWHERE\b|\bRETURNING\b|$)", re.I | re.S)
_UPSERT = re.compile(r"\bDO\s+UPDATE\s+SET\b(.*)", re.I | re.S)
# A column list that could not be read: counts as every column.
ANY_COLUMN = "*"
_ASSIGNED = re.compile(r"(\w+)\s*=(?!=)")
_LITERAL = re.compile(r"'(?:[^']|'')*'")
_COMMENT = re.compile(r"--[^\n]*")
# Words before UPDATE that make it a lock (FOR UPDATE, FOR NO KEY UPDATE) or an upsert's
# action (ON CONFLICT ... DO UPDATE), not a statement of its own.
_NOT_A_STATEMENT = frozenset({"for", "key", "do"})


@dataclass(frozen=True)
class Write:
    """One table a statement writes: how, and (for an update) the columns it sets."""

    table: str
    verb: str  # insert, update, delete or truncate
    columns: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Statement:
    """What a statement writes, and whether its rows are the rows it wrote (it returns
    them: ``RETURNING``)."""

    writes: tuple[Write, ...]
    returning: bool


def statement_of(sql: str) -> Statement:
    """What ``sql`` writes (nothing for a read)."""
    text = _COMMENT.sub(" ", _LITERAL.sub("''", sql))
    return Statement(_writes(text), re.search(r"\bRETURNING\b", text, re.I) is not None)


def _writes(text: str) -> tuple[Write, ...]:
    found: list[Write] = []
    for match in _WRITE.finditer(text):
        verb = match.group(1).split()[0].lower()
        table = match.group(2).lower()
        if verb == "update":
            before = _WORD_BEFORE.search(text, 0, match.start())
            if before is not None and before.group(1).lower() in _NOT_A_STATEMENT:
                continue
            clause = _SET.search(text, match.end())
            found.append(Write(table, verb, _columns(None if clause is None else clause.group(1))))
        else:
            found.append(Write(table, verb))
    upsert = _UPSERT.search(text)
    if upsert is not None:  # the upsert's action updates the table it inserts into
        columns = _columns(upsert.group(1))
        found = [Write(w.table, "update", columns) if w.verb == "insert" else w for w in found]
    return tuple(found)


def _columns(clause: str | None) -> frozenset[str]:
    """The columns a SET clause assigns; :data:`ANY_COLUMN` when it cannot be told (a
    subquery cut the clause short)."""
    if clause is None or clause.count("(") != clause.count(")"):
        return frozenset({ANY_COLUMN})
    return frozenset(name.lower() for name in _ASSIGNED.findall(clause))


def marks_of(statement: Statement, rows: Sequence[Any] | None) -> set[str]:
    """The marks of one statement, given the rows it returned (None when the call does not
    give them: ``execute``, ``executemany``, ``fetchval``)."""
    marks: set[str] = set()
    family: set[str] = set()
    lists: set[str] = set()  # how the lists of builds are touched: came, moved, any
    for write in statement.writes:
        if write.table in UNSHOWN:
            continue
        if write.table == "build_logs":
            if write.verb != "insert":
                marks.add(ANY_BUILD)
        elif write.table == "builds":
            if not (write.verb == "update" and write.columns <= UNSHOWN_BUILD_COLUMNS):
                family.add(write.table)
                lists.add(_list_change(write))
        elif write.table == "build_events":
            family.add(write.table)
        elif write.table == "runners":
            renamed = write.verb == "update" and bool({"name", ANY_COLUMN} & write.columns)
            marks.add(WORLD if write.verb in ("delete", "truncate") or renamed else RUNNERS)
        else:
            marks.add(WORLD)
    if family:
        marks.update(_build_marks(statement, rows, family, lists))
    return marks


def _list_change(write: Write) -> str:
    """How a write to builds touches the lists of builds: ``came`` (a build came or went),
    ``moved`` (its status or runner changed), ``own`` (only the lists showing it), ``any``."""
    if write.verb != "update":
        return "came"
    columns = write.columns - UNSHOWN_BUILD_COLUMNS
    if columns <= OWN_BUILD_COLUMNS:
        return "own"
    if columns <= OWN_BUILD_COLUMNS | MOVING_BUILD_COLUMNS:
        return "moved"
    return "any"


def _build_marks(
    statement: Statement, rows: Sequence[Any] | None, family: set[str], lists: set[str]
) -> set[str]:
    """The marks of the builds a statement wrote (or of their events), from its rows."""
    column = "id" if "builds" in family else "build_id"
    # the rows of one statement have the same columns
    keys = [] if not rows else list(rows[0].keys())
    if rows is None or not statement.returning or (rows and column not in keys):
        return {BUILDS, ANY_BUILD}
    marks = {build_mark(str(row[column])) for row in rows}
    if not rows or lists <= {"own"}:  # none returned: none written
        return marks
    if "any" in lists or "project_id" not in keys or "pipeline_id" not in keys:
        return marks | {BUILDS}
    kinds = [mark for kind, mark in (("came", came_mark), ("moved", moved_mark)) if kind in lists]
    for row in rows:
        for scope in scopes_of(str(row["project_id"]), str(row["pipeline_id"])):
            marks.update(mark(scope) for mark in kinds)
    return marks


class TrackedConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection that notes the marks of the writes it runs while ``marks`` is
    a set (the database call it serves owns the set)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.marks: set[str] | None = None
        self._statements: dict[str, Statement] = {}

    def track(self, marks: set[str] | None) -> None:
        """Note the marks of the writes from now on in ``marks`` (None: stop). A method,
        as the pool hands out a proxy that passes calls on but keeps attributes set."""
        self.marks = marks

    def _note(self, sql: str, rows: Sequence[Any] | None) -> None:
        if self.marks is None:
            return
        statement = self._statements.get(sql)
        if statement is None:
            statement = self._statements[sql] = statement_of(sql)
        if statement.writes:
            self.marks.update(marks_of(statement, rows))

    async def execute(self, query: str, *args: Any, **options: Any) -> str:
        try:
            result: str = await super().execute(query, *args, **options)
        finally:
            self._note(query, None)
        return result

    async def executemany(self, command: str, args: Any, **options: Any) -> None:
        try:
            await super().executemany(command, args, **options)
        finally:
            self._note(command, None)

    async def fetch(self, query: str, *args: Any, **options: Any) -> list[Any]:
        rows: list[Any] | None = None
        try:
            rows = await super().fetch(query, *args, **options)
        finally:
            self._note(query, rows)
        return rows

    async def fetchrow(self, query: str, *args: Any, **options: Any) -> Any:
        found: list[Any] | None = None
        try:
            row = await super().fetchrow(query, *args, **options)
            found = [] if row is None else [row]
        finally:
            self._note(query, found)
        return row

    async def fetchval(self, query: str, *args: Any, **options: Any) -> Any:
        try:
            return await super().fetchval(query, *args, **options)
        finally:
            self._note(query, None)


Listener = Callable[[frozenset[str]], None]


class Changes:
    """Marks of the writes this daemon committed, handed to its listeners (on trio)."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def committed(self, marks: Iterable[str]) -> None:
        found = frozenset(marks)
        if not found:
            return
        for listener in self._listeners:
            listener(found)
