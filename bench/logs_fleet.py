"""logs-fleet: B builds log at once, each watched live by V viewers.

B runners (``max_concurrent`` 1) each claim one of B queued builds over their link
(``--transport channel``, the agent's WebSocket, or ``http``), report it running, and
then append ``--rate`` lines/s to it for ``--seconds``, in batches every
``--batch-interval`` seconds at a random phase, as the agent ships them (a batch that
comes late carries every line due by then); then they report it succeeded. Each line
carries the time it was sent. V viewers per build follow its live log over SSE
(``GET /v1/builds/{id}/logs/stream``, the owner's session), connected before the first
line, and read until the stream's ``done``.

Figures: lines stored per second (counted through ``GET /v1/builds/{id}/logs`` once every
runner is done, over ``--seconds``); lines acknowledged (the appends' answers); lines lost
(sent but not stored: every line must be); append latency p50/p99 (a runner's logs
request until its answer); the viewers' latency p50/p99 (line sent to line received,
every line of every viewer); lines each viewer missed (of its build's lines sent) or got
out of order, summed; viewers whose stream ended other than with ``build_finished``
(e.g. ``authorization_ended``); the daemon's CPU in cores and the embedded PostgreSQL's
(postmaster and children) over the steady window (from a quarter of ``--seconds``, at
most 2 s, after the first line, to the end); the daemon's RSS at the end of that window;
the load processes' own CPU. The runners and viewers run in ``--procs`` load processes
(a build's viewers in its runner's process), never the server's; a fresh daemon each
repetition.
"""

from __future__ import annotations

import argparse
import math
import random
import resource
import time
from functools import partial
from typing import Any

import httpx
import trio

from bench import procfs
from bench.channel import TRANSPORTS, RunnerLink, open_link
from bench.claims import queue_builds
from bench.harness import (
    BackgroundLoad,
    Server,
    StartGate,
    Target,
    daemon_counters,
    done_progress,
    percentile,
    prepare,
    progress,
    register_runners,
    report,
    split,
    started_daemon,
)
from bench.logs import CONNECT_AT_ONCE, view

BATCH_INTERVAL = 0.25  # what the agent waits after a batch's first line (oore/runner/logs.py)
OPEN_AT_ONCE = 64  # runners a load process sets up concurrently
PADDING = "x" * 80  # a line of about 100 bytes, as in bench/logs
COUNT_AT_ONCE = 32
PAGE = 5000  # the most lines GET /v1/builds/{id}/logs answers at once


def _worker(
    results: Any,
    url: str,
    session: str,
    transport: str,
    runners: list[tuple[str, str]],
    viewers: int,
    rate: int,
    seconds: float,
    interval: float,
    gate: StartGate,
) -> None:
    results.put(
        trio.run(_load, url, session, transport, runners, viewers, rate, seconds, interval, gate)
    )


class _Build:
    """One runner's build: its link, what it sent, how long its appends took, and what its
    viewers saw."""

    def __init__(self, runner_id: str, token: str, link: RunnerLink, job: dict[str, Any]) -> None:
        self.runner_id = runner_id
        self.token = token
        self.link = link
        self.id: str = job["build_id"]
        self.extra = {"attempt": job["attempt"]} if job.get("attempt") is not None else {}
        self.sent = 0
        self.appended = 0
        self.appends: list[float] = []
        self.seen: list[dict[str, Any]] = []


