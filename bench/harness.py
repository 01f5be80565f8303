"""What every scenario shares: a real ``oored`` in its own process, a project to build,
load processes, repetitions summarised as median/min/max, a table and a JSON file."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import queue
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import asyncpg
import httpx
import trio

from bench import procfs
from oore.datadir import ENCRYPTION_KEY_FILE, PGDATA_DIR
from oore.store.embedded import EmbeddedPostgres

T = TypeVar("T")
RESULTS_ENV = "OORE_BENCH_RESULTS"  # where the JSON files go (default bench/results)
LISTENING = re.compile(r"oored listening on (http://\S+)")
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Server:
    url: str
    pid: int
    data_dir: Path
    database_url: str | None  # the OORED_DATABASE_URL it was given; None: embedded
    workers: int = 1  # its --workers


def postgres_url(server: Server) -> str:
    """The PostgreSQL server the daemon uses: its ``OORED_DATABASE_URL``, or the embedded
    one in its data directory, reached over the Unix socket that ``postmaster.pid`` names
    (lines: pid, data directory, start time, port, socket directory, listen address)."""
    if server.database_url:
        return server.database_url
    lines = (server.data_dir / PGDATA_DIR / "postmaster.pid").read_text().splitlines()
    port, socket_dir, address = lines[3].strip(), lines[4].strip(), lines[5].strip()
    if socket_dir:
        return f"postgresql://postgres@/postgres?host={quote(socket_dir, safe='/')}&port={port}"
    host = "127.0.0.1" if address in ("", "*", "0.0.0.0") else address
    return f"postgresql://postgres@{host}:{port}/postgres"


@contextmanager
def started_daemon(
    env: Mapping[str, str] | None = None, *, workers: int = 1, data_dir: Path | None = None
) -> Iterator[Server]:
    """A fresh ``oored`` on a free loopback port (embedded PostgreSQL in a temporary data
    directory, or ``OORED_DATABASE_URL``); stopped with SIGTERM on exit. ``workers`` above
    1 starts it with ``--workers``: a supervisor and that many worker processes on the
    port. ``data_dir``: a directory prepared for it (e.g. holding an ``encryption.key``),
    removed on exit like a temporary one.

    Its log goes to a file, as under a service manager, not to a pipe: a pipe that this
    process drains too slowly would block the daemon's writes and slow what is measured.
    It runs in a session of its own, as under a service manager too: where the kernel
    shares the CPUs between sessions first (Linux's autogroups), this process and its
    load processes are not counted as the daemon's.
    """
    data = data_dir or Path(tempfile.mkdtemp(prefix="oore-bench-"))
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("OORE_")}
    child_env.update(env or {})
    log_path = data / "oored.log"
    command = [
        sys.executable,
        "-m",
        "oore.daemon",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        str(data),
    ]
    if workers > 1:
        command += ["--workers", str(workers)]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=child_env,
            start_new_session=True,  # as a service manager starts it
        )
    try:
        url = _listening(proc, log_path)
        if url is None:
            tail = log_path.read_text(errors="replace").splitlines()[-20:]
            raise SystemExit("oored did not start:\n" + "\n".join(tail))
        yield Server(url, proc.pid, data, child_env.get("OORED_DATABASE_URL"), workers)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(data, ignore_errors=True)  # the embedded PostgreSQL went with oored


def settle(server: Server) -> None:
    """The database's upkeep, done now: ``VACUUM (ANALYZE)`` and a ``CHECKPOINT``.

    Before each measured phase of a scenario that compares phases: the writes of the
    set-up and of the phase before make PostgreSQL's upkeep due (autovacuum, autoanalyze,
    the next checkpoint), and without this it falls into the next phase only. A checkpoint
    needs a superuser or ``pg_checkpoint``: for an external database whose role has
    neither, it is left out.
    """

    async def upkeep() -> None:
        connection = await asyncpg.connect(postgres_url(server))
        try:
            await connection.execute("VACUUM (ANALYZE)")
            with suppress(asyncpg.InsufficientPrivilegeError):
                await connection.execute("CHECKPOINT")
        finally:
            await connection.close()

    asyncio.run(upkeep())


@dataclass(frozen=True)
class Cluster:
    """``oored`` daemons on one PostgreSQL (or one daemon with its own), as
    :func:`started_cluster` started them."""

    servers: tuple[Server, ...]
    postmaster: int | None  # PostgreSQL's postmaster; None: an external database

    @property
    def workers(self) -> int:
        return self.servers[0].workers

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def cpu_readings(self) -> dict[str, Callable[[], float]]:
        """What reads each process's CPU seconds: ``server`` (every daemon with its
        workers), with several daemons each ``daemon<i>``, with workers each
        ``daemon<i>_worker<j>`` (and its supervisor, ``daemon<i>_supervisor``), and
        ``postgres`` (its postmaster and backends) when it runs on this machine."""
        pids = [server.pid for server in self.servers]
        readings: dict[str, Callable[[], float]] = {
            "server": lambda: sum(procfs.tree_cpu_seconds(pid) for pid in pids)
        }
        for i, server in enumerate(self.servers):
            if len(self.servers) > 1:
                readings[f"daemon{i}"] = partial(procfs.tree_cpu_seconds, server.pid)
            if server.workers > 1:
                readings[f"daemon{i}_supervisor"] = partial(procfs.cpu_seconds, server.pid)
                for j, worker in enumerate(worker_pids(server)):
                    readings[f"daemon{i}_worker{j}"] = partial(procfs.cpu_seconds, worker)
        if self.postmaster is not None:
            readings["postgres"] = partial(procfs.tree_cpu_seconds, self.postmaster)
        return readings

    def meter(self) -> procfs.CpuWindow:
        return procfs.CpuWindow(self.cpu_readings())

    def rss_kb(self) -> int:
        """The resident memory of every daemon and its workers."""
        return sum(procfs.tree_rss_kb(server.pid) for server in self.servers)


def worker_pids(server: Server) -> list[int]:
    """The worker processes of ``oored --workers N`` (its children running oore.daemon), in
    the order of their slots (``--worker-slot``): the supervisor starts them all at once,
    so their pids may come in any order."""
    found = []
    for pid in procfs.children(server.pid):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"oore.daemon" in args and b"--worker-slot" in args:
            found.append((int(args[args.index(b"--worker-slot") + 1]), pid))
    return [pid for _, pid in sorted(found)]


@contextmanager
def started_cluster(
    daemons: int = 1, workers: int = 1, env: Mapping[str, str] | None = None
) -> Iterator[Cluster]:
    """``daemons`` fresh ``oored`` processes (each with ``workers`` workers) on one
    PostgreSQL; stopped on exit.

    One daemon keeps its embedded PostgreSQL. Several share one that this process starts
    (the ``EmbeddedPostgres`` the daemon itself would run) through ``OORED_DATABASE_URL``,
    each with a data directory of its own holding the same ``encryption.key``, as an
    operator copies it from the first daemon. They start one after the other: the first
    migrates the database."""
    if daemons == 1:
        with started_daemon(env, workers=workers) as server:
            yield Cluster((server,), procfs.postmaster_pid(server.pid))
        return
    root = Path(tempfile.mkdtemp(prefix="oore-bench-pg-"))
    root.chmod(0o755)  # run as root, PostgreSQL runs as a user of its own
    postgres = EmbeddedPostgres(root / "pg")
    try:
        shared = {**(env or {}), "OORED_DATABASE_URL": postgres.start()}
        key = secrets.token_bytes(32)
        with ExitStack() as stack:
            servers = []
            for _ in range(daemons):
                data = Path(tempfile.mkdtemp(prefix="oore-bench-"))
                (data / ENCRYPTION_KEY_FILE).write_bytes(key)
                (data / ENCRYPTION_KEY_FILE).chmod(0o600)
                servers.append(
                    stack.enter_context(started_daemon(shared, workers=workers, data_dir=data))
                )
            yield Cluster(tuple(servers), postgres.pid)
    finally:
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """``--daemons`` and ``--workers``, as every scale-out scenario takes them."""
    parser.add_argument("--daemons", type=int, default=1, help="oored processes on one PostgreSQL")
    parser.add_argument(
        "--workers", type=int, default=1, help="each daemon's --workers (worker processes)"
    )


def round_robin(items: Sequence[T], urls: Sequence[str]) -> list[tuple[str, T]]:
    """Each item with the URL it goes to: the first to ``urls[0]``, the next to the next."""
    return [(urls[i % len(urls)], item) for i, item in enumerate(items)]


def _listening(proc: subprocess.Popen[bytes], log_path: Path) -> str | None:
    """The URL the daemon says it listens on, once it says so; None if it exits first or
    stays silent for :data:`START_TIMEOUT` seconds."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if match := LISTENING.search(log_path.read_text(errors="replace")):
            return match[1]
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    return None


