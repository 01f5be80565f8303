"""Runners in the store: deletion, and the record of which runner ran a build."""

from __future__ import annotations

from importlib import resources

import pytest

from oore.domain.tokens import hash_token, new_token
from oore.errors import Conflict
from oore.store import Store
from oore.store.builds import ClaimRow
from oore.store.database import Connection
from oore.store.runners import NewRunner
from tests.store.test_artifacts import NOW, world
from tests.store.test_build_logs import requeue


async def new_runner(store: Store, name: str) -> str:
    runner = await store.runners.register(
        NewRunner(name, None, (), 1, hash_token(new_token()), None, None, NOW)
    )
    return runner.id


def claim(build_id: str, runner_id: str) -> ClaimRow:
    return ClaimRow(build_id, runner_id, hash_token(new_token()), NOW + 120, NOW)


async def test_a_claim_for_a_deleted_runner_loses_alone(store: Store) -> None:
    first, second = await world(store, "/srv/one"), await world(store, "/srv/two")
    for w in (first, second):
        await requeue(store, w.build_id)
    leaving, staying = await new_runner(store, "leaving"), await new_runner(store, "staying")
    assert await store.runners.delete(leaving) is True
    lost, won = claim(first.build_id, leaving), claim(second.build_id, staying)
    lost_out, won_out = await store.builds.commit_claims([lost, won])
    assert (lost_out.build, lost_out.runner_gone) == (None, True)
    assert won_out.build is not None and not won_out.runner_gone
    assert won_out.build.last_runner_id == staying
    still = await store.builds.get(first.build_id)
    assert still is not None and still.status.value == "queued"


async def test_a_runner_is_deleted_once_its_builds_end_and_they_keep_its_name(
    store: Store,
) -> None:
    w = await world(store)
    with pytest.raises(Conflict) as busy:
        await store.runners.delete(w.runner_id)
    assert busy.value.code == "runner_has_builds" and w.build_id in busy.value.message
    shown = await store.runners.get(w.runner_id)
    assert shown is not None and shown.current_builds == (w.build_id,)
    await requeue(store, w.build_id)
    assert await store.runners.delete(w.runner_id) is True
    build = await store.builds.get(w.build_id)
    assert build is not None and build.runner_id is None
    assert (build.last_runner_id, build.context["runner_name"]) == (w.runner_id, "r")


async def test_the_upgrade_finds_who_ran_earlier_builds_in_their_events(store: Store) -> None:
    w = await world(store)
    await requeue(store, w.build_id)
    other = await new_runner(store, "second")
    await store.builds.commit_claims([claim(w.build_id, other)])
    sql = (
        resources.files("oore.store")
        .joinpath("migrations", "0011_runner_history.sql")
        .read_text(encoding="utf-8")
    )
    backfill = sql[sql.index("UPDATE builds") :]

    async def as_before_the_upgrade(conn: Connection) -> None:
        await conn.execute("UPDATE builds SET last_runner_id = NULL, last_runner_name = NULL")
        await conn.execute(backfill)

    await store.db.run(as_before_the_upgrade)
    build = await store.builds.get(w.build_id)
    assert build is not None
    assert (build.last_runner_id, build.context["runner_name"]) == (other, "second")
