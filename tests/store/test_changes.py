"""What each write may have changed: read from the statement and the rows it returns,
and handed to the listeners as each database call commits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from oore.domain.builds import BuildStatus, Transition
from oore.domain.changes import (
    ANY_BUILD,
    BUILDS,
    EVERY,
    RUNNERS,
    WORLD,
    build_mark,
    came_mark,
    moved_mark,
    scopes_of,
)
from oore.domain.logs import LogLine, LogWrite
from oore.store import Store
from oore.store.changes import ANY_COLUMN, Write, marks_of, statement_of
from tests.store.test_artifacts import NOW, world


class Row(dict[str, Any]):
    """A returned row as asyncpg's records answer ``keys()``."""


def marks(sql: str, rows: list[dict[str, Any]] | None = None) -> set[str]:
    return marks_of(statement_of(sql), None if rows is None else [Row(r) for r in rows])


def test_reads_and_locks_write_nothing() -> None:
    for sql in (
        "SELECT * FROM builds WHERE id = $1",
        "SELECT id FROM builds WHERE status = 'queued' FOR UPDATE SKIP LOCKED",
        "SELECT id FROM runners FOR NO KEY UPDATE",
        "SELECT 'UPDATE projects SET name = 1' AS text",  # a literal, not a statement
        "SELECT 1 -- DELETE FROM projects",
        "SELECT id FROM live FOR KEY SHARE",
    ):
        assert statement_of(sql).writes == (), sql
        assert marks(sql, []) == set()


def test_the_tables_a_statement_writes_and_the_columns_it_sets() -> None:
    found = statement_of(
        """WITH claimed AS (UPDATE builds b SET status = 'assigned', runner_id = c.r
                            FROM c WHERE b.id = c.id RETURNING b.*),
                logged AS (INSERT INTO build_events (id) SELECT id FROM claimed)
           SELECT * FROM claimed"""
    )
    assert found.writes == (
        Write("builds", "update", frozenset({"status", "runner_id"})),
        Write("build_events", "insert"),
    )
    assert found.returning
    upsert = statement_of(
        "INSERT INTO runners (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = $2"
    )
    assert upsert.writes == (Write("runners", "update", frozenset({"name"})),)
    cut = statement_of("UPDATE builds SET log_lines = (SELECT count(*) FROM x), status = $1")
    assert cut.writes[0].columns == {ANY_COLUMN}


def test_a_build_written_with_its_rows_returned_is_named() -> None:
    sql = "UPDATE builds SET exit_code = $2 WHERE id = $1 RETURNING *"
    assert marks(sql, [{"id": "b1", "exit_code": 0}]) == {build_mark("b1")}
    assert marks(sql, []) == set()  # nothing matched: nothing written
    assert marks(sql, None) == {BUILDS, ANY_BUILD}  # rows not seen (execute)
    events = "INSERT INTO build_events (build_id) SELECT unnest($1::uuid[]) RETURNING build_id"
    # events show only in their build's own answer
    assert marks(events, [{"build_id": "b1"}, {"build_id": "b2"}]) == {
        build_mark("b1"),
        build_mark("b2"),
    }
    # rows without the ids, or no RETURNING: any build
    assert marks("UPDATE builds SET status = $1 RETURNING count", [{"count": 1}]) == {
        BUILDS,
        ANY_BUILD,
    }
    assert marks("DELETE FROM builds WHERE project_id = $1") == {BUILDS, ANY_BUILD}


def _in(mark: Callable[[str], str], project: str, pipeline: str) -> set[str]:
    return {mark(scope) for scope in scopes_of(project, pipeline)}