def make_repo(root: Path) -> tuple[Path, str]:
    """A local git repository with one commit; its path and head."""
    repo = root / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=b@e", "-c", "user.name=b"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    (repo / "README").write_text("bench\n")
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "bench"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
    return repo, head.stdout.strip()


@dataclass(frozen=True)
class Target:
    """A signed-in owner and a pipeline to queue builds of, on one server."""

    url: str
    token: str
    project_id: str
    pipeline_id: str
    commit_sha: str
    repo: Path  # the project's local repository, in the server's data directory

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def prepare(server: Server) -> Target:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        token = client.post("/v1/auth/local/login", json={}).json()["session_token"]
        auth = {"Authorization": f"Bearer {token}"}
        # in the data directory, which goes when the server stops
        repo, head = make_repo(Path(tempfile.mkdtemp(prefix="bench-repo-", dir=server.data_dir)))
        project = client.post(
            "/v1/projects",
            json={"name": f"bench-{time.time_ns()}", "local_repository_path": str(repo)},
            headers=auth,
        )
        project_id = project.json()["project"]["id"]
        pipeline = client.post(
            f"/v1/projects/{project_id}/pipelines", json={"name": "bench"}, headers=auth
        )
        pipeline_id = pipeline.json()["pipeline"]["id"]
        return Target(server.url, token, project_id, pipeline_id, head, repo)


