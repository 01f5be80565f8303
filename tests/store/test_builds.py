"""Builds made in a burst take turns per project before they take a connection; a claim
reads what its build's log is to mask; a transition and its event are one statement."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pytest
import trio

from oore.domain.builds import BuildStatus, Transition, TriggerType
from oore.domain.tokens import hash_token, new_token
from oore.errors import Conflict, NotFound
from oore.store import Store, open_store
from oore.store.builds import NewBuild, PickRow
from oore.store.database import Connection
from tests.scheduling import kit
from tests.store.test_artifacts import NOW, world

HELD_SECONDS = 5  # how long another daemon holds the project's row


async def _hold_project(conn: Connection, project_id: str, seconds: float) -> None:
    await conn.execute("SELECT 1 FROM projects WHERE id = $1 FOR UPDATE", uuid.UUID(project_id))
    await conn.execute("SELECT pg_sleep($1)", seconds)


async def _waiting_on_a_lock(conn: Connection) -> int:
    count: int = await conn.fetchval(
        """SELECT count(*) FROM pg_stat_activity
           WHERE datname = current_database() AND wait_event_type = 'Lock'"""
    )
    return count


async def _project_locked(conn: Connection) -> bool:
    locked: bool = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                          WHERE c.relname = 'projects' AND l.mode = 'RowShareLock'
                            AND l.pid <> pg_backend_pid())"""
    )
    return locked


async def _until(store: Store, probe: Any) -> None:
    with trio.fail_after(HELD_SECONDS):
        while not await store.db.run(probe):  # noqa: ASYNC110 (a database to poll)
            await trio.sleep(0.02)


async def test_a_burst_of_builds_for_one_project_leaves_the_pool_to_others(
    database_url: str,
) -> None:
    """Another daemon holds the project's row: five builds of that project wait for it,
    one of them on a connection and the others in memory, so a read on this daemon's pool
    of two still gets a connection and is answered while the row is held. Then the five
    are made, numbered one after the other."""
    async with (
        open_store(database_url, pool_size=2) as store,
        open_store(database_url, pool_size=1) as other,
        open_store(database_url, pool_size=1) as watch,
    ):
        w = await world(store)
        first = await store.builds.get(w.build_id)
        assert first is not None
        template = NewBuild(
            w.project_id, first.pipeline_id, TriggerType.MANUAL, None, None, "main",
            "a" * 40, "main", None, None, {}, (), "build created", NOW,
        )  # fmt: skip
        released = False
        made: list[int] = []

        async def hold() -> None:
            nonlocal released
            await other.db.transaction(_hold_project, w.project_id, HELD_SECONDS)
            released = True

        async def create() -> None:
            build = await store.builds.create(template)
            assert build is not None
            made.append(build.build_number)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold)
            await _until(watch, _project_locked)
            for _ in range(5):
                nursery.start_soon(create)
            await _until(watch, _waiting_on_a_lock)
            read = await store.builds.get(w.build_id)
            assert read is not None and not released and made == []
        assert released and sorted(made) == [2, 3, 4, 5, 6]


async def _signing_passwords(conn: Connection, pipeline_id: str) -> None:
    """A disabled Android profile with one password and disabled iOS signing with its own."""
    key = uuid.UUID(pipeline_id)
    await conn.execute(
        """INSERT INTO android_signing_profiles (pipeline_id, build_type, enabled,
                                                 store_password_encrypted, updated_at)
           VALUES ($1, 'debug', false, 'sealed-store', $2)""",
        key,
        NOW,
    )
    await conn.execute(
        """INSERT INTO pipeline_ios_signing (pipeline_id, enabled, mode, export_method,
                                             bundle_ids, p12_password_encrypted, updated_at)
           VALUES ($1, false, 'manual', 'app_store', '{}', 'sealed-p12', $2)""",
        key,
        NOW,
    )


async def test_a_claim_reads_the_sealed_passwords_of_its_builds_pipeline(store: Store) -> None:
    w = await kit.world(store)
    [runner] = await kit.runners(store, 1)
    await store.db.run(_signing_passwords, w.pipeline_id)
    await store.builds.create(w.build())
    now = kit.CLOCK.now()
    pick = PickRow(runner.id, frozenset(), hash_token(new_token()), now + 120, now)
    [outcome] = await store.builds.pick_claims([pick])
    assert outcome.build is not None
    # what the log is to mask, enabled or not, as the signing store reads it
    read = await store.signing.sealed_passwords(w.pipeline_id)
    assert sorted(outcome.sealed_passwords) == sorted(read) == ["sealed-p12", "sealed-store"]
    assert (outcome.android_signing, outcome.ios_signing) == (False, False)


async def test_a_transition_returns_the_whole_history_with_its_own_event_last(
    store: Store,
) -> None:
    w = await world(store)
    running = Transition(
        w.build_id, BuildStatus.ASSIGNED, BuildStatus.RUNNING, "runner:r", "started", NOW + 1
    )
    build, history = await store.builds.transition_with_events(running)
    assert build.status is BuildStatus.RUNNING and build.started_at == NOW + 1
    assert build.context["project_name"] == "app"
    assert [(e.from_status, e.to_status) for e in history] == [
        (None, BuildStatus.QUEUED),
        (BuildStatus.QUEUED, BuildStatus.SCHEDULED),
        (BuildStatus.SCHEDULED, BuildStatus.ASSIGNED),
        (BuildStatus.ASSIGNED, BuildStatus.RUNNING),
    ]
    assert (history[-1].actor, history[-1].reason, history[-1].created_at) == (
        "runner:r",
        "started",
        NOW + 1,
    )
    assert history == await store.builds.events(w.build_id)  # as stored, in order

    # A compare-and-set that loses writes nothing: no event without its change.
    with pytest.raises(Conflict) as lost:
        await store.builds.transition_with_events(running)
    assert lost.value.code == "concurrent_modification"
    with pytest.raises(Conflict):
        await store.builds.transition(replace(running, runner_id=str(uuid.uuid4())))
    assert await store.builds.events(w.build_id) == history
    with pytest.raises(NotFound):
        await store.builds.transition(replace(running, build_id=str(uuid.uuid4())))

    done, _ = await store.builds.transition_with_events(
        Transition(
            w.build_id,
            BuildStatus.RUNNING,
            BuildStatus.SUCCEEDED,
            "runner:r",
            None,
            NOW + 2,
            exit_code=0,
            runner_id=w.runner_id,
        )
    )
    assert (done.status, done.exit_code, done.finished_at) == (BuildStatus.SUCCEEDED, 0, NOW + 2)
    assert (done.runner_id, done.last_runner_id) == (None, w.runner_id)
    assert len(await store.builds.events(w.build_id)) == 5
