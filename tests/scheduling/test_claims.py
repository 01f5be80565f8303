"""Claims: committed in batches, and a build queued while a runner waits goes to it in the
trigger's own transaction."""

from __future__ import annotations

from pathlib import Path

import trio

from oore.domain.builds import BuildStatus
from oore.domain.tokens import hash_token, new_token
from oore.scheduling import Job, SchedulingConfig
from oore.scheduling.claims import Claims
from oore.store import Store
from oore.store.builds import ClaimOutcome, PickRow
from oore.store.database import Connection
from tests.scheduling.kit import BOUND, CLOCK, runners, runtime, until, world

CLAIMS = 30


async def test_claims_ready_together_are_committed_in_one_store_call(store: Store) -> None:
    w = await world(store)
    fleet = await runners(store, CLAIMS)
    builds = [await store.builds.create(w.build()) for _ in range(CLAIMS)]
    claims = Claims(store)
    outcomes: list[ClaimOutcome] = []

    async def claim(runner_id: str) -> None:
        now = CLOCK.now()
        row = PickRow(runner_id, frozenset(), hash_token(new_token()), now + 120, now)
        outcomes.append(await claims.commit(row))

    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            await nursery.start(claims.run)
            async with trio.open_nursery() as claimants:
                for runner in fleet:
                    claimants.start_soon(claim, runner.id)
            claims.stop()
    assert (claims.batches, claims.rows) == (1, CLAIMS)
    assert all(o.build is not None and o.build.status is BuildStatus.ASSIGNED for o in outcomes)
    # Each claim got a build of its own, the oldest first.
    assert {o.build.id for o in outcomes if o.build} == {b.id for b in builds if b}


async def test_a_parked_runner_gets_a_new_build_in_its_creating_transaction(
    store: Store, tmp_path: Path
) -> None:
    w = await world(store)
    [runner] = await runners(store, 1)
    async with runtime(store, tmp_path, SchedulingConfig()) as rt:
        scheduling = rt.scheduling
        got: list[Job | None] = []

        async def park() -> None:
            got.append(await scheduling.claim(runner, 60))

        with trio.fail_after(BOUND):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(park)
                await until(lambda: scheduling.depth()[1] == 1)
                build = await scheduling.queue(w.build())
        assert build is not None
        assert (build.status, build.runner_id) == (BuildStatus.ASSIGNED, runner.id)
        [job] = got
        assert job is not None and job.build.id == build.id
        assert scheduling.claims.batches == 0  # no claim batch was needed

    async def transactions(conn: Connection) -> set[int]:
        rows = await conn.fetch(
            """SELECT xmin::text::bigint AS xid FROM builds WHERE id = $1
               UNION SELECT xmin::text::bigint FROM build_events WHERE build_id = $1""",
            build.id,
        )
        return {row["xid"] for row in rows}

    assert len(await store.db.run(transactions)) == 1  # created and assigned in one commit
    events = await store.builds.events(build.id)
    assert [e.to_status for e in events] == [
        BuildStatus.QUEUED,
        BuildStatus.SCHEDULED,
        BuildStatus.ASSIGNED,
    ]


async def test_a_runner_whose_labels_do_not_fit_is_not_picked(store: Store, tmp_path: Path) -> None:
    w = await world(store)
    [linux] = await runners(store, 1, labels=["linux"])
    async with runtime(store, tmp_path, SchedulingConfig()) as rt:
        scheduling = rt.scheduling
        got: list[Job | None] = []

        async def park() -> None:
            got.append(await scheduling.claim(linux, 1))

        with trio.fail_after(BOUND):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(park)
                await until(lambda: scheduling.depth()[1] == 1)
                build = await scheduling.queue(w.build("macos"))
        assert build is not None and build.status is BuildStatus.QUEUED
        assert got == [None]
