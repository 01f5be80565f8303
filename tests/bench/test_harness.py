"""The bench harness's view of a daemon and its database, against a real ``oored``."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg

from bench.harness import (
    percentile,
    percentile_bounds,
    postgres_url,
    settle,
    started_daemon,
    worker_pids,
)


def test_worker_pids_come_in_the_order_of_their_slots() -> None:
    # The supervisor starts its workers together, so their pids may come in any order;
    # a figure named for worker 0 (the runners' lane) must be worker 0's.
    with started_daemon(workers=2) as server:
        pids = worker_pids(server)
        slots = []
        for pid in pids:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            slots.append(args[args.index(b"--worker-slot") + 1])
    assert slots == [b"0", b"1"]


def test_the_daemon_runs_in_a_session_of_its_own() -> None:
    with started_daemon() as server:
        assert os.getsid(server.pid) == server.pid
        assert os.getsid(server.pid) != os.getsid(0)


async def _upkeep_seen(url: str) -> tuple[int, int, int]:
    connection = await asyncpg.connect(url)
    try:
        row = await connection.fetchrow(
            "SELECT count(*) FILTER (WHERE last_vacuum IS NULL) AS unvacuumed,"
            " count(*) FILTER (WHERE last_analyze IS NULL) AS unanalyzed,"
            " (SELECT checkpoints_req FROM pg_stat_bgwriter) AS checkpoints"
            " FROM pg_stat_user_tables"
        )
    finally:
        await connection.close()
    assert row is not None
    return int(row["unvacuumed"]), int(row["unanalyzed"]), int(row["checkpoints"])


def test_settle_vacuums_analyzes_and_checkpoints_the_daemons_database() -> None:
    with started_daemon() as server:
        url = postgres_url(server)
        unvacuumed, unanalyzed, checkpoints = asyncio.run(_upkeep_seen(url))
        assert unvacuumed > 0 and unanalyzed > 0  # a fresh database: no upkeep done yet
        settle(server)
        assert asyncio.run(_upkeep_seen(url)) == (0, 0, checkpoints + 1)


def test_a_p99s_bounds_widen_as_its_samples_thin() -> None:
    # 240 samples: the p99 is the third slowest, and it may be anything from the seventh
    # slowest to the slowest; of 24,000: the 241st slowest, between the 272nd and 210th.
    few = [float(i) for i in range(240)]
    assert percentile(few, 0.99) == 237
    assert percentile_bounds(few, 0.99) == (233, 239)
    many = [float(i) for i in range(24_000)]
    low, high = percentile_bounds(many, 0.99)
    assert low < percentile(many, 0.99) < high
    assert (24_000 - low, 24_000 - high) == (272, 210)
    assert percentile_bounds([5.0], 0.99) == (5.0, 5.0)
