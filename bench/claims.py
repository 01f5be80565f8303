"""claims: N runners over the runner protocol drain M queued builds as fast as they can.

Figures: durable claims per second (a claim is answered only once it is committed), the
same server's trivial-endpoint rate (``GET /healthz``) measured by the same load processes
in the same run, the ratio of the two, and the daemon's CPU time per claim (user and
system, from /proc, from the first claim until the runners have closed their links), and
PostgreSQL's likewise. Over the same span: the cores each process used (the daemons with
their workers, PostgreSQL, the load processes). The load runs in ``--procs`` processes of
its own, never in the server's.

``--daemons N`` starts N daemons on one PostgreSQL and deals the runners (and the healthz
connections) over them round-robin; ``--workers M`` starts each with ``--workers M``. The
builds are queued through the first daemon.
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio

from bench.channel import TRANSPORTS, RunnerLink, open_link
from bench.harness import (
    BackgroundLoad,
    Cluster,
    StartGate,
    Target,
    add_cluster_options,
    done_progress,
    prepare,
    progress,
    register_runners,
    report,
    round_robin,
    split,
    started_cluster,
)
from bench.rawhttp import RawConn

MAX_CONCURRENT = 64
HEALTHZ_SECONDS = 3.0
START_LEAD = 0.25  # seconds from the last load process ready (its links open) to the start


Runner = tuple[str, tuple[str, str]]  # the daemon's URL it speaks to, its id and token


def _worker(
    results: Any, mode: str, runners: list[Runner], gate: StartGate, seconds: float
) -> None:
    results.put(trio.run(_load, mode, runners, gate, seconds))


async def _load(
    mode: str, runners: list[Runner], gate: StartGate, seconds: float
) -> dict[str, Any]:
    """``mode``: ``healthz`` (for ``seconds``), or a transport: each runner on a link of its
    own (as a real fleet holds them) to its daemon, opened before the start the ``gate``
    sets once every load process has its links open, claiming until it gets nothing.
    Answers the count, when the last claim came and this process's CPU from the start on."""
    count = 0
    last = time.time()
    at = 0.0

    async def healthz(conn: RawConn) -> None:
        nonlocal count
        stop = at + seconds
        while time.time() < stop:
            status, _ = await conn.request("GET", "/healthz", "-")
            if status != 200:
                raise SystemExit(f"GET /healthz answered {status}")
            count += 1

    async def claim(link: RunnerLink) -> None:
        nonlocal count, last
        while await link.claim() is not None:
            count += 1
            last = time.time()

    async with trio.open_nursery() as readers:
        links: list[Any] = []
        try:
            for url, (runner_id, token) in runners:
                if mode == "healthz":
                    parts = urlsplit(url)
                    host, port = parts.hostname or "127.0.0.1", parts.port or 80
                    links.append(await RawConn.open(host, port))
                else:
                    links.append(await open_link(mode, readers, url, runner_id, token))
            at = await gate.arrive()
            await trio.sleep(max(0.0, at - time.time()))
            cpu_before, wall_before = _own_cpu(), time.monotonic()
            async with trio.open_nursery() as nursery:
                for link in links:
                    nursery.start_soon(healthz if mode == "healthz" else claim, link)
            cores = (_own_cpu() - cpu_before) / (time.monotonic() - wall_before)
        finally:
            for link in links:
                await link.aclose()
    return {"count": count, "last": last, "cpu_cores": cores}


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def queue_builds(target: Target, count: int) -> None:
    """Queue ``count`` builds at the known head (no git run per build), 32 at a time."""
    async with httpx.AsyncClient(base_url=target.url, timeout=60) as client:
        sent = 0
        limiter = trio.CapacityLimiter(32)

        async def one() -> None:
            nonlocal sent
            async with limiter:
                reply = await client.post(
                    f"/v1/projects/{target.project_id}/builds",
                    json={"pipeline_id": target.pipeline_id, "commit_sha": target.commit_sha},
                    headers=target.auth,
                )
                reply.raise_for_status()
                sent += 1
                if sent % 500 == 0:
                    progress(f"queued {sent}/{count} builds")

        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(one)


def queue_fleet(target: Target, runners: int, builds: int) -> list[tuple[str, str]]:
    """Register ``runners`` runners (ids and tokens answered) and queue ``builds`` builds
    for them to claim."""
    if runners * MAX_CONCURRENT < builds:
        raise SystemExit(f"{runners} runners hold at most {runners * MAX_CONCURRENT} builds")
    progress(f"registering {runners} runners")
    fleet = trio.run(
        partial(register_runners, target, runners, "claims", max_concurrent=MAX_CONCURRENT)
    )
    trio.run(queue_builds, target, builds)
    return fleet


