"""fleet: R registered runners each heartbeat every ``--interval`` seconds, at a random
phase, for ``--seconds``: what a fleet of idle runners costs the server. With ``--pings``
the runners send no heartbeat after the first, as ``oore runner`` does on its channel
while nothing changes: each only pings its channel (a WebSocket ping) every
``--interval`` seconds, which keeps its lease; ``runners_online`` then says how many the
server still counts online at the end.

Figures: heartbeat latency p50/p99/max as the load processes see it (from the beat's due
instant, or the previous beat's answer if that came later, to the 204, so waiting for a
free connection counts), the heartbeats answered per second in the steady window (R /
interval are due: fewer means the server cannot keep up), how many failed and how many
were sent over a second late (a runner beats again only once its previous beat is
answered), the daemon's CPU in cores over the steady window (from ``--interval`` after
the start to the end, from /proc/<pid>/stat), the embedded PostgreSQL's CPU likewise
(its postmaster and children; absent with an external database), and the load processes'
own CPU. The runners are registered once (concurrently) and beat in every repetition.
``--daemons N`` starts N daemons on one PostgreSQL and deals the runners over them
round-robin (registered through the first); ``--workers M`` starts each with
``--workers M``; the CPU is then also given per daemon and per worker process.
The load runs in ``--procs`` processes of its own, never in the server's: each runner on
its channel (``--transport channel``, a WebSocket held open, what oore's agent does), or
as bare HTTP/1.1 over ``--connections`` keep-alive connections per process (0: each
runner its own connection, opened again once the server's 5 s keep-alive may have closed
it).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import httpx
import trio

from bench import procfs
from bench.channel import FAILURES as LINK_FAILURES
from bench.channel import TRANSPORTS, Refused, RunnerLink, open_link
from bench.harness import (
    BackgroundLoad,
    Cluster,
    StartGate,
    Target,
    add_cluster_options,
    done_progress,
    percentile,
    prepare,
    progress,
    register_runners,
    report,
    round_robin,
    split,
    started_cluster,
)
from bench.rawhttp import FAILURES, RawConn

BODY = json.dumps({"status": "online"}).encode()
KEEP_ALIVE = 4.0  # seconds a connection of its own is kept idle (hypercorn closes at 5)
LATE = 1.0  # seconds behind its schedule that makes a heartbeat late
OPEN_AT_ONCE = 64  # channels a load process opens concurrently
START_LEAD = 0.25  # seconds from the last load process ready (its channels open) to the start


Runner = tuple[str, tuple[str, str]]  # the daemon's URL it speaks to, its id and token


def _worker(
    results: Any,
    runners: list[Runner],
    gate: StartGate,
    seconds: float,
    interval: float,
    connections: int,
    transport: str,
    pings: bool,
) -> None:
    schedule = _Schedule(seconds, interval)
    if transport == "http":
        trio.run(_beat, schedule, runners, connections, gate)
    else:
        trio.run(_beat_on_channels, schedule, runners, pings, gate)
    results.put(schedule.result())


def _steady_window(at: float, seconds: float, interval: float) -> tuple[float, float]:
    """From a start at ``at``: when the steady window begins (every runner has beaten
    once) and when the run stops."""
    return (at + interval if seconds > interval else at), at + seconds


class _Schedule:
    """When each runner beats (from a random instant in ``[at, at + interval)`` until
    ``stop``, wall-clock times, once the start gate has set ``at``), what became of the
    beats, and the load's own CPU."""

    def __init__(self, seconds: float, interval: float) -> None:
        self.seconds, self.interval = seconds, interval
        self.at = self.window = self.stop = math.inf  # until the start is known
        self.latencies: list[float] = []
        self.counts = {"sent": 0, "failed": 0, "late": 0, "answered_in_window": 0}
        self._cpu_before = _cpu_seconds()
        self._wall_before = time.monotonic()

    async def beat_until_stop(
        self, beat: Callable[[], Awaitable[None]], start: float | None = None
    ) -> None:
        """``beat`` once per interval from ``start`` (default: ``at``), at a random phase;
        latencies of the beats due from ``window`` on."""
        offset = trio.current_time() - time.time()  # wall clock -> trio clock
        due = (self.at if start is None else start) + random.random() * self.interval
        while due < self.stop:
            await trio.sleep_until(due + offset)
            began = time.perf_counter()
            self.counts["late"] += time.time() - due > LATE
            await beat()
            self.counts["sent"] += 1
            self.counts["answered_in_window"] += self.window <= time.time() < self.stop
            if due >= self.window:
                self.latencies.append(time.perf_counter() - began)
            due += self.interval

    async def start(self, gate: StartGate) -> None:
        """Ready; wait for the start every load process shares."""
        at = await gate.arrive()
        self.window, self.stop = _steady_window(at, self.seconds, self.interval)
        self.at = at

    def result(self) -> dict[str, Any]:
        cpu = (_cpu_seconds() - self._cpu_before) / (time.monotonic() - self._wall_before)
        return {"latencies": self.latencies, **self.counts, "cpu_cores": cpu}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _beat(
    schedule: _Schedule, runners: list[Runner], connections: int, gate: StartGate
) -> None:
    """Every runner beats over one of ``connections`` shared keep-alive connections to its
    daemon (0: a connection of its own, opened again once the server may have closed it)."""
    counts = schedule.counts
    pools: dict[str, list[tuple[RawConn, float]]] = {}  # per daemon: idle shared connections
    frees = {url: trio.Semaphore(connections) for url, _ in runners} if connections else {}

    async def beat(
        url: str, kept: tuple[RawConn, float] | None, path: str, token: str
    ) -> RawConn | None:
        """One heartbeat, on a kept connection (unless the server may have closed it
        meanwhile) or a new one; answers the connection to keep."""
        conn = kept[0] if kept else None
        if kept and trio.current_time() - kept[1] > KEEP_ALIVE:
            await kept[0].aclose()
            conn = None
        for attempt in (1, 2):  # a kept connection the server has closed: once more
            try:
                if conn is None:
                    host, port = url.removeprefix("http://").rsplit(":", 1)
                    conn = await RawConn.open(host, int(port))
                status, _ = await conn.request("POST", path, token, BODY)
                counts["failed"] += status != 204
                return conn
            except FAILURES:
                if conn is not None:
                    await conn.aclose()
                conn = None
                counts["failed"] += attempt == 2
        return None

    async def runner(url: str, runner_id: str, token: str) -> None:
        path = f"/v1/runners/{runner_id}/heartbeat"
        own: tuple[RawConn, float] | None = None
        pool = pools.setdefault(url, [])

        async def once() -> None:
            nonlocal own
            if not frees:
                conn = await beat(url, own, path, token)
                own = (conn, trio.current_time()) if conn else None
            else:
                async with frees[url]:
                    conn = await beat(url, pool.pop() if pool else None, path, token)
                    if conn is not None:
                        pool.append((conn, trio.current_time()))

        await schedule.beat_until_stop(once)

    await schedule.start(gate)  # nothing to set up: each connects at its first beat
    async with trio.open_nursery() as nursery:
        for url, (runner_id, token) in runners:
            nursery.start_soon(runner, url, runner_id, token)


