"""peers: the claims workload through oore and through pgqueuer, on one PostgreSQL server in
one run, so the ratio between them is measured rather than quoted.

oore: N runners drain M queued builds over the runner protocol (``bench.claims``: durable
claims per second, a claim being answered only once it is committed). pgqueuer (the
optional ``bench`` extra): M jobs enqueued in batches (not timed) into its queue, installed
with its own installer in a database of its own on the same server the daemon uses (its
embedded PostgreSQL, or ``OORED_DATABASE_URL``), then drained by consumers that run in
``--procs`` load processes of their own, never in the daemon's; the figure is jobs
acknowledged per second, up to the moment the last acknowledgement had committed (the
job moved from the queue to pgqueuer's log table, all its tables LOGGED). The ratio is
oore's claims per second over pgqueuer's jobs per second.

The mapping of N runners to pgqueuer: a runner is one claimer with one request in flight
and pgqueuer's unit of concurrency is a QueueManager on one connection dequeuing batches,
so the N runners become at most N jobs held at once (``max_concurrent_tasks``, summed
over the consumers) by ``--connections`` QueueManagers (default: the daemon's database
pool size, so both systems use as many PostgreSQL connections; at most N / 2, since
pgqueuer wants a consumer's cap at least twice its batch), each dequeuing batches of half
its cap. The job handler does nothing, as a claim does nothing past being committed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import time
from datetime import timedelta
from importlib.metadata import version
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import uvloop
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job, TracebackRecord
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries
from pgqueuer.types import JOB_STATUS, QueueExecutionMode

from bench import claims
from bench.channel import TRANSPORTS
from bench.harness import (
    BackgroundLoad,
    StartGate,
    done_progress,
    postgres_url,
    prepare,
    progress,
    report,
    split,
    started_cluster,
)
from oore.config import Settings

ENTRYPOINT = "bench"
ENQUEUE_AT_ONCE = 5_000


def daemon_pool_size() -> int:
    """The daemon's database pool size: its OORED_DB_POOL_SIZE (passed through to it), or
    the default."""
    default: int = Settings.model_fields["database_pool_size"].default
    return int(os.environ.get("OORED_DB_POOL_SIZE") or default)


@dataclasses.dataclass
class _Acknowledging(Queries):
    """pgqueuer's own queries, noting how many jobs it has acknowledged as successful and
    when the last batch of acknowledgements had committed."""

    acknowledged: int = 0
    last: float = 0.0

    async def log_jobs(
        self, job_status: list[tuple[Job, JOB_STATUS, TracebackRecord | None]]
    ) -> None:
        await super().log_jobs(job_status)
        self.acknowledged += sum(status == "successful" for _, status, _ in job_status)
        self.last = time.time()


async def _nothing(job: Job) -> None:
    """The job: nothing past being handed out and acknowledged."""


def _worker(results: Any, dsn: str, caps: list[int], gate: StartGate) -> None:
    results.put(uvloop.run(_consume(dsn, caps, gate)))  # the loop pgqueuer's own CLI runs on


async def _consume(dsn: str, caps: list[int], gate: StartGate) -> dict[str, Any]:
    """One QueueManager per cap, each on a connection of its own, draining the queue from
    the start the ``gate`` sets once every load process is connected, until it is empty."""
    connections = [await asyncpg.connect(dsn) for _ in caps]
    try:
        managers: list[tuple[QueueManager, _Acknowledging, int]] = []
        for connection, cap in zip(connections, caps, strict=True):
            queries = _Acknowledging(AsyncpgDriver(connection))
            manager = QueueManager(queries)
            manager.entrypoint(ENTRYPOINT)(_nothing)
            managers.append((manager, queries, cap))
        at = await asyncio.to_thread(gate.arrive_blocking)
        await asyncio.sleep(max(0.0, at - time.time()))
        await asyncio.gather(
            *(
                manager.run(
                    # only bounds the idle wait before a drained consumer stops
                    dequeue_timeout=timedelta(seconds=1),
                    batch_size=cap // 2,
                    mode=QueueExecutionMode.drain,
                    max_concurrent_tasks=cap,
                )
                for manager, _, cap in managers
            )
        )
    finally:
        for connection in connections:
            await connection.close()
    return {
        "count": sum(queries.acknowledged for _, queries, _ in managers),
        "last": max(queries.last for _, queries, _ in managers),
    }


def _database(url: str, name: str) -> str:
    """``url`` (a PostgreSQL URI) naming database ``name`` instead of its own."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _create(server_url: str, name: str, dsn: str) -> None:
    """A fresh database ``name`` on the server, with pgqueuer's schema installed by its own
    installer; refuses to measure a queue whose tables are not all LOGGED (durable)."""
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    connection = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(connection))
        await queries.install()
        settings = queries.qbe.settings
        tables = [settings.queue_table, settings.queue_table_log]
        unlogged = await connection.fetch(
            "SELECT relname FROM pg_class WHERE relname = ANY($1) AND relpersistence <> 'p'",
            tables,
        )
        if unlogged:
            names = ", ".join(row["relname"] for row in unlogged)
            raise SystemExit(f"pgqueuer installed {names} UNLOGGED: not durable")
    finally:
        await connection.close()