def test_a_build_that_comes_or_moves_is_told_in_its_project_and_pipeline() -> None:
    row = {"id": "b1", "project_id": "p1", "pipeline_id": "q1", "status": "running"}
    moved = "UPDATE builds SET status = $2, updated_at = $3 WHERE id = $1 RETURNING *"
    assert marks(moved, [row]) == {build_mark("b1"), *_in(moved_mark, "p1", "q1")}
    runner = "UPDATE builds SET runner_id = NULL WHERE id = $1 RETURNING *"
    assert marks(runner, [row]) == {build_mark("b1"), *_in(moved_mark, "p1", "q1")}
    came = "INSERT INTO builds (id, project_id) VALUES ($1, $2) RETURNING *"
    other = {"id": "b2", "project_id": "p2", "pipeline_id": "q2"}
    assert marks(came, [row, other]) == {
        build_mark("b1"),
        build_mark("b2"),
        *_in(came_mark, "p1", "q1"),
        *_in(came_mark, "p2", "q2"),
    }
    assert scopes_of("p1", "q1") == (EVERY, "project:p1", "pipeline:q1")


def test_a_build_write_lists_cannot_place_is_told_to_every_list() -> None:
    row = {"id": "b1", "project_id": "p1", "pipeline_id": "q1"}
    # the rows do not say the project and pipeline
    assert marks("UPDATE builds SET status = $2 RETURNING id", [{"id": "b1"}]) == {
        BUILDS,
        build_mark("b1"),
    }
    # a column a list narrows or sorts by, set: lists cannot tell where the build went
    for column in ("branch", "project_id", "created_at", "some_new_column"):
        sql = f"UPDATE builds SET {column} = $2 WHERE id = $1 RETURNING *"
        assert marks(sql, [row]) == {BUILDS, build_mark("b1")}, column
    cut = "UPDATE builds SET status = (SELECT s FROM x) WHERE id = $1 RETURNING *"
    assert marks(cut, [row]) == {BUILDS, build_mark("b1")}


def test_writes_no_answer_shows_give_nothing() -> None:
    assert (
        marks("UPDATE builds SET log_lines = log_lines + u.n, log_truncated = u.t FROM u") == set()
    )
    assert marks("INSERT INTO build_logs (build_id, sequence) SELECT * FROM unnest($1)") == set()
    assert marks("INSERT INTO audit_log (id) VALUES ($1)") == set()
    assert marks("UPDATE sessions SET last_seen_at = $1") == set()
    assert marks("DELETE FROM build_logs WHERE build_id = ANY($1)") == {ANY_BUILD}


def test_runners_and_everything_else() -> None:
    heartbeat = "UPDATE runners r SET status = h.status, last_heartbeat_at = h.at FROM h"
    assert marks(heartbeat) == {RUNNERS}
    assert marks("INSERT INTO runners (id, name) VALUES ($1, $2)") == {RUNNERS}
    assert marks("UPDATE runners SET name = COALESCE($2, name) WHERE id = $1") == {WORLD}
    assert marks("DELETE FROM runners WHERE id = $1") == {WORLD}
    assert marks("UPDATE projects SET name = $2 WHERE id = $1") == {WORLD}
    assert marks("INSERT INTO project_members (project_id) VALUES ($1)") == {WORLD}
    assert marks("INSERT INTO some_new_table (id) VALUES ($1)") == {WORLD}


async def test_each_call_tells_its_marks_before_its_caller_goes_on(store: Store) -> None:
    heard: list[frozenset[str]] = []
    store.db.changes.listen(heard.append)
    w = await world(store)
    heard.clear()
    await store.builds.get(w.build_id)
    assert heard == []  # a read
    moved = await store.builds.transition(
        Transition(w.build_id, BuildStatus.ASSIGNED, BuildStatus.RUNNING, "r", "started", NOW)
    )
    assert moved is not None
    scopes = scopes_of(w.project_id, moved.pipeline_id)
    assert heard == [frozenset({build_mark(w.build_id), *map(moved_mark, scopes)})]
    heard.clear()
    lines = (LogLine(0, "hello", "stdout"),)
    appended = await store.builds.append_logs(
        w.build_id, (LogWrite(w.runner_id, 1, lines),), cap=100, notice="cut", now=NOW
    )
    assert appended.counts == [1]
    assert heard == []  # new lines of a running attempt, and its line count