async def _load(
    url: str,
    session: str,
    transport: str,
    runners: list[tuple[str, str]],
    viewers: int,
    rate: int,
    seconds: float,
    interval: float,
    start: StartGate,
) -> dict[str, Any]:
    """Every runner claims a build and its viewers connect; once every load process is
    ready, every runner appends to its build and ends it, and the viewers read to the end."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    at = 0.0  # the start, once every load process is ready
    gate = trio.Semaphore(OPEN_AT_ONCE)
    connecting = trio.Semaphore(CONNECT_AT_ONCE)
    builds: list[_Build] = []
    total = round(rate * seconds)

    async def set_up(runner_id: str, token: str, viewing: trio.Nursery) -> None:
        async with gate:
            link = await open_link(transport, readers, url, runner_id, token)
            await link.heartbeat()  # as the agent does on connecting
            job = await link.claim()
            if job is None:
                raise SystemExit(f"runner {runner_id} found no build to claim")
            build = _Build(runner_id, token, link, job)
            await link.report(build.id, "running")
        path = f"/v1/builds/{build.id}/logs/stream"
        for _ in range(viewers):
            await viewing.start(view, host, int(port), path, session, None, connecting, build.seen)
        builds.append(build)

    async def append(build: _Build) -> None:
        link = build.link
        if transport == "http":  # the server has closed a connection idle for 5 s
            await link.aclose()
            link = await open_link(transport, readers, url, build.runner_id, build.token)
        offset = trio.current_time() - time.time()  # wall clock -> trio clock
        tick = at + random.random() * interval
        while build.sent < total:
            await trio.sleep_until(tick + offset)
            now = time.time()
            due = min(total, math.floor(rate * (now - at)))
            if due > build.sent:
                chunks = [
                    {"sequence": n, "content": f"{n} {now:.6f} {PADDING}", "stream": "stdout"}
                    for n in range(build.sent, due)
                ]
                began = time.perf_counter()
                build.appended += await link.logs(build.id, chunks, **build.extra)
                build.appends.append(time.perf_counter() - began)
                build.sent = due
            # A batch answered late is followed at once by one with every line due since.
            tick = max(tick + interval, time.time())
        await link.report(build.id, "succeeded", exit_code=0)
        await link.aclose()

    async with trio.open_nursery() as readers:  # the channels' reader tasks
        async with trio.open_nursery() as viewing:
            async with trio.open_nursery() as setting_up:
                for runner_id, token in runners:
                    setting_up.start_soon(set_up, runner_id, token, viewing)
            at = await start.arrive()
            await trio.sleep(max(0.0, at - time.time()))
            cpu_before, wall_before = _cpu_seconds(), time.monotonic()
            async with trio.open_nursery() as appending:
                for build in builds:
                    appending.start_soon(append, build)
        cpu = (_cpu_seconds() - cpu_before) / (time.monotonic() - wall_before)
        readers.cancel_scope.cancel()
    return {
        "sent": {build.id: (build.sent, build.appended) for build in builds},
        "appends": [x for build in builds for x in build.appends],
        "viewers": [
            {
                "lost": build.sent - seen["got"],
                "reordered": seen["reordered"],
                "ended": seen["ended"],
            }
            for build in builds
            for seen in build.seen
        ],
        "latencies": [x for build in builds for seen in build.seen for x in seen["latencies"]],
        "cpu_cores": cpu,
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _stored(target: Target, sent: dict[str, tuple[int, int]]) -> dict[str, int]:
    """How many of the lines sent to each build (``sent``: lines sent, lines the server
    acknowledged) it has stored. Its log's ``total`` answers when every line sent was
    acknowledged and the total matches; otherwise its lines are read and counted, for the
    log may also hold lines no runner sent (the notice of a log that reached its cap)."""
    stored: dict[str, int] = {}
    limiter = trio.CapacityLimiter(COUNT_AT_ONCE)
    async with httpx.AsyncClient(base_url=target.url, timeout=60) as client:

        async def logs(build_id: str, after: int, limit: int) -> dict[str, Any]:
            async with limiter:
                reply = await client.get(
                    f"/v1/builds/{build_id}/logs",
                    params={"after_sequence": after, "limit": limit},
                    headers=target.auth,
                )
            reply.raise_for_status()
            page: dict[str, Any] = reply.json()
            return page

        async def one(build_id: str, lines: int, acknowledged: int) -> None:
            if lines == acknowledged == (await logs(build_id, -1, 1))["total"]:
                stored[build_id] = lines
                return
            found, after = 0, -1
            while page := (await logs(build_id, after, PAGE))["logs"]:
                found += sum(
                    line["sequence"] < lines and line["content"].startswith(f"{line['sequence']} ")
                    for line in page
                )
                after = page[-1]["sequence"]
            stored[build_id] = found

        async with trio.open_nursery() as nursery:
            for build_id, (lines, acknowledged) in sent.items():
                nursery.start_soon(one, build_id, lines, acknowledged)
    return stored


_COUNTERS = {
    "oore_log_commits_total": "commits",
    "oore_log_commit_appends_total": "appends",
    "oore_log_commit_seconds_total": "busy",
}


def repetition(
    server: Server,
    builds: int,
    viewers: int,
    rate: int,
    seconds: float,
    interval: float,
    procs: int,
    transport: str,
) -> dict[str, float]:
    target = prepare(server)
    progress(f"registering {builds} runners")
    fleet = trio.run(partial(register_runners, target, builds, "logs-fleet", max_concurrent=1))
    progress(f"queueing {builds} builds")
    trio.run(queue_builds, target, builds)
    parts = split(fleet, procs)
    gate = StartGate.new()
    args = [
        (target.url, target.token, transport, part, viewers, rate, seconds, interval, gate)
        for part in parts
    ]
    load = BackgroundLoad(_worker, args)
    at = gate.open(len(parts), load, f"{builds} runners claiming, {builds * viewers} viewers")
    window, stop = at + min(2.0, seconds / 4), at + seconds

    def show(phase: str, left: float) -> None:
        if phase == "starting":
            progress(f"{builds} builds starting to log: {left:.0f}s")
        else:
            progress(f"{builds} builds logging {rate} lines/s: {left:.0f}s")

    before, began = daemon_counters(target.url, _COUNTERS), time.time()
    usage = procfs.measure_window(server.pid, window, stop, show)
    progress("waiting for the runners and viewers to finish")
    results = load.results(timeout=600)
    after, wall = daemon_counters(target.url, _COUNTERS), time.time() - began
    commits = after["commits"] - before["commits"]
    sent: dict[str, tuple[int, int]] = {
        build_id: (lines, acknowledged)
        for r in results
        for build_id, (lines, acknowledged) in r["sent"].items()
    }
    if len(sent) != builds:
        raise SystemExit(f"{len(sent)} of {builds} builds were claimed")
    progress("counting the lines stored")
    stored = trio.run(_stored, target, sent)
    done_progress()
    everyone = [v for r in results for v in r["viewers"]]
    appends = [x for r in results for x in r["appends"]]
    latencies = [x for r in results for x in r["latencies"]]
    figures = {
        "builds": float(len(sent)),
        "viewers_finished": float(len(everyone)),
        "lines_sent": float(sum(n for n, _ in sent.values())),
        "lines_acknowledged": float(sum(acknowledged for _, acknowledged in sent.values())),
        "lines_stored_per_s": sum(stored.values()) / seconds,
        "lines_lost": float(sum(n - stored[b] for b, (n, _) in sent.items())),
        "viewer_lines_lost": float(sum(v["lost"] for v in everyone)),
        "viewer_lines_reordered": float(sum(v["reordered"] for v in everyone)),
        "viewers_ended_early": float(sum(v["ended"] != "build_finished" for v in everyone)),
        "append_p50_ms": percentile(appends, 0.5) * 1000,
        "append_p99_ms": percentile(appends, 0.99) * 1000,
        "latency_p50_ms": percentile(latencies, 0.5) * 1000 if latencies else 0.0,
        "latency_p99_ms": percentile(latencies, 0.99) * 1000 if latencies else 0.0,
        "daemon_cpu_cores": usage.daemon_cores,
        "daemon_rss_mb": usage.daemon_rss_kb / 1024,
        "load_cpu_cores": sum(r["cpu_cores"] for r in results),
        "log_commits_per_s": commits / wall,
        "appends_per_commit": (after["appends"] - before["appends"]) / max(1.0, commits),
        "committer_busy": (after["busy"] - before["busy"]) / wall,
    }
    if usage.postgres_cores is not None:
        figures["postgres_cpu_cores"] = usage.postgres_cores
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench logs-fleet", description=__doc__)
    parser.add_argument("--builds", type=int, default=1000, help="runners, one build each")
    parser.add_argument("--rate", type=int, default=20, help="lines per second per build")
    parser.add_argument("--viewers", type=int, default=5, help="SSE viewers per build")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--batch-interval", type=float, default=BATCH_INTERVAL, help="seconds between appends"
    )
    parser.add_argument("--procs", type=int, default=2, help="load processes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--transport", choices=TRANSPORTS, default=TRANSPORTS[0], help="what the runners speak"
    )
    args = parser.parse_args(argv)
    if args.builds < 1 or args.rate < 1 or args.viewers < 0 or args.seconds <= 0:
        parser.error(
            "--builds and --rate must be at least 1, --viewers 0 or more, --seconds above 0"
        )
    runs = []
    for _ in range(args.repeat):
        # A fresh daemon each time: the builds of a repetition are over, and a new fleet of
        # runners with one build each starts from an empty queue.
        with started_daemon() as server:
            if procfs.postmaster_pid(server.pid) is None:
                print("\nno embedded PostgreSQL found: its CPU is not reported")
            runs.append(
                repetition(
                    server,
                    args.builds,
                    args.viewers,
                    args.rate,
                    args.seconds,
                    args.batch_interval,
                    args.procs,
                    args.transport,
                )
            )
    params = {
        "builds": args.builds,
        "rate": args.rate,
        "viewers": args.viewers,
        "seconds": args.seconds,
        "batch_interval": args.batch_interval,
        "procs": args.procs,
        "transport": args.transport,
    }
    report("logs-fleet", params, runs)
    return {"params": params, "runs": runs}