async def _drop(server_url: str, name: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _enqueue(dsn: str, count: int) -> None:
    """An empty queue and log, then ``count`` jobs, ``ENQUEUE_AT_ONCE`` per statement."""
    connection = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(connection))
        await queries.clear_queue()
        await queries.clear_queue_log()
        sent = 0
        while sent < count:
            n = min(ENQUEUE_AT_ONCE, count - sent)
            await queries.enqueue([ENTRYPOINT] * n, [None] * n, [0] * n)
            sent += n
            progress(f"enqueued {sent}/{count} pgqueuer jobs")
    finally:
        await connection.close()


async def _left(dsn: str) -> int:
    """Jobs still in pgqueuer's queue table, whatever their status."""
    connection = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(connection))
        left: int = await connection.fetchval(
            f"SELECT count(*) FROM {queries.qbe.qualified.queue_table}"
        )
        return left
    finally:
        await connection.close()


def consumer_caps(runners: int, connections: int) -> list[int]:
    """Jobs each pgqueuer consumer may hold at once: ``runners`` in all, over at most
    ``connections`` consumers of at least 2 each."""
    consumers = max(1, min(connections, runners // 2))
    return [runners // consumers + (i < runners % consumers) for i in range(consumers)]


def pgqueuer_rate(dsn: str, caps: list[int], jobs: int, procs: int) -> float:
    asyncio.run(_enqueue(dsn, jobs))
    progress(f"{len(caps)} pgqueuer consumers draining {jobs} jobs")
    gate = StartGate.new()
    parts = split(caps, procs)
    load = BackgroundLoad(_worker, [(dsn, part, gate) for part in parts])
    at = gate.open(len(parts), load, "pgqueuer consumers connecting", lead=claims.START_LEAD)
    drained = load.results(timeout=3600)
    total: int = sum(r["count"] for r in drained)
    left = asyncio.run(_left(dsn))
    if total != jobs or left:
        raise SystemExit(f"pgqueuer acknowledged {total} of {jobs} jobs, {left} left queued")
    took: float = max(r["last"] for r in drained) - at
    done_progress()
    return total / took


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench peers", description=__doc__)
    parser.add_argument("--runners", type=int, default=1000)
    parser.add_argument("--builds", type=int, default=50_000, help="builds, and pgqueuer jobs")
    parser.add_argument("--procs", type=int, default=2, help="load processes, for both")
    parser.add_argument(
        "--connections",
        type=int,
        default=daemon_pool_size(),
        help="pgqueuer consumers, one connection each (default: the daemon's pool size)",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--transport", choices=TRANSPORTS, default=TRANSPORTS[0], help="what oore's runners speak"
    )
    args = parser.parse_args(argv)
    caps = consumer_caps(args.runners, args.connections)
    database = f"oore_bench_pgqueuer_{os.getpid()}"
    runs: list[dict[str, float]] = []
    for _ in range(args.repeat):
        # a fresh daemon (and PostgreSQL) each time, as in ``claims``
        with started_cluster() as cluster:
            server = cluster.servers[0]
            target = prepare(server)
            server_url = postgres_url(server)
            dsn = _database(server_url, database)
            asyncio.run(_create(server_url, database, dsn))
            try:
                fleet = claims.queue_fleet(target, args.runners, args.builds)
                oore = claims.drain(
                    cluster, fleet, args.builds, args.procs, args.transport
                ).claims_per_s
                pgqueuer = pgqueuer_rate(dsn, caps, args.builds, args.procs)
                runs.append(
                    {
                        "oore_claims_per_s": oore,
                        "pgqueuer_jobs_per_s": pgqueuer,
                        "oore_to_pgqueuer": oore / pgqueuer,
                    }
                )
            finally:
                asyncio.run(_drop(server_url, database))
    params = {
        "runners": args.runners,
        "builds": args.builds,
        "procs": args.procs,
        "transport": args.transport,
        "pgqueuer": version("pgqueuer"),
        "pgqueuer_consumers": len(caps),
        "pgqueuer_jobs_held": f"{min(caps)}..{max(caps)} per consumer, {sum(caps)} in all",
        "pgqueuer_batch": f"{min(caps) // 2}..{max(caps) // 2}",
    }
    report("peers", params, runs)
    return {"params": params, "runs": runs}
