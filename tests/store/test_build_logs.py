"""Log lines per attempt: a requeued build's next attempt writes a log of its own."""

from __future__ import annotations

from oore.domain.builds import BuildStatus, Transition
from oore.domain.ids import new_id
from oore.domain.logs import LogLine, LogWrite, page_of
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


async def test_a_build_is_read_with_a_page_of_its_log_or_its_events_in_one_call(
    store: Store,
) -> None:
    w = await world(store)
    await append(store, w.build_id, LogWrite(w.runner_id, 1, lines("a", 0, 12)))
    await requeue(store, w.build_id)
    other = await claim_by_another(store, w.build_id)
    await append(store, w.build_id, LogWrite(other, 2, lines("b", 0, 4)))

    found = await store.builds.get_with_logs(w.build_id, attempt=None, after=1, limit=2)
    assert found is not None
    build, page = found
    assert build.id == w.build_id and build.attempt == 2  # the current attempt by default
    assert page is not None and (page.attempt, page.total) == (2, 4)
    assert [line.content for line in page.lines] == ["b2", "b3"]
    earlier = await store.builds.get_with_logs(w.build_id, attempt=1, after=-1, limit=3, before=12)
    assert earlier is not None and earlier[1] is not None
    assert [line.content for line in earlier[1].lines] == ["a9", "a10", "a11"]
    for missing in (0, 3):  # no such attempt: the build, and no page
        beyond = await store.builds.get_with_logs(w.build_id, attempt=missing, after=-1, limit=1)
        assert beyond is not None and beyond[0].id == w.build_id and beyond[1] is None
    for unknown in (new_id(), "not-a-uuid"):
        assert await store.builds.get_with_logs(unknown, attempt=None, after=-1, limit=1) is None
        assert await store.builds.get_with_events(unknown) is None

    with_events = await store.builds.get_with_events(w.build_id)
    assert with_events is not None
    assert with_events[0] == await store.builds.get(w.build_id)
    assert with_events[1] == await store.builds.events(w.build_id) != []


async def _runner_history_columns(conn: Connection, change: str) -> None:
    types = {"ADD COLUMN": (" uuid", " text"), "DROP COLUMN": ("", "")}[change]
    await conn.execute(
        f"ALTER TABLE builds {change} last_runner_id{types[0]}, {change} last_runner_name{types[1]}"
    )
    # Today's claims also read the build's variables, whether its pipeline signs and its
    # signing passwords (later migrations' tables).
    if change == "ADD COLUMN":
        await conn.execute(
            """CREATE TABLE variables (id uuid, project_id uuid, pipeline_id uuid, name text,
                   value_encrypted text, secret boolean, created_at bigint, updated_at bigint)"""
        )
        await conn.execute(
            """CREATE TABLE android_signing_profiles (pipeline_id uuid, enabled boolean,
                   store_password_encrypted text, key_password_encrypted text)"""
        )
        await conn.execute(
            """CREATE TABLE pipeline_ios_signing (pipeline_id uuid, enabled boolean,
                   p12_password_encrypted text)"""
        )
    else:
        await conn.execute("DROP TABLE variables, android_signing_profiles, pipeline_ios_signing")


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


