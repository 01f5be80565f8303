"""What each committed write may have changed, as marks the answer caches forget by.

Every statement the store runs goes through a :class:`TrackedConnection`. A statement that
writes (``INSERT INTO``, ``UPDATE``, ``DELETE FROM``, ``TRUNCATE``) is read once for the
tables it writes, and each write gives marks:

- ``world``: anything may have changed (a project, a pipeline, a member, a user, a
  setting, a runner renamed or deleted, a table this module does not know);
- ``builds``: some build changed (a list of builds may read differently);
- ``build:<id>``: that build, its events or its lines changed; ``build:*``: any build may
  have (a write to builds that does not return the ids of the rows it wrote);
- ``runners``: some runner's state changed (a runner list, and why a queued build waits).

Writes that no cached answer shows give none: sessions, tokens, the audit log, deliveries
and the like (:data:`UNSHOWN`), a build's line count, and new log lines. New lines go
only to an attempt that is still running, and the caches keep the lines of finished
attempts only; removed lines are ``build:*``.

The ids come from the rows the statement returns: a statement that changes builds and
returns rows with an ``id`` column (``build_id`` for one that writes only events) returns
every build it changed (``RETURNING``, or the final ``SELECT`` of a ``WITH``). One that
returns nothing, or rows without that column, changes any build: ``build:*``.

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

from oore.domain.changes import ANY_BUILD, BUILDS, RUNNERS, WORLD, build_mark

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
    for write in statement.writes:
        if write.table in UNSHOWN:
            continue
        if write.table == "build_logs":
            if write.verb != "insert":
                marks.add(ANY_BUILD)
        elif write.table == "builds":
            if not (write.verb == "update" and write.columns <= UNSHOWN_BUILD_COLUMNS):
                family.add(write.table)
        elif write.table == "build_events":
            family.add(write.table)
        elif write.table == "runners":
            renamed = write.verb == "update" and bool({"name", ANY_COLUMN} & write.columns)
            marks.add(WORLD if write.verb in ("delete", "truncate") or renamed else RUNNERS)
        else:
            marks.add(WORLD)
    if family:
        column = "id" if "builds" in family else "build_id"
        # the rows of one statement have the same columns
        named = rows is not None and (not rows or column in list(rows[0].keys()))
        if rows is None or not statement.returning or not named:
            marks.update((BUILDS, ANY_BUILD))
        elif rows:  # none returned: none written
            marks.add(BUILDS)
            marks.update(build_mark(str(row[column])) for row in rows)
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
