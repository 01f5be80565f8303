"""claims: N runners over the runner protocol drain M queued builds as fast as they can.

Figures: durable claims per second (a claim is answered only once it is committed), the
same server's trivial-endpoint rate (``GET /healthz``) measured by the same load processes
in the same run, the ratio of the two, and the daemon's CPU time per claim (user and
system, from /proc, from the first claim until the runners have closed their links). The
load runs in ``--procs`` processes of its own, never in the server's.
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio

from bench.channel import TRANSPORTS, RunnerLink, open_link
from bench.harness import (
    Target,
    done_progress,
    prepare,
    progress,
    register_runners,
    report,
    run_processes,
    split,
    started_daemon,
)
from bench.procfs import cpu_seconds
from bench.rawhttp import RawConn

MAX_CONCURRENT = 64
HEALTHZ_SECONDS = 3.0
START = 3.0  # seconds for the load processes to start


def _worker(results: Any, url: str, mode: str, runners: list[tuple[str, str]], at: float) -> None:
    results.put(trio.run(_load, url, mode, runners, at))


async def _load(url: str, mode: str, runners: list[tuple[str, str]], at: float) -> dict[str, Any]:
    """``mode``: ``healthz``, or a transport: each runner on a link of its own (as a real
    fleet holds them), opened before ``at``, claiming until it gets nothing."""
    count = 0
    last = time.time()

    async def healthz(conn: RawConn) -> None:
        nonlocal count
        stop = at + HEALTHZ_SECONDS
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
        if mode == "healthz":
            parts = urlsplit(url)
            host, port = parts.hostname or "127.0.0.1", parts.port or 80
            links: list[Any] = [await RawConn.open(host, port) for _ in runners]
        else:
            links = [
                await open_link(mode, readers, url, runner_id, token)
                for runner_id, token in runners
            ]
        try:
            if time.time() > at:
                raise SystemExit("the links took longer to open than the start allowed")
            await trio.sleep(at - time.time())
            async with trio.open_nursery() as nursery:
                for link in links:
                    nursery.start_soon(healthz if mode == "healthz" else claim, link)
        finally:
            for link in links:
                await link.aclose()
    return {"count": count, "last": last}


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
    cpu_us_per_claim: float  # the daemon's CPU (user + system), from the first claim on


def drain(
    target: Target,
    fleet: list[tuple[str, str]],
    builds: int,
    procs: int,
    transport: str,
    daemon_pid: int,
) -> Drained:
    """Every runner of ``fleet`` claims over ``transport`` until none of the ``builds``
    queued is left, from ``procs`` load processes."""
    progress(f"{len(fleet)} runners claiming {builds} builds over {transport}")
    at = time.time() + START + len(fleet) / 200  # every link open by then
    cpu_at: list[float] = []
    sampler = threading.Timer(at - time.time(), lambda: cpu_at.append(cpu_seconds(daemon_pid)))
    sampler.start()
    claimed = run_processes(
        _worker, [(target.url, transport, part, at) for part in split(fleet, procs)]
    )
    cpu = cpu_seconds(daemon_pid)
    sampler.join()
    total: int = sum(r["count"] for r in claimed)
    if total != builds:
        raise SystemExit(f"claimed {total} of {builds} builds")
    took: float = max(r["last"] for r in claimed) - at
    done_progress()
    return Drained(total / took, (cpu - cpu_at[0]) / total * 1e6)


def repetition(
    target: Target, runners: int, builds: int, procs: int, transport: str, daemon_pid: int
) -> dict[str, float]:
    fleet = queue_fleet(target, runners, builds)
    progress("trivial endpoint rate")
    at = time.time() + START
    loads = split([("", "")] * min(runners, 64 * procs), procs)
    healthz = run_processes(_worker, [(target.url, "healthz", part, at) for part in loads])
    healthz_rate = sum(r["count"] for r in healthz) / HEALTHZ_SECONDS
    drained = drain(target, fleet, builds, procs, transport, daemon_pid)
    return {
        "claims_per_s": drained.claims_per_s,
        "healthz_per_s": healthz_rate,
        "claims_to_healthz": drained.claims_per_s / healthz_rate,
        "daemon_cpu_us_per_claim": drained.cpu_us_per_claim,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench claims", description=__doc__)
    parser.add_argument("--runners", type=int, default=1000)
    parser.add_argument("--builds", type=int, default=50_000)
    parser.add_argument("--procs", type=int, default=2, help="load processes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--transport", choices=TRANSPORTS, default=TRANSPORTS[0], help="what the runners speak"
    )
    args = parser.parse_args(argv)
    runs = []
    for _ in range(args.repeat):
        # A fresh daemon each time: the builds claimed before are still assigned, and
        # their assignment timeout would hand them out again in a later repetition.
        with started_daemon() as server:
            target = prepare(server)
            runs.append(
                repetition(
                    target, args.runners, args.builds, args.procs, args.transport, server.pid
                )
            )
    params = {
        "runners": args.runners,
        "builds": args.builds,
        "procs": args.procs,
        "transport": args.transport,
    }
    report("claims", params, runs)
    return {"params": params, "runs": runs}
