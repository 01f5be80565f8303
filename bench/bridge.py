"""Cost of the trio→asyncio bridge to asyncpg: per query, concurrent, and batched.

Run: ``.venv/bin/python bench/bridge.py [--queries N] [--repeat R]``. Starts an embedded
PostgreSQL in a temporary directory (or uses OORE_BENCH_DATABASE_URL), prints a table of
medians (min..max over the repetitions) and writes ``bench/results/bridge.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from oore.store.database import Connection, open_database
from oore.store.embedded import EmbeddedPostgres

RESULTS = Path(__file__).parent / "results"


async def _select_one(conn: Connection) -> int:
    value: int = await conn.fetchval("SELECT 1")
    return value


async def _insert_batch(conn: Connection, rows: list[tuple[int, str]]) -> None:
    await conn.executemany("INSERT INTO bench_rows (n, payload) VALUES ($1, $2)", rows)


async def _prepare(conn: Connection) -> None:
    await conn.execute("CREATE TEMP TABLE IF NOT EXISTS bench_rows (n integer, payload text)")


async def _timed(fn: Callable[[], Awaitable[int]]) -> float:
    start = time.perf_counter()
    count = await fn()
    return count / (time.perf_counter() - start)


async def measure(url: str, queries: int) -> dict[str, float]:
    async with open_database(url, pool_size=8) as db:
        for _ in range(200):
            await db.run(_select_one)

        async def sequential() -> int:
            for _ in range(queries):
                await db.run(_select_one)
            return queries

        async def concurrent() -> int:
            async def worker() -> None:
                for _ in range(queries // 8):
                    await db.run(_select_one)

            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(worker)
            return queries // 8 * 8

        async def batched() -> int:
            batches = max(1, queries // 100)
            rows = [(i, "x" * 64) for i in range(100)]

            async def one_batch(conn: Connection) -> None:
                await _prepare(conn)
                await _insert_batch(conn, rows)

            for _ in range(batches):
                await db.transaction(one_batch)
            return batches * 100

        per_query = await _timed(sequential)
        return {
            "sequential_queries_per_s": per_query,
            "sequential_us_per_query": 1e6 / per_query,
            "concurrent8_queries_per_s": await _timed(concurrent),
            "batched100_rows_per_s": await _timed(batched),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    url = os.environ.get("OORE_BENCH_DATABASE_URL")
    server = None
    if not url:
        server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="oore-bench-")) / "pg")
        url = server.start()
    try:
        runs = [trio.run(measure, url, args.queries) for _ in range(args.repeat)]
    finally:
        if server is not None:
            server.stop()
    summary = {
        key: {
            "median": statistics.median(r[key] for r in runs),
            "min": min(r[key] for r in runs),
            "max": max(r[key] for r in runs),
        }
        for key in runs[0]
    }
    print(f"{'figure':<28} {'median':>12} {'min':>12} {'max':>12}")
    for key, fig in summary.items():
        print(f"{key:<28} {fig['median']:>12.0f} {fig['min']:>12.0f} {fig['max']:>12.0f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "bridge.json"
    out.write_text(
        json.dumps({"cores": os.cpu_count(), "runs": runs, "summary": summary}, indent=2)
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