@dataclass(frozen=True)
class Drained:
    claims_per_s: float
    cores: dict[str, float]  # each process's cores, from the first claim on
    took: float  # seconds, from the first claim on


def drain(
    cluster: Cluster, fleet: list[tuple[str, str]], builds: int, procs: int, transport: str
) -> Drained:
    """Every runner of ``fleet`` claims over ``transport`` (through the cluster's daemons
    in turn) until none of the ``builds`` queued is left, from ``procs`` load processes."""
    runners = round_robin(fleet, cluster.urls)
    gate = StartGate.new()
    parts = split(runners, procs)
    load = BackgroundLoad(_worker, [(transport, part, gate, 0.0) for part in parts])
    waiting = f"{len(fleet)} runners opening their links over {transport}"
    at = gate.open(len(parts), load, waiting, lead=START_LEAD)
    progress(f"{len(fleet)} runners claiming {builds} builds over {transport}")
    meter = cluster.meter()
    time.sleep(max(0.0, at - time.time()))
    meter.start()
    claimed = load.results(timeout=3600)
    cores = meter.cores()
    took_all = time.time() - at
    total: int = sum(r["count"] for r in claimed)
    if total != builds:
        raise SystemExit(f"claimed {total} of {builds} builds")
    took: float = max(r["last"] for r in claimed) - at
    done_progress()
    cores["load_cpu_cores"] = sum(r["cpu_cores"] for r in claimed)
    return Drained(total / took, cores, took_all)


def healthz_rate(cluster: Cluster, connections: int, procs: int, seconds: float) -> float:
    """``GET /healthz`` per second over ``connections`` connections (dealt over the
    cluster's daemons) from ``procs`` load processes, all starting together."""
    progress("trivial endpoint rate")
    gate = StartGate.new()
    parts = split(round_robin([("", "")] * connections, cluster.urls), procs)
    load = BackgroundLoad(_worker, [("healthz", part, gate, seconds) for part in parts])
    gate.open(len(parts), load, "trivial endpoint rate", lead=START_LEAD)
    count: int = sum(r["count"] for r in load.results(timeout=600 + seconds))
    return count / seconds


def repetition(
    cluster: Cluster,
    runners: int,
    builds: int,
    procs: int,
    transport: str,
    healthz_seconds: float = HEALTHZ_SECONDS,
) -> dict[str, float]:
    target = prepare(cluster.servers[0])
    fleet = queue_fleet(target, runners, builds)
    healthz = healthz_rate(cluster, min(runners, 64 * procs), procs, healthz_seconds)
    drained = drain(cluster, fleet, builds, procs, transport)
    per_claim = drained.took / builds * 1e6  # core-seconds per claim, in microseconds
    figures = {
        "claims_per_s": drained.claims_per_s,
        "healthz_per_s": healthz,
        "claims_to_healthz": drained.claims_per_s / healthz,
        "daemon_cpu_us_per_claim": drained.cores["server_cpu_cores"] * per_claim,
    }
    if "postgres_cpu_cores" in drained.cores:
        figures["postgres_cpu_us_per_claim"] = drained.cores["postgres_cpu_cores"] * per_claim
    return {**figures, **drained.cores}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench claims", description=__doc__)
    parser.add_argument("--runners", type=int, default=1000)
    parser.add_argument("--builds", type=int, default=50_000)
    parser.add_argument("--procs", type=int, default=2, help="load processes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--transport", choices=TRANSPORTS, default=TRANSPORTS[0], help="what the runners speak"
    )
    parser.add_argument(
        "--healthz-seconds",
        type=float,
        default=HEALTHZ_SECONDS,
        help="how long the trivial endpoint rate is measured",
    )
    add_cluster_options(parser)
    args = parser.parse_args(argv)
    if args.healthz_seconds <= 0:
        parser.error("--healthz-seconds must be above 0")
    runs = []
    for _ in range(args.repeat):
        # A fresh cluster each time: the builds claimed before are still assigned, and
        # their assignment timeout would hand them out again in a later repetition.
        with started_cluster(args.daemons, args.workers) as cluster:
            runs.append(
                repetition(
                    cluster,
                    args.runners,
                    args.builds,
                    args.procs,
                    args.transport,
                    args.healthz_seconds,
                )
            )
    params = {
        "runners": args.runners,
        "builds": args.builds,
        "procs": args.procs,
        "transport": args.transport,
        "healthz_seconds": args.healthz_seconds,
        "daemons": args.daemons,
        "workers": args.workers,
    }
    report("claims", params, runs)
    return {"params": params, "runs": runs}