async def test_appends_of_several_builds_commit_together_each_under_its_own_rules(
    store: Store,
) -> None:
    one = await world(store, "/srv/one")
    capped = await world(store, "/srv/capped")
    lost = await world(store, "/srv/lost")
    await append(store, capped.build_id, LogWrite(capped.runner_id, 1, lines("c", 0, 2)))
    await requeue(store, lost.build_id)
    gone = new_id()
    answers = await store.builds.append_logs_of_builds(
        [
            # first sequence wins, within a group and across its writes
            (
                one.build_id,
                (
                    LogWrite(one.runner_id, 1, lines("a", 0, 4)),
                    LogWrite(one.runner_id, 1, lines("dup", 2, 3)),
                ),
            ),
            # two stored already; room for three of the rest, then the notice
            (capped.build_id, (LogWrite(capped.runner_id, 1, lines("c", 1, 7)),)),
            (lost.build_id, (LogWrite(lost.runner_id, 1, lines("late", 0, 2)),)),
            (gone, (LogWrite(one.runner_id, 1, lines("x", 0, 1)),)),
            # the same build again, later in the batch: its earlier groups count as stored
            (one.build_id, (LogWrite(one.runner_id, 1, lines("again", 3, 2)),)),
            (capped.build_id, (LogWrite(capped.runner_id, 1, lines("c", 8, 1)),)),
        ],
        cap=5,
        notice="cut",
        now=NOW,
    )
    first, cut, late, missing, again, after_cut = answers
    assert first.counts == [4, 1] and first.attempt == 1
    assert [line.content for line in first.lines] == ["a0", "a1", "a2", "a3", "dup4"]
    assert cut.counts == [3] and [line.content for line in cut.lines] == ["c2", "c3", "c4", "cut"]
    assert cut.lines[-1].sequence == 5 and cut.lines[-1].stream == "stderr"
    assert (late.counts, late.lines, late.attempt) == ([None], [], 2)
    assert (missing.counts, missing.lines, missing.attempt) == ([None], [], 0)
    assert again.counts == [0] and again.lines == []
    assert (after_cut.counts, after_cut.lines) == ([0], [])
    assert await contents(store, one.build_id, 1) == (["a0", "a1", "a2", "a3", "dup4"], 5)
    assert await contents(store, capped.build_id, 1) == (["c0", "c1", "c2", "c3", "c4", "cut"], 6)
    assert await contents(store, lost.build_id, 1) == ([], 0)
    assert await contents(store, lost.build_id, 2) == ([], 0)
    more = await append(store, capped.build_id, LogWrite(capped.runner_id, 1, lines("c", 9, 1)))
    assert more.counts == [0]  # the batch marked the log truncated


async def test_a_batch_far_from_its_caps_keeps_the_same_rules(store: Store) -> None:
    # far from the cap, a batch is written by one statement: the same answers as above
    one = await world(store, "/srv/one")
    two = await world(store, "/srv/two")
    lost = await world(store, "/srv/lost")
    await append(store, two.build_id, LogWrite(two.runner_id, 1, lines("c", 0, 2)))
    await requeue(store, lost.build_id)
    answers = await store.builds.append_logs_of_builds(
        [
            (
                one.build_id,
                (
                    LogWrite(one.runner_id, 1, lines("a", 0, 4)),
                    LogWrite(two.runner_id, 1, lines("other", 4, 1)),  # not its holder
                    LogWrite(one.runner_id, 1, lines("dup", 2, 3)),
                ),
            ),
            (two.build_id, (LogWrite(two.runner_id, 1, lines("c", 1, 3)),)),  # one stored
            (lost.build_id, (LogWrite(lost.runner_id, 1, lines("late", 0, 2)),)),
            (new_id(), (LogWrite(one.runner_id, 1, lines("x", 0, 1)),)),
            ("not-an-id", (LogWrite(one.runner_id, 1, lines("x", 0, 1)),)),
            (one.build_id, (LogWrite(one.runner_id, 1, lines("again", 3, 3)),)),
        ],
        cap=CAP,
        notice="cut",
        now=NOW,
    )
    first, second, late, missing, malformed, again = answers
    assert first.counts == [4, None, 1] and first.attempt == 1
    assert [line.content for line in first.lines] == ["a0", "a1", "a2", "a3", "dup4"]
    assert second.counts == [2] and [line.content for line in second.lines] == ["c2", "c3"]
    assert (late.counts, late.lines, late.attempt) == ([None], [], 2)
    assert (missing.counts, missing.lines, missing.attempt) == ([None], [], 0)
    assert (malformed.counts, malformed.lines) == ([None], [])
    assert again.counts == [1] and [line.content for line in again.lines] == ["again5"]
    assert await contents(store, one.build_id, 1) == (
        ["a0", "a1", "a2", "a3", "dup4", "again5"],
        6,
    )
    assert await contents(store, two.build_id, 1) == (["c0", "c1", "c2", "c3"], 4)
    assert await contents(store, lost.build_id, 2) == ([], 0)
    # the counts the statement added are the builds' own: five more fill a cap of ten
    full = await append(store, two.build_id, LogWrite(two.runner_id, 1, lines("c", 4, 7)), cap=10)
    assert full.counts == [6] and [line.content for line in full.lines][-2:] == ["c9", "cut"]