REGISTER_AT_ONCE = 64


async def register_runners(
    target: Target, count: int, prefix: str, *, max_concurrent: int | None = None
) -> list[tuple[str, str]]:
    """Register ``count`` runners, ``REGISTER_AT_ONCE`` at a time; their ids and tokens."""
    registered: list[tuple[str, str]] = []
    limits = httpx.Limits(max_connections=REGISTER_AT_ONCE)
    body: dict[str, Any] = {} if max_concurrent is None else {"max_concurrent": max_concurrent}
    async with httpx.AsyncClient(base_url=target.url, timeout=120, limits=limits) as client:
        limiter = trio.CapacityLimiter(REGISTER_AT_ONCE)
        stamp = time.time_ns()

        async def one(i: int) -> None:
            async with limiter:
                reply = await client.post(
                    "/v1/runners/register",
                    json={"name": f"{prefix}-{stamp}-{i}", **body},
                    headers=target.auth,
                )
            reply.raise_for_status()
            registered.append((reply.json()["runner"]["id"], reply.json()["token"]))
            if len(registered) % 250 == 0:
                progress(f"registered {len(registered)}/{count} runners")

        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(one, i)
    return registered


def split(items: list[T], parts: int) -> list[list[T]]:
    """``items`` dealt round-robin into at most ``parts`` non-empty shares."""
    return [items[i::parts] for i in range(parts) if items[i::parts]]


