"""LogCommits: the appends of many builds share one commit; one bad build fails alone."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from oore.actors import Supervisor
from oore.domain.logs import LogLine, LogWrite
from oore.errors import StoreUnavailable
from oore.live.logcommit import LogCommits
from oore.live.logstream import Appended

Groups = list[tuple[str, tuple[LogWrite, ...]]]


class Store:
    """Answers each build with its lines; fails any batch holding the build ``bad``."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate: trio.Event | None = None
        self.down = False

    async def commit(self, groups: Groups) -> list[Appended]:
        if self.gate is not None:
            await self.gate.wait()
        self.batches.append([build_id for build_id, _ in groups])
        if self.down:
            raise StoreUnavailable()
        if any(build_id == "bad" for build_id, _ in groups):
            raise ValueError("cannot write bad")
        return [
            Appended([len(w.lines) for w in writes], [x for w in writes for x in w.lines], 1)
            for _, writes in groups
        ]


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
async def commits(store: Store) -> AsyncIterator[LogCommits]:
    commits = LogCommits(store.commit)
    supervisor = Supervisor("logs", [commits.spec()])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        yield commits
        supervisor.stop()


def write(build_id: str) -> tuple[LogWrite, ...]:
    return (LogWrite("r", 1, (LogLine(0, build_id, "stdout"),)),)


async def test_builds_waiting_together_share_one_commit(commits: LogCommits, store: Store) -> None:
    store.gate = trio.Event()
    answers: dict[str, list[str]] = {}

    async def append(build_id: str) -> None:
        appended = await commits.commit(build_id, write(build_id))
        answers[build_id] = [line.content for line in appended.lines]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(append, "a")
        await trio.testing.wait_all_tasks_blocked()
        for build_id in ("b", "c", "d"):
            nursery.start_soon(append, build_id)
        await trio.testing.wait_all_tasks_blocked()
        store.gate.set()
    assert [sorted(batch) for batch in store.batches] == [["a"], ["b", "c", "d"]]
    assert answers == {name: [name] for name in "abcd"}
    assert commits.statistics().batches == 2


async def test_a_build_that_cannot_be_written_fails_only_its_own_append(
    commits: LogCommits, store: Store
) -> None:
    store.gate = trio.Event()
    outcomes: dict[str, object] = {}

    async def append(build_id: str) -> None:
        try:
            outcomes[build_id] = (await commits.commit(build_id, write(build_id))).counts
        except ValueError as exc:
            outcomes[build_id] = exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(append, "first")
        await trio.testing.wait_all_tasks_blocked()
        for build_id in ("ok", "bad", "fine"):
            nursery.start_soon(append, build_id)
        await trio.testing.wait_all_tasks_blocked()
        store.gate.set()
    assert outcomes["first"] == outcomes["ok"] == outcomes["fine"] == [1]
    assert isinstance(outcomes["bad"], ValueError)


async def test_with_the_database_away_every_append_fails_at_once(
    commits: LogCommits, store: Store
) -> None:
    store.gate = trio.Event()
    failed: list[str] = []

    async def append(build_id: str) -> None:
        with pytest.raises(StoreUnavailable):
            await commits.commit(build_id, write(build_id))
        failed.append(build_id)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(append, "first")
        await trio.testing.wait_all_tasks_blocked()
        store.down = True
        for build_id in ("x", "y"):
            nursery.start_soon(append, build_id)
        await trio.testing.wait_all_tasks_blocked()
        store.gate.set()
    assert sorted(failed) == ["first", "x", "y"]
    assert len(store.batches) == 2  # no build-by-build retry while the database is away
