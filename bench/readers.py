"""readers: R API clients read builds and logs while runners claim and append.

Set-up (not measured): ``--projects`` projects, and ``--builds`` builds dealt over them,
each claimed by a runner, given ``--lines`` log lines and ended (every fourth failed); an
API token of the owner's (role admin: it sees every project) that every reader presents
as ``Authorization: Bearer``, as an API client does.

Then two phases of ``--seconds`` each, on the same daemon, the first without readers and
the second with them. Before each, the builds its runners will run are queued (not
measured: not by the runners' figures, nor while the readers read), then the database's
upkeep is done (``VACUUM (ANALYZE)`` and a checkpoint, not measured either): without it,
the upkeep that the set-up's and the first phase's writes make due falls into the second
phase only.

- ``--runners`` runners, each on its channel (``--transport``), claim a queued build,
  report it running, append ``--rate`` lines/s to it in batches every
  ``--batch-interval`` seconds for ``--build-seconds``, end it and claim the next. They
  start one after another, spread over a build's length, so that they claim at different
  instants. Each claim and each append is timed (request until answer).
- One more runner appends ``--rate`` lines/s to one build for the whole phase, and one
  viewer follows that build's live log (SSE, the owner's session) and measures each
  line's latency (sent until received).
- In the second phase only, ``--readers`` readers, each on a keep-alive connection of its
  own, loop over the reads a dashboard or an API client makes: the build list (paged,
  filtered by project, status or pipeline, sorted), one build with its events, a page of
  a build's log, the runners, the projects. Each reader sends at most ``--pace`` requests
  a second (0: one after the other as fast as answered); a request is timed from its
  send until its whole answer. Any answer but 200, and any broken connection, is an
  error. The readers connect and start reading ``READERS_AHEAD`` seconds before the
  runners start, and read until the phase ends: the runners run under 200 readers
  connected and reading, not under 200 connections opened in the same instant. The
  readers run in ``--procs`` load processes, never the server's, each in a session of its
  own, last (niceness 19, the session's too). They stand for clients on other machines,
  whose own work takes none of the server's CPUs: with
  ``--load-cpus apart`` (the default) they run on every CPU but the lowest (given two or
  more), so that one CPU is left to the daemon, PostgreSQL and the runners; ``any`` lets
  them run on every CPU.

Figures: the reads per second and their p50/p99 (overall and per kind of read; and the p99
of the reads sent after the first 10 s, once most answers were read once), errors;
per phase the runners' claim and append p50/p99, the live log's line latency p50/p99,
the lines stored per second (counted from the server's logs afterwards: every line sent
must be stored), the cores used by the daemon, PostgreSQL and the load processes, the
daemon's resident memory at the end of the readers' phase, and how many reads the daemon
answered from memory (one daemon only). The runners' p99 under the readers over their p99
alone is shown per run (``*_ratio``) and over the samples of every run at once, there with
the lowest and the highest ratio that the two p99s' 95 % bounds allow
(``*_p99_ratio_low``, ``*_p99_ratio_high``, from the samples' ranks): four runners' claims
in a 60 s run are 80, whose p99 is about the slowest, so one slow claim moves it.
``--workers M`` starts the daemon with ``--workers M`` (with two or more, worker 0 serves
the runners' channels and the live log, the others the reads).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import resource
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from bench.channel import TRANSPORTS, RunnerLink, open_link
from bench.harness import (
    BackgroundLoad,
    Cluster,
    StartGate,
    Target,
    daemon_counters,
    done_progress,
    percentile,
    percentile_bounds,
    prepare,
    progress,
    register_runners,
    report,
    settle,
    split,
    started_cluster,
)
from bench.logs import view
from bench.rawhttp import FAILURES as HTTP_FAILURES
from bench.rawhttp import RawConn

# the hot reads answered from memory or not (oore/http/lean/cache.py)
_KEPT = {"oore_answers_kept_hits_total": "hits", "oore_answers_kept_misses_total": "misses"}
PADDING = "x" * 80  # a line of about 100 bytes, as in bench/logs
SEED_AT_ONCE = 16
READ_KINDS = ("build_list", "build", "log_page", "runners", "projects")
# how often each kind is read: a dashboard lists builds and opens them and their logs
READ_WEIGHTS = (4, 2, 2, 1, 1)
# After this many seconds of reading, most answers were read once (and are kept): the
# p99 of the reads sent later is shown apart (``read_p99_ms_warm``).
WARM_SECONDS = 10.0
# The reader processes' niceness, and their session's.
LOAD_NICENESS = 19
# The readers connect and start this many seconds before the runners of their phase.
READERS_AHEAD = 2.0
# A runner claims as the agent does, waiting for a build: with workers, a build queued
# through one worker reaches the runners' worker by a notice, which may come just after.
CLAIM_WAIT = 5


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- set-up -------------------------------------------------------------------------


async def _seed(
    target: Target, projects: int, builds: int, lines: int, transport: str
) -> dict[str, Any]:
    """The projects with a pipeline each, ``builds`` builds over them, each claimed, given
    ``lines`` lines and ended; an API token for the readers. Answers what readers read."""
    pipelines = [(target.project_id, target.pipeline_id)]
    async with httpx.AsyncClient(base_url=target.url, timeout=60, headers=target.auth) as client:
        for i in range(1, projects):
            reply = await client.post(
                "/v1/projects",
                json={
                    "name": f"readers-{time.time_ns()}-{i}",
                    "local_repository_path": str(target.repo),
                },
            )
            reply.raise_for_status()
            project_id = reply.json()["project"]["id"]
            reply = await client.post(
                f"/v1/projects/{project_id}/pipelines", json={"name": f"pipeline-{i}"}
            )
            reply.raise_for_status()
            pipelines.append((project_id, reply.json()["pipeline"]["id"]))
        reply = await client.post(
            "/v1/api-tokens", json={"name": f"readers-{time.time_ns()}", "role": "admin"}
        )
        reply.raise_for_status()
        api_token = reply.json()["token"]
        limiter = trio.CapacityLimiter(SEED_AT_ONCE)

        async def queue(i: int) -> None:
            project_id, pipeline_id = pipelines[i % len(pipelines)]
            async with limiter:
                reply = await client.post(
                    f"/v1/projects/{project_id}/builds",
                    json={
                        "pipeline_id": pipeline_id,
                        "commit_sha": target.commit_sha,
                        "branch": "main",
                    },
                )
            reply.raise_for_status()

        async with trio.open_nursery() as nursery:
            for i in range(builds):
                nursery.start_soon(queue, i)
    fleet = await register_runners(target, SEED_AT_ONCE, "readers-seed", max_concurrent=64)
    built: list[str] = []
    async with trio.open_nursery() as nursery:
        for runner_id, token in fleet:
            nursery.start_soon(_seed_runner, target.url, runner_id, token, lines, transport, built)
    if len(built) != builds:
        raise SystemExit(f"the seed runners ran {len(built)} of {builds} builds")
    return {
        "api_token": api_token,
        "projects": [p for p, _ in pipelines],
        "pipelines": [p for _, p in pipelines],
        "builds": built,
        "lines": lines,
    }


async def _seed_runner(
    url: str, runner_id: str, token: str, lines: int, transport: str, built: list[str]
) -> None:
    """Claim builds until none is left; each gets ``lines`` lines and ends."""
    async with trio.open_nursery() as nursery:
        link = await open_link(transport, nursery, url, runner_id, token)
        while (job := await link.claim()) is not None:
            build_id = job["build_id"]
            await link.report(build_id, "running")
            for start in range(0, lines, 500):
                chunks = [
                    {"sequence": n, "content": f"step {n}: {PADDING}", "stream": "stdout"}
                    for n in range(start, min(lines, start + 500))
                ]
                await link.logs(build_id, chunks)
            failed = len(built) % 4 == 3
            await link.report(
                build_id, "failed" if failed else "succeeded", exit_code=1 if failed else 0
            )
            built.append(build_id)
            if len(built) % 50 == 0:
                progress(f"seeded {len(built)} builds")
        await link.aclose()
        nursery.cancel_scope.cancel()


# --- readers ------------------------------------------------------------------------


def _reader_paths(seeded: dict[str, Any], rng: random.Random) -> str:
    """The path of one read, at random among the kinds (by :data:`READ_WEIGHTS`)."""
    kind = rng.choices(READ_KINDS, READ_WEIGHTS)[0]
    builds: list[str] = seeded["builds"]
    if kind == "build_list":
        query = rng.choice(
            [
                f"limit=20&offset={rng.randrange(0, max(1, len(builds)), 20)}",
                f"project_id={rng.choice(seeded['projects'])}&limit=20",
                "status=failed&limit=20",
                f"pipeline_id={rng.choice(seeded['pipelines'])}&sort=status&limit=50",
                "status=running&limit=20",
            ]
        )
        return f"/v1/builds?{query}"
    if kind == "build":
        return f"/v1/builds/{rng.choice(builds)}"
    if kind == "log_page":
        after = rng.randrange(-1, max(0, seeded["lines"] - 100))
        return f"/v1/builds/{rng.choice(builds)}/logs?after_sequence={after}&limit=100"
    if kind == "runners":
        return "/v1/runners?limit=50"
    return "/v1/projects"


def _kind(path: str) -> str:
    if path.startswith("/v1/builds?"):
        return "build_list"
    if path.startswith("/v1/builds/"):
        return "log_page" if "/logs" in path else "build"
    return "runners" if path.startswith("/v1/runners") else "projects"


def _readers(
    results: Any,
    url: str,
    seeded: dict[str, Any],
    count: int,
    pace: float,
    seconds: float,
    gate: StartGate,
    cpus: set[int],
) -> None:
    os.sched_setaffinity(0, cpus)
    # A client on another machine takes nothing from the server's CPUs: the readers run
    # last, in a session of their own (where the kernel shares the CPUs between sessions
    # first, Linux's autogroups, the session's niceness is what counts).
    os.setsid()
    os.nice(LOAD_NICENESS)
    group = Path("/proc/self/autogroup")
    if group.exists():
        group.write_text(f"{LOAD_NICENESS}\n")
    results.put(trio.run(_read, url, seeded, count, pace, seconds, gate))


async def _read(
    url: str, seeded: dict[str, Any], count: int, pace: float, seconds: float, gate: StartGate
) -> dict[str, Any]:
    """``count`` readers reading for ``seconds`` from the start ``gate`` sets, once every
    reader process is ready."""
    host, port_text = url.removeprefix("http://").rsplit(":", 1)
    port = int(port_text)
    token: str = seeded["api_token"]
    latencies: dict[str, list[float]] = {kind: [] for kind in READ_KINDS}
    late: list[float] = []  # the latencies of reads sent after the first WARM_SECONDS
    errors: list[str] = []
    at = await gate.arrive()
    until = at + seconds
    # connected only now: the server closes a connection idle for 5 s
    conns = [await RawConn.open(host, port) for _ in range(count)]

    async def reader(index: int, conn: RawConn) -> None:
        rng = random.Random(index)
        offset = trio.current_time() - time.time()  # wall clock -> trio clock
        # spread the first requests over one interval, so they do not all come at once
        tick = at + (rng.random() / pace if pace else 0.0)
        while True:
            await trio.sleep_until(tick + offset)
            sent = time.time()
            if sent >= until:
                break
            path = _reader_paths(seeded, rng)
            began = time.perf_counter()
            try:
                status, body = await conn.request("GET", path, token)
            except HTTP_FAILURES as exc:
                errors.append(f"GET {path}: {exc!r}")
                await conn.aclose()
                conn = await RawConn.open(host, port)
                status, body = 0, b""
            took = time.perf_counter() - began
            if status == 200:
                latencies[_kind(path)].append(took)
                if sent >= at + WARM_SECONDS:
                    late.append(took)
            elif status:
                errors.append(f"GET {path}: {status} {body[:200]!r}")
            tick = max(tick + 1 / pace, time.time()) if pace else time.time()
        await conn.aclose()

    cpu_before, wall_before = _cpu_seconds(), time.monotonic()
    async with trio.open_nursery() as nursery:
        for index, conn in enumerate(conns):
            nursery.start_soon(reader, index, conn)
    cores = (_cpu_seconds() - cpu_before) / (time.monotonic() - wall_before)
    return {"latencies": latencies, "late": late, "errors": errors, "cpu_cores": cores}


# --- runners ------------------------------------------------------------------------


class _Timings:
    def __init__(self) -> None:
        self.claims: list[float] = []
        self.appends: list[float] = []
        self.sent: dict[str, int] = {}  # build id -> lines sent
        self.live: list[float] = []


async def _append_for(
    link: RunnerLink,
    build_id: str,
    rate: int,
    seconds: float,
    interval: float,
    timings: _Timings,
) -> None:
    """Append ``rate`` lines/s to the build for ``seconds``, as the agent batches them (a
    batch answered late is followed at once by one with every line due since), then end it."""
    began = time.time()
    total = max(1, round(rate * seconds))
    sent = 0
    tick = trio.current_time()
    while sent < total:
        await trio.sleep_until(tick)
        now = time.time()
        due = min(total, max(sent + 1, math.floor(rate * (now - began))))
        chunks = [
            {"sequence": n, "content": f"{n} {now:.6f} {PADDING}", "stream": "stdout"}
            for n in range(sent, due)
        ]
        started = time.perf_counter()
        await link.logs(build_id, chunks)
        timings.appends.append(time.perf_counter() - started)
        sent = due
        timings.sent[build_id] = sent
        tick = max(tick + interval, trio.current_time())
    await link.report(build_id, "succeeded", exit_code=0)


async def _runner(
    url: str,
    runner: tuple[str, str],
    transport: str,
    rate: int,
    build_seconds: float,
    interval: float,
    until: float,
    timings: _Timings,
    start_in: float = 0.0,
) -> None:
    """Claim, run and end builds from ``start_in`` seconds on until ``until`` (wall clock)."""
    runner_id, token = runner
    await trio.sleep(start_in)
    async with trio.open_nursery() as nursery:
        link = await open_link(transport, nursery, url, runner_id, token)
        while time.time() < until:
            started = time.perf_counter()
            job = await link.claim(wait_seconds=CLAIM_WAIT)
            timings.claims.append(time.perf_counter() - started)
            if job is None:
                raise SystemExit("a runner found no queued build: queue more")
            await link.report(job["build_id"], "running")
            left = min(build_seconds, until - time.time())
            await _append_for(link, job["build_id"], rate, left, interval, timings)
        await link.aclose()
        nursery.cancel_scope.cancel()


async def _phase(
    target: Target,
    runners: list[tuple[str, str]],
    live: tuple[str, str],
    transport: str,
    rate: int,
    seconds: float,
    build_seconds: float,
    interval: float,
) -> _Timings:
    """One phase: the live build and its viewer, and the runners, for ``seconds``."""
    timings = _Timings()
    host, port = target.url.removeprefix("http://").rsplit(":", 1)
    async with httpx.AsyncClient(base_url=target.url, timeout=60, headers=target.auth) as client:
        reply = await client.post(
            f"/v1/projects/{target.project_id}/builds",
            json={"pipeline_id": target.pipeline_id, "commit_sha": target.commit_sha},
        )
        reply.raise_for_status()
    seen: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        link = await open_link(transport, nursery, target.url, *live)
        job = await link.claim(wait_seconds=CLAIM_WAIT)
        if job is None:
            raise SystemExit("the live runner found no queued build")
        live_id = job["build_id"]
        await link.report(live_id, "running")
        await nursery.start(
            view,
            host,
            int(port),
            f"/v1/builds/{live_id}/logs/stream",
            target.token,
            None,
            trio.Semaphore(1),
            seen,
        )
        until = time.time() + seconds
        live_timings = _Timings()

        async def live_log() -> None:
            await _append_for(link, live_id, rate, seconds, interval, live_timings)
            await link.aclose()

        nursery.start_soon(live_log)
        # Spread over a build's length, the runners claim one at a time: started in the
        # same instant, they claimed, appended and ended together all the phase long.
        for index, runner in enumerate(runners):
            nursery.start_soon(
                _runner,
                target.url,
                runner,
                transport,
                rate,
                build_seconds,
                interval,
                until,
                timings,
                index * build_seconds / len(runners),
            )
    # the viewer has read to the stream's end (its task is done): the nursery waited for it
    timings.sent.update(live_timings.sent)
    timings.appends.extend(live_timings.appends)
    timings.live = [x for s in seen for x in s["latencies"]]
    return timings


async def _queue(target: Target, count: int) -> None:
    async with httpx.AsyncClient(base_url=target.url, timeout=60, headers=target.auth) as client:
        limiter = trio.CapacityLimiter(SEED_AT_ONCE)

        async def one() -> None:
            async with limiter:
                reply = await client.post(
                    f"/v1/projects/{target.project_id}/builds",
                    json={"pipeline_id": target.pipeline_id, "commit_sha": target.commit_sha},
                )
            reply.raise_for_status()

        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(one)


async def _stored(target: Target, builds: list[str]) -> int:
    """The lines the server holds for ``builds`` (each log's ``total``)."""
    total = 0
    limiter = trio.CapacityLimiter(SEED_AT_ONCE)
    async with httpx.AsyncClient(base_url=target.url, timeout=60, headers=target.auth) as client:

        async def one(build_id: str) -> None:
            nonlocal total
            async with limiter:
                reply = await client.get(f"/v1/builds/{build_id}/logs", params={"limit": 1})
            reply.raise_for_status()
            total += int(reply.json()["total"])

        async with trio.open_nursery() as nursery:
            for build_id in builds:
                nursery.start_soon(one, build_id)
    return total


def _ms(values: list[float], q: float) -> float:
    return percentile(values, q) * 1000 if values else 0.0


_RUNNER_SAMPLES = {"claim": "claims", "append": "appends", "live_latency": "live"}


def _ratios(alone: dict[str, float], together: dict[str, float]) -> dict[str, float]:
    """Each runner figure's p99 with the readers over its p99 without them."""
    return {
        f"{name}_p99_ratio": together[f"{name}_p99_ms"] / alone[f"{name}_p99_ms_alone"]
        if alone[f"{name}_p99_ms_alone"]
        else 0.0
        for name in _RUNNER_SAMPLES
    }


def _samples(timings: list[_Timings], attribute: str) -> list[float]:
    """One kind of the runners' samples (``claims``, ``appends``, ``live``) of ``timings``."""
    return [x for phase in timings for x in getattr(phase, attribute)]


def _latencies(timings: list[_Timings], suffix: str) -> dict[str, float]:
    """The runners' claim, append and live line p50 and p99 over the samples of ``timings``."""
    figures: dict[str, float] = {}
    for name, attribute in _RUNNER_SAMPLES.items():
        samples = _samples(timings, attribute)
        figures[f"{name}_p50_ms{suffix}"] = _ms(samples, 0.5)
        figures[f"{name}_p99_ms{suffix}"] = _ms(samples, 0.99)
    return figures


def _pooled(phases: list[tuple[_Timings, _Timings]]) -> dict[str, float]:
    """The runners' p50 and p99 over the samples of every run's phase without readers, and
    of every run's phase with them, and the ratios of the p99s; with how many samples
    each p99 comes from, and the lowest and highest ratio their 95 % bounds allow."""
    quiet, read = [pair[0] for pair in phases], [pair[1] for pair in phases]
    alone = _latencies(quiet, "_alone")
    together = _latencies(read, "")
    bounds: dict[str, float] = {}
    for name, attribute in _RUNNER_SAMPLES.items():
        without, under = _samples(quiet, attribute), _samples(read, attribute)
        if not without or not under:
            continue
        without_low, without_high = percentile_bounds(without, 0.99)
        under_low, under_high = percentile_bounds(under, 0.99)
        bounds[f"{name}_samples_alone"] = float(len(without))
        bounds[f"{name}_samples"] = float(len(under))
        bounds[f"{name}_p99_ratio_low"] = under_low / without_high
        bounds[f"{name}_p99_ratio_high"] = under_high / without_low
    return {**alone, **together, **_ratios(alone, together), **bounds}


def _runner_figures(
    target: Target, timings: _Timings, seconds: float, suffix: str
) -> dict[str, float]:
    sent = sum(timings.sent.values())
    stored = trio.run(_stored, target, list(timings.sent))
    if stored != sent:
        raise SystemExit(f"the server stored {stored} of the {sent} lines sent")
    return {
        **_latencies([timings], suffix),
        f"stored_lines_per_s{suffix}": stored / seconds,
        f"claims{suffix}": float(len(timings.claims)),
    }


def repetition(
    cluster: Cluster, args: argparse.Namespace
) -> tuple[dict[str, float], tuple[_Timings, _Timings]]:
    """One run's figures, and its runners' timings without and with the readers."""
    target = prepare(cluster.servers[0])
    progress(f"seeding {args.projects} projects, {args.builds} builds of {args.lines} lines")
    seeded = trio.run(_seed, target, args.projects, args.builds, args.lines, args.transport)
    fleet = trio.run(
        partial(register_runners, target, args.runners + 1, "readers", max_concurrent=1)
    )
    live, runners = fleet[0], fleet[1:]
    phase = partial(
        _phase,
        target,
        runners,
        live,
        args.transport,
        args.rate,
        args.seconds,
        args.build_seconds,
        args.batch_interval,
    )
    # the builds the runners run in a phase, queued before it (not measured, and not
    # while the readers read: the runners' figures do not count it either)
    queued = (math.ceil(args.seconds / args.build_seconds) + 1) * args.runners
    progress(f"without readers: {args.runners} runners and a live log for {args.seconds:g}s")
    trio.run(_queue, target, queued)
    settle(cluster.servers[0])
    meter = cluster.meter()
    meter.start()
    alone = trio.run(phase)
    cores_alone = {f"{k}_alone": v for k, v in meter.cores().items()}

    progress(f"with {args.readers} readers: {args.seconds:g}s")
    trio.run(_queue, target, queued)
    settle(cluster.servers[0])
    kept_before = daemon_counters(cluster.urls[0], _KEPT)
    gate = StartGate.new()
    reading = READERS_AHEAD + args.seconds
    shares = [s for s in split(list(range(args.readers)), args.procs) if s]
    cpus = os.sched_getaffinity(0)
    if args.load_cpus == "apart" and len(cpus) > 1:
        cpus = cpus - {min(cpus)}
    load = BackgroundLoad(
        _readers,
        [(cluster.urls[0], seeded, len(share), args.pace, reading, gate, cpus) for share in shares],
    )
    at = gate.open(len(shares), load, f"{args.readers} readers starting")
    time.sleep(max(0.0, at + READERS_AHEAD - time.time()))
    meter = cluster.meter()
    meter.start()
    together = trio.run(phase)
    cores = meter.cores()
    rss_kb = cluster.rss_kb()  # the daemon with what it keeps after the readers
    read = load.results(timeout=120 + reading)
    kept_after = daemon_counters(cluster.urls[0], _KEPT)
    done_progress()

    latencies = {k: [x for r in read for x in r["latencies"][k]] for k in READ_KINDS}
    every = [x for k in READ_KINDS for x in latencies[k]]
    errors = [e for r in read for e in r["errors"]]
    for line in errors[:5]:
        print(f"\n  read error: {line}")
    figures = {
        "reads_per_s": len(every) / reading,
        "read_p50_ms": _ms(every, 0.5),
        "read_p99_ms": _ms(every, 0.99),
        "read_p99_ms_warm": _ms([x for r in read for x in r["late"]], 0.99),
        "read_errors": float(len(errors)),
    }
    for kind in READ_KINDS:
        figures[f"{kind}_p50_ms"] = _ms(latencies[kind], 0.5)
        figures[f"{kind}_p99_ms"] = _ms(latencies[kind], 0.99)
    without = _runner_figures(target, alone, args.seconds, "_alone")
    under = _runner_figures(target, together, args.seconds, "")
    figures.update(without)
    figures.update(under)
    figures.update(_ratios(without, under))
    figures.update(cores_alone)
    figures.update(cores)
    figures["readers_cpu_cores"] = sum(r["cpu_cores"] for r in read)
    figures["server_rss_mb"] = rss_kb / 1024
    # /metrics of a daemon with workers is one worker's: with two, the one that serves reads
    if args.workers <= 2:
        kept = {k: kept_after[k] - kept_before[k] for k in _KEPT.values()}
        figures["kept_hit_ratio"] = kept["hits"] / max(1.0, kept["hits"] + kept["misses"])
        figures["kept_misses_per_s"] = kept["misses"] / args.seconds
    return figures, (alone, together)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench readers", description=__doc__)
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument(
        "--pace", type=float, default=5.0, help="requests/s per reader at most (0: no pause)"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="each phase's length")
    parser.add_argument("--projects", type=int, default=5)
    parser.add_argument("--builds", type=int, default=300, help="builds with logs set up")
    parser.add_argument("--lines", type=int, default=500, help="log lines of each")
    parser.add_argument("--runners", type=int, default=4, help="runners claiming and appending")
    parser.add_argument("--rate", type=int, default=25, help="lines per second per runner")
    parser.add_argument(
        "--build-seconds", type=float, default=3.0, help="how long each runner's build logs"
    )
    parser.add_argument(
        "--batch-interval", type=float, default=0.25, help="seconds between appends"
    )
    parser.add_argument("--procs", type=int, default=2, help="reader processes")
    parser.add_argument(
        "--load-cpus",
        choices=("apart", "any"),
        default="apart",
        help="where the reader processes run: on every CPU but the lowest, or on any",
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--transport", choices=TRANSPORTS, default=TRANSPORTS[0], help="what the runners speak"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="the daemon's --workers (worker processes)"
    )
    args = parser.parse_args(argv)
    if args.readers < 1 or args.builds < 1 or args.runners < 1 or args.seconds <= 0:
        parser.error("--readers, --builds and --runners must be at least 1, --seconds above 0")
    if args.pace < 0 or args.lines < 1 or args.projects < 1 or args.build_seconds <= 0:
        parser.error("--pace 0 or more; --lines, --projects at least 1; --build-seconds above 0")
    runs = []
    phases = []
    for _ in range(args.repeat):
        with started_cluster(1, args.workers) as cluster:
            figures, timings = repetition(cluster, args)
        runs.append(figures)
        phases.append(timings)
    params = {
        key: getattr(args, key)
        for key in (
            "readers",
            "pace",
            "seconds",
            "projects",
            "builds",
            "lines",
            "runners",
            "rate",
            "build_seconds",
            "batch_interval",
            "procs",
            "load_cpus",
            "transport",
            "workers",
        )
    }
    pooled = _pooled(phases)
    report("readers", params, runs, pooled)
    return {"params": params, "runs": runs, "pooled": pooled}
