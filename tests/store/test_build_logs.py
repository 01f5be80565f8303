"""Log lines per attempt: a requeued build's next attempt writes a log of its own."""

from __future__ import annotations

from oore.domain.builds import BuildStatus, Transition
from oore.domain.logs import LogLine, LogWrite
from oore.domain.tokens import hash_token, new_token
from oore.store import Store
from oore.store.admin import drop_database, recreate_database
from oore.store.builds import ClaimRow, LogAppend
from oore.store.database import Connection, open_database
from oore.store.migrations import migrate
from oore.store.runners import NewRunner
from tests.conftest import PostgresForTests
from tests.store.test_artifacts import NOW, world

CAP = 1000


def lines(text: str, start: int, count: int) -> tuple[LogLine, ...]:
    return tuple(LogLine(n, f"{text}{n}", "stdout") for n in range(start, start + count))


async def append(store: Store, build_id: str, *writes: LogWrite, cap: int = CAP) -> LogAppend:
    return await store.builds.append_logs(build_id, writes, cap=cap, notice="cut", now=NOW)


async def requeue(store: Store, build_id: str) -> None:
    """The runner was lost: back to the queue for the next attempt."""
    await store.builds.transition(
        Transition(
            build_id,
            BuildStatus.ASSIGNED,
            BuildStatus.QUEUED,
            "system",
            "runner lost",
            NOW,
            requeue=True,
        )
    )


async def claim_by_another(store: Store, build_id: str) -> str:
    runner = await store.runners.register(
        NewRunner("r2", None, (), 1, hash_token(new_token()), None, None, NOW)
    )
    claim = ClaimRow(build_id, runner.id, hash_token(new_token()), NOW + 120, NOW)
    [outcome] = await store.builds.commit_claims([claim])
    assert outcome.build is not None and outcome.build.attempt == 2
    return runner.id


async def contents(store: Store, build_id: str, attempt: int) -> tuple[list[str], int]:
    found, total = await store.builds.logs(build_id, attempt=attempt, after=-1, limit=None)
    return [line.content for line in found], total


async def test_each_attempt_keeps_its_own_log_and_a_lost_attempt_writes_nothing(
    store: Store,
) -> None:
    w = await world(store)
    first = await append(store, w.build_id, LogWrite(w.runner_id, 1, lines("a", 0, 18)))
    assert first.counts == [18] and first.attempt == 1
    await requeue(store, w.build_id)
    late = await append(store, w.build_id, LogWrite(w.runner_id, 1, lines("late", 18, 2)))
    assert late.counts == [None] and late.lines == []
    other = await claim_by_another(store, w.build_id)
    second = await append(
        store,
        w.build_id,
        LogWrite(other, 2, lines("b", 0, 40)),
        LogWrite(w.runner_id, 1, lines("late", 0, 3)),  # in the same group commit
        LogWrite(other, 1, lines("wrong", 40, 1)),  # the holder, naming an attempt that is over
    )
    assert second.counts == [40, None, None] and second.attempt == 2
    assert [line.sequence for line in second.lines] == list(range(40))
    assert await contents(store, w.build_id, 2) == ([f"b{n}" for n in range(40)], 40)
    assert await contents(store, w.build_id, 1) == ([f"a{n}" for n in range(18)], 18)
    state = await store.builds.log_state(w.build_id)
    assert state is not None and (state.status, state.attempt) == (BuildStatus.ASSIGNED, 2)


async def test_every_attempt_has_the_whole_line_limit(store: Store) -> None:
    w = await world(store)
    full = await append(store, w.build_id, LogWrite(w.runner_id, 1, lines("a", 0, 7)), cap=5)
    assert full.counts == [5] and full.lines[-1].content == "cut"
    await requeue(store, w.build_id)
    other = await claim_by_another(store, w.build_id)
    fresh = await append(store, w.build_id, LogWrite(other, 2, lines("b", 0, 5)), cap=5)
    assert fresh.counts == [5] and "cut" not in [line.content for line in fresh.lines]
    assert (await contents(store, w.build_id, 1))[1] == 6  # five lines and the notice


async def _runner_history_columns(conn: Connection, change: str) -> None:
    types = {"ADD COLUMN": (" uuid", " text"), "DROP COLUMN": ("", "")}[change]
    await conn.execute(
        f"ALTER TABLE builds {change} last_runner_id{types[0]}, {change} last_runner_name{types[1]}"
    )
    # Today's claims also read the build's variables (a later migration's table).
    if change == "ADD COLUMN":
        await conn.execute(
            """CREATE TABLE variables (id uuid, project_id uuid, pipeline_id uuid, name text,
                   value_encrypted text, secret boolean, created_at bigint, updated_at bigint)"""
        )
    else:
        await conn.execute("DROP TABLE variables")


async def test_upgrading_files_earlier_lines_under_the_builds_current_attempt(
    postgres: PostgresForTests,
) -> None:
    name = postgres.new_name()
    await recreate_database(postgres.admin_url, name)
    try:
        async with open_database(postgres.url(name), pool_size=2) as db:
            assert await migrate(db, up_to=7) == list(range(1, 8))
            store = Store(db)
            # Today's claims also write who ran a build and read its variables (a later
            # migration's columns and table): the old schema gets them while the builds
            # are made, then loses them again.
            await db.run(_runner_history_columns, "ADD COLUMN")
            requeued = await world(store, "/srv/one")
            await requeue(store, requeued.build_id)
            plain = await world(store, "/srv/two")
            await db.run(_runner_history_columns, "DROP COLUMN")

            async def old_lines(conn: Connection) -> None:
                for build_id in (requeued.build_id, plain.build_id):
                    await conn.execute(
                        """INSERT INTO build_logs (build_id, sequence, content, stream,
                                                   created_at)
                           SELECT $1, s, 'old' || s, 'stdout', $2 FROM generate_series(0, 2) s""",
                        build_id,
                        NOW,
                    )

            await db.run(old_lines)
            assert await migrate(db, up_to=8) == [8]
            old = ["old0", "old1", "old2"]

            # Read as this schema stands (later migrations add columns today's reads use).
            async def filed(conn: Connection, build_id: str, attempt: int) -> list[str]:
                rows = await conn.fetch(
                    """SELECT content FROM build_logs WHERE build_id = $1 AND attempt = $2
                       ORDER BY sequence""",
                    build_id,
                    attempt,
                )
                return [row["content"] for row in rows]

            assert await db.run(filed, requeued.build_id, 2) == old
            assert await db.run(filed, requeued.build_id, 1) == []
            assert await db.run(filed, plain.build_id, 1) == old

            async def key(conn: Connection) -> str:
                found: str = await conn.fetchval(
                    """SELECT pg_get_constraintdef(oid) FROM pg_constraint
                       WHERE conrelid = 'build_logs'::regclass AND contype = 'p'"""
                )
                return found

            assert await db.run(key) == "PRIMARY KEY (build_id, attempt, sequence)"
    finally:
        await drop_database(postgres.admin_url, name)