async def test_lines_stored_already_do_not_count_against_the_room_left(store: Store) -> None:
    w = await world(store)
    await append(store, w.build_id, LogWrite(w.runner_id, 1, lines("a", 0, 3)), cap=5)
    # four offered, two of them stored: the two new ones fill the log without a cut
    filled = await append(store, w.build_id, LogWrite(w.runner_id, 1, lines("a", 1, 4)), cap=5)
    assert filled.counts == [2] and [line.content for line in filled.lines] == ["a3", "a4"]
    assert await contents(store, w.build_id, 1) == ([f"a{n}" for n in range(5)], 5)
    cut = await append(store, w.build_id, LogWrite(w.runner_id, 1, lines("a", 5, 1)), cap=5)
    assert cut.counts == [0] and [line.content for line in cut.lines] == ["cut"]


async def test_lines_of_several_builds_keep_their_steps(store: Store) -> None:
    one = await world(store, "/srv/one")
    two = await world(store, "/srv/two")
    answers = await store.builds.append_logs_of_builds(
        [
            (one.build_id, (LogWrite(one.runner_id, 1, (LogLine(0, "a", "stdout", step=1),)),)),
            (
                two.build_id,
                (LogWrite(two.runner_id, 1, (LogLine(0, "b", "stderr", 3, 0, "lint"),)),),
            ),
        ],
        cap=CAP,
        notice="cut",
        now=NOW,
    )
    assert [answer.counts for answer in answers] == [[1], [1]]
    (a,), _ = await store.builds.logs(one.build_id, attempt=1, after=-1, limit=None)
    (b,), _ = await store.builds.logs(two.build_id, attempt=1, after=-1, limit=None)
    assert (a.content, a.stream, a.step, a.step_name, a.at) == ("a", "stdout", 1, None, NOW)
    assert (b.content, b.stream, b.step, b.step_name, b.at) == ("b", "stderr", 0, "lint", NOW)


async def test_a_finished_attempt_comes_whole_and_cuts_like_the_store_reads(store: Store) -> None:
    """Asked for whole, a finished attempt's lines come whole (a running one, or one over
    the bound, as the page asked); every window cut from them is the store's own page."""
    w = await world(store)
    await append(store, w.build_id, LogWrite(w.runner_id, 1, lines("a", 0, 12)))
    running = await store.builds.get_with_logs(
        w.build_id, attempt=None, after=1, limit=2, whole_up_to=100
    )
    assert running is not None and running[1] is not None and not running[1].whole
    await requeue(store, w.build_id)  # attempt 1 is over
    other = await claim_by_another(store, w.build_id)
    await append(store, w.build_id, LogWrite(other, 2, lines("b", 0, 3)))
    found = await store.builds.get_with_logs(
        w.build_id, attempt=1, after=5, limit=1, whole_up_to=100
    )
    assert found is not None and found[1] is not None
    whole = found[1]
    assert whole.whole and whole.total == 12 and len(whole.lines) == 12
    over = await store.builds.get_with_logs(w.build_id, attempt=1, after=5, limit=1, whole_up_to=11)
    assert over is not None and over[1] is not None and not over[1].whole
    assert [line.content for line in over[1].lines] == ["a6"] and over[1].total == 12
    for after in (-5, -1, 0, 3, 11, 12, 40):
        for before in (None, 0, 1, 4, 12, 13, 100):
            for limit in (None, 0, 1, 5, 100):
                read = await store.builds.logs(
                    w.build_id, attempt=1, after=after, limit=limit, before=before
                )
                cut = page_of(whole.lines, after, before, limit)
                assert cut == read[0], (after, before, limit)