async def _beat_on_channels(
    schedule: _Schedule, runners: list[Runner], pings: bool, gate: StartGate
) -> None:
    """Every runner beats (or pings) on a channel of its own to its daemon, opened before
    the start (which comes once every load process has its channels open) and held to
    the end."""
    opening_limit = trio.Semaphore(OPEN_AT_ONCE)

    async def runner(link: RunnerLink, start: float | None = None) -> None:
        async def once() -> None:
            try:
                await (link.ping() if pings else link.heartbeat())
            except (*LINK_FAILURES, Refused):
                schedule.counts["failed"] += 1

        await schedule.beat_until_stop(once, start)

    async with trio.open_nursery() as readers:
        links: list[RunnerLink] = []
        async with trio.open_nursery() as beating:

            async def connect(url: str, runner_id: str, token: str) -> None:
                async with opening_limit:
                    link = await open_link("channel", readers, url, runner_id, token)
                    # A first beat on connecting, as the agent does: registering thousands
                    # of runners takes longer than a lease, so most would start the run lost.
                    await link.heartbeat()
                    links.append(link)
                if pings:  # as the agent does: pinging starts at once, not with the window
                    beating.start_soon(runner, link, time.time())

            async with trio.open_nursery() as opening:
                for url, (runner_id, token) in runners:
                    opening.start_soon(connect, url, runner_id, token)
            await schedule.start(gate)
            if not pings:
                for link in links:
                    beating.start_soon(runner, link)
        for link in links:
            await link.aclose()