def run_processes(
    target: Callable[..., None], args: Sequence[tuple[Any, ...]]
) -> list[dict[str, Any]]:
    """Run ``target(queue, *a)`` in one process per ``a``; gather what each put back."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    procs = [context.Process(target=target, args=(results, *a)) for a in args]
    for proc in procs:
        proc.start()
    gathered: list[dict[str, Any]] = []
    deadline = time.monotonic() + 3600
    while len(gathered) < len(procs):
        try:
            gathered.append(results.get(timeout=1.0))
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                for proc in procs:
                    proc.kill()
                raise SystemExit("a load process failed (its error is above)") from None
    for proc in procs:
        proc.join(timeout=30)
    return gathered


class BackgroundLoad:
    """:func:`run_processes` on a thread of its own, so that a scenario can measure the
    server while its load runs."""

    def __init__(self, target: Callable[..., None], args: Sequence[tuple[Any, ...]]) -> None:
        self._expected = len(args)
        self._reported: list[dict[str, Any]] = []
        self._thread = threading.Thread(
            target=lambda: self._reported.extend(run_processes(target, args))
        )
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)

    def results(self, timeout: float = 0.0) -> list[dict[str, Any]]:
        """What every load process reported, once they have (up to ``timeout``)."""
        self.wait(timeout)
        if len(self._reported) != self._expected:
            raise SystemExit("a load process did not report (its error is above)")
        return self._reported


SET_UP_TIMEOUT = 600.0  # seconds the load processes may take to set up
START_LEAD = 1.0  # seconds from the last load process ready to the start


@dataclass(frozen=True)
class StartGate:
    """How the load processes start together once all are set up, however long that
    takes: each says it is ready, then waits for the start instant this process sets."""

    ready: Any  # a queue: one item per load process set up
    go: Any  # an event: the start instant is set
    at: Any  # a shared double: the start instant (wall clock)

    @classmethod
    def new(cls) -> StartGate:
        context = multiprocessing.get_context("spawn")  # as run_processes starts them
        return cls(context.Queue(), context.Event(), context.Value("d", 0.0))

    async def arrive(self) -> float:
        """In a load process running trio: ready; answers the start instant."""
        at: float = await trio.to_thread.run_sync(self.arrive_blocking)
        return at

    def arrive_blocking(self) -> float:
        """:meth:`arrive` for a thread of its own (e.g. under another event loop)."""
        self.ready.put(True)
        if not self.go.wait(SET_UP_TIMEOUT):
            raise SystemExit("the start never came")
        at: float = self.at.value
        return at

    def open(
        self, processes: int, load: BackgroundLoad, waiting: str, lead: float = START_LEAD
    ) -> float:
        """Here: wait until ``processes`` load processes are ready, then set the start,
        ``lead`` seconds later (time for each to hear it and for what it does first)."""
        began, ready = time.monotonic(), 0
        while ready < processes:
            progress(f"{waiting}: {ready} of {processes} load processes ready")
            with suppress(queue.Empty):
                self.ready.get(timeout=1.0)
                ready += 1
            if not load.is_alive():
                raise SystemExit("a load process failed (its error is above)")
            if time.monotonic() - began > SET_UP_TIMEOUT:
                raise SystemExit(f"the load took over {SET_UP_TIMEOUT:.0f}s to set up")
        self.at.value = time.time() + lead
        self.go.set()
        at: float = self.at.value
        return at


def daemon_counters(url: str, names: Mapping[str, str]) -> dict[str, float]:
    """Counters of the daemon's /metrics, each under the name ``names`` gives it (0 when
    absent)."""
    found = dict.fromkeys(names.values(), 0.0)
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        name, _, value = line.partition(" ")
        if name in names:
            found[names[name]] = float(value)
    return found


def progress(text: str) -> None:
    """One status line, rewritten in place while a scenario runs."""
    print(f"\r  {text:<70}", end="", file=sys.stderr, flush=True)


def done_progress() -> None:
    print(file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def percentile_bounds(values: Sequence[float], q: float, z: float = 1.96) -> tuple[float, float]:
    """About 95 % sure (``z`` = 1.96) to hold the ``q`` quantile of what ``values`` were
    drawn from: the samples ranked ``n q`` less and more ``z`` times the binomial spread
    ``sqrt(n q (1 - q))``. No assumption about the distribution; with 240 samples, the p99
    lies between the seventh slowest and the slowest."""
    ordered = sorted(values)
    n = len(ordered)
    spread = z * math.sqrt(n * q * (1 - q))
    low = max(0, math.floor(q * (n - 1) - spread))
    high = min(n - 1, math.ceil(q * (n - 1) + spread))
    return ordered[low], ordered[high]


def summarize(runs: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Per figure: median, min and max over the repetitions."""
    return {
        key: {
            "median": statistics.median(run[key] for run in runs),
            "min": min(run[key] for run in runs),
            "max": max(run[key] for run in runs),
        }
        for key in runs[0]
    }


def report(
    scenario: str,
    params: Mapping[str, Any],
    runs: Sequence[Mapping[str, float]],
    pooled: Mapping[str, float] | None = None,
) -> Path:
    """Print the table and write ``bench/results/<scenario>.json``; answers its path.
    ``pooled``: figures over the samples of every repetition at once, shown after."""
    summary = summarize(runs)
    cores = os.cpu_count()
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    print(f"\n{scenario}: {shown}; {len(runs)} repetitions; {cores} cores")
    print(f"{'figure':<34} {'median':>12} {'min':>12} {'max':>12}")
    for key, fig in summary.items():
        print(f"{key:<34} {fig['median']:>12.2f} {fig['min']:>12.2f} {fig['max']:>12.2f}")
    if pooled:
        print(f"\nover the samples of all {len(runs)} repetitions")
        for key, value in pooled.items():
            print(f"{key:<34} {value:>12.2f}")
    results = Path(os.environ.get(RESULTS_ENV) or Path(__file__).parent / "results")
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"{scenario}.json"
    body = {"scenario": scenario, "cores": cores, "params": dict(params), "runs": list(runs)}
    if pooled:
        body["pooled"] = dict(pooled)
    out.write_text(json.dumps({**body, "summary": summary}, indent=2))
    print(f"wrote {out}")
    return out