def repetition(
    cluster: Cluster,
    fleet: list[tuple[str, str]],
    interval: float,
    seconds: float,
    procs: int,
    connections: int,
    transport: str,
    pings: bool = False,
    target: Target | None = None,
) -> dict[str, float]:
    gate = StartGate.new()
    args = [
        (part, gate, seconds, interval, connections, transport, pings)
        for part in split(round_robin(fleet, cluster.urls), procs)
    ]
    load = BackgroundLoad(_worker, args)
    waiting = f"{len(fleet)} runners connecting over {transport}"
    at = gate.open(len(args), load, waiting, lead=START_LEAD)
    window, stop = _steady_window(at, seconds, interval)

    def show(phase: str, left: float) -> None:
        doing = "starting" if phase == "starting" else "beating"
        progress(f"{len(fleet)} runners {doing}: {left:.0f}s left")

    cores = procfs.measure_cores(cluster.meter(), window, stop, show)
    rss = cluster.rss_kb()
    online = _online(target) if pings and target is not None else None
    progress("waiting for the load processes")
    results = load.results(timeout=600)
    done_progress()
    latencies = [x for r in results for x in r["latencies"]]
    if not latencies:
        raise SystemExit("no heartbeat in the steady window")
    answered = sum(r["answered_in_window"] for r in results)
    figures = {
        "heartbeats_answered_per_s": answered / (stop - window),
        "heartbeats_failed": float(sum(r["failed"] for r in results)),
        "heartbeats_late": float(sum(r["late"] for r in results)),
        "latency_p50_ms": percentile(latencies, 0.5) * 1000,
        "latency_p99_ms": percentile(latencies, 0.99) * 1000,
        "latency_max_ms": max(latencies) * 1000,
        "server_rss_mb": rss / 1024,
        **cores,
        "load_cpu_cores": sum(r["cpu_cores"] for r in results),
    }
    if online is not None:
        figures["runners_online"] = float(online)
    return figures


def _online(target: Target) -> int:
    """How many runners the server counts online (while the load still holds them)."""
    with httpx.Client(base_url=target.url, timeout=60) as client:
        page = client.get("/v1/runners?limit=1", headers=target.auth).json()
    return int(page["online_total"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench fleet", description=__doc__)
    parser.add_argument("--runners", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between beats")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--procs", type=int, default=2, help="load processes")
    parser.add_argument(
        "--connections",
        type=int,
        default=64,
        help="over HTTP: keep-alive connections per load process and daemon (0: one per runner)",
    )
    parser.add_argument(
        "--transport", choices=TRANSPORTS, default=TRANSPORTS[0], help="what the runners speak"
    )
    parser.add_argument(
        "--pings",
        action="store_true",
        help="over a channel: no heartbeats after the first, a WebSocket ping every --interval",
    )
    parser.add_argument("--repeat", type=int, default=3)
    add_cluster_options(parser)
    args = parser.parse_args(argv)
    if args.pings and args.transport != "channel":
        parser.error("--pings needs --transport channel")
    with started_cluster(args.daemons, args.workers) as cluster:
        target = prepare(cluster.servers[0])
        progress(f"registering {args.runners} runners")
        fleet = trio.run(partial(register_runners, target, args.runners, "fleet"))
        if cluster.postmaster is None:
            print("\nno embedded PostgreSQL found: its CPU is not reported")
        runs = [
            repetition(
                cluster,
                fleet,
                args.interval,
                args.seconds,
                args.procs,
                args.connections,
                args.transport,
                args.pings,
                target,
            )
            for _ in range(args.repeat)
        ]
    params = {
        "runners": args.runners,
        "interval": args.interval,
        "seconds": args.seconds,
        "procs": args.procs,
        "connections": args.connections,
        "transport": args.transport,
        "pings": args.pings,
        "daemons": args.daemons,
        "workers": args.workers,
    }
    report("fleet", params, runs)
    return {"params": params, "runs": runs}
