"""crash: ``oored`` SIGKILLed at random moments while real ``oore runner`` agents build.

Run: ``python -m bench crash [--kills 20] [--runners 3] [--lines 400] [--seed 1]``. One
``oored`` on a fixed loopback port and data directory (embedded PostgreSQL) and R real
runner agents. Before each kill the queue is topped up so every runner has work; the kill
lands a seeded random time after the daemon became ready (while builds check out, print
their numbered lines, upload their artifact or report), and the daemon is started again
at once on the same port and data directory, adopting the PostgreSQL its predecessor left
running. After the last kill no more builds are queued; once every build has ended, the
invariants are checked through the API, and the daemon is stopped with SIGTERM (exit 0,
its embedded PostgreSQL gone). Any broken invariant ends the run with what broke.

The invariants, per build queued (each trigger was answered 201):

* it ended ``succeeded``, exactly once: one event into a terminal state, the last one;
  its ``assigned`` events are its attempts; no build is left queued, assigned or running;
  the runners' own terminals say ``build #N succeeded`` once across all of them;
* its log: a line is *acknowledged* once the daemon has answered the append that carried
  it (it commits before it answers). A runner sends a build's batches in order, the next
  only after the previous was answered (retrying through a restart), and reports a build
  succeeded only after every line was answered; so each line the last attempt printed was
  acknowledged, and the attempt's log must hold each once, in order, with sequences
  0..n-1. An earlier attempt (its runner lost the build) keeps a gapless prefix of its
  lines;
* its artifact: one, ``available``, whose download is the bytes the step wrote (they
  name the build) with the size and SHA-256 the listing gives.

Figures: builds, log lines and artifact bytes checked, kills, builds requeued, the time
from a kill to the new daemon's ``/readyz`` 200, and the whole run. Prints a table and
writes ``bench/results/crash.json``. :func:`soak` is the same scenario for
``tests/e2e/test_crash_soak.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.harness import make_repo, report
from oore.datadir import PGDATA_DIR

LISTENING = re.compile(r"oored listening on (http://\S+)")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
TERMINAL = frozenset({"succeeded", "failed", "canceled", "timed_out", "expired"})
UNFINISHED = "queued,scheduled,assigned,running"
ARTIFACT_NUMBERS = 20_000
RUNNER_GRACE = 1.0

Say = Callable[[str], None]


class SoakFailed(AssertionError):
    """An invariant did not hold; the message says which, for which build."""


@dataclass(frozen=True)
class Plan:
    kills: int = 20
    runners: int = 3
    lines: int = 400  # numbered lines each build prints, in bursts spanning about a second
    seed: int = 1
    min_gap: float = 0.5  # seconds from a daemon being ready to its kill
    max_gap: float = 3.0
    settle: float = 180.0  # how long the builds may take to end after the last kill
    # A claim whose answer died with the daemon leaves a build assigned to a runner that
    # never heard of it; it is requeued after this.
    assign_timeout: float = 8.0


@dataclass
class Figures:
    kills: int = 0
    builds: int = 0
    lines: int = 0
    artifacts: int = 0
    artifact_bytes: int = 0
    requeued: int = 0
    adopted_postgres: int = 0  # restarts that found the killed daemon's PostgreSQL alive
    restarts: list[float] = field(default_factory=list)  # kill to /readyz 200, seconds
    seconds: float = 0.0

    def row(self) -> dict[str, float]:
        figures = {k: float(v) for k, v in asdict(self).items() if k != "restarts"}
        figures["restart_median_s"] = statistics.median(self.restarts) if self.restarts else 0.0
        figures["restart_max_s"] = max(self.restarts, default=0.0)
        return figures


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OORED_", "OORE_"))}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / PGDATA_DIR / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1]
    except (ProcessLookupError, OSError, IndexError):
        return False
    return state != "Z"


class Oored:
    """One ``oored`` on a fixed port and data directory, started again after each kill;
    every life's output is appended to one log file."""

    def __init__(self, data_dir: Path, port: int, env: Mapping[str, str], log: Path) -> None:
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{port}"
        self.env = dict(env)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "oore.daemon",
                    "--listen",
                    self.url.removeprefix("http://"),
                    "--data-dir",
                    str(self.data_dir),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with self.log.open("rb") as out:
                out.seek(offset)
                if LISTENING.search(out.read().decode(errors="replace")):
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise SoakFailed(f"oored did not start:\n{self.tail()}")

    def wait_ready(self, client: httpx.Client) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise SoakFailed(f"oored not ready in {START_TIMEOUT:g}s:\n{self.tail()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> int:
        """SIGTERM; its exit status (SIGKILL after :data:`STOP_TIMEOUT`: a failure)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -signal.SIGKILL

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def pipeline_yaml(lines: int) -> str:
    """Numbered lines in bursts of 40 a tenth of a second apart, then the artifact, whose
    first line names the build."""
    printing = (
        f'for i in $(seq 1 {lines}); do echo "line $i"; '
        "if [ $((i % 40)) -eq 0 ]; then sleep 0.1; fi; done"
    )
    writing = (
        f'mkdir -p dist && {{ echo "$OORE_BUILD_ID"; seq 1 {ARTIFACT_NUMBERS}; }} > dist/out.txt'
    )
    return (
        "version: 1\nplatforms: [android]\ncommands:\n  build:\n"
        f"    - {printing!r}\n    - {writing!r}\n"
        'artifacts:\n  patterns:\n    - "dist/*.txt"\n'
    )


def expected_artifact(build_id: str) -> bytes:
    return (build_id + "\n" + "".join(f"{n}\n" for n in range(1, ARTIFACT_NUMBERS + 1))).encode()


class Api:
    """The owner's calls; a call the restart cut off (or a 503 while the daemon comes
    back) is repeated, so only reads go through here, and triggers only while it is up."""

    def __init__(self, client: httpx.Client, token: str) -> None:
        self.client = client
        self.auth = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        for _ in range(100):
            try:
                reply = self.client.request(method, path, json=body, headers=self.auth)
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            if reply.status_code == 503:
                time.sleep(0.1)
                continue
            if reply.status_code != expect:
                raise SoakFailed(f"{method} {path}: {reply.status_code} {reply.text}")
            return reply.json()
        raise SoakFailed(f"{method} {path}: no answer")

    def unfinished(self) -> int:
        total: int = self.call("GET", f"/v1/builds?status={UNFINISHED}&limit=1")["total"]
        return total


def start_runner(
    url: str, token: str, name: str, work: Path, env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    with (work / f"runner-{name}.log").open("wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "oore.cli",
                "runner",
                "--server",
                url,
                "--name",
                name,
                "--work-dir",
                str(work / f"runner-{name}"),
                "--grace",
                str(RUNNER_GRACE),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**env, "OORE_RUNNER_TOKEN": token},
        )


def stop_runners(runners: list[subprocess.Popen[bytes]]) -> None:
    for proc in runners:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in runners:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def soak(plan: Plan, work: Path, *, cluster: Path | None = None, say: Say = print) -> Figures:
    """The scenario in ``work`` (a directory of its own). ``cluster``: an initialised
    PostgreSQL cluster copied in before the first start, sparing initdb. Raises
    :class:`SoakFailed` when an invariant does not hold."""
    began = time.monotonic()
    data = work / "data"
    if cluster is not None and not (data / PGDATA_DIR).exists():
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        # -a keeps the owner: run as root, PostgreSQL runs as a user of its own
        subprocess.run(["cp", "-a", str(cluster), str(data / PGDATA_DIR)], check=True)
    env = clean_env({"OORED_ASSIGN_TIMEOUT_SECONDS": str(plan.assign_timeout)})
    oored = Oored(data, free_port(), env, work / "oored.log")
    runners: list[subprocess.Popen[bytes]] = []
    figures = Figures()
    try:
        oored.start()
        with httpx.Client(base_url=oored.url, timeout=30) as client:
            oored.wait_ready(client)
            token = client.post("/v1/auth/local/login", json={}).json()["session_token"]
            api = Api(client, token)
            repo, _ = make_repo(work)
            (repo / ".oore.yaml").write_text(pipeline_yaml(plan.lines))
            git = ["git", "-C", str(repo), "-c", "user.email=b@e", "-c", "user.name=b"]
            subprocess.run([*git, "add", ".oore.yaml"], check=True)
            subprocess.run([*git, "commit", "-q", "-m", "pipeline"], check=True)
            project = api.call(
                "POST",
                "/v1/projects",
                {"name": "crash", "local_repository_path": str(repo)},
                expect=201,
            )["project"]
            pipeline = api.call(
                "POST", f"/v1/projects/{project['id']}/pipelines", {"name": "ci"}, expect=201
            )["pipeline"]
            runner_env = clean_env({})
            runners = [
                start_runner(oored.url, token, f"r{i}", work, runner_env)
                for i in range(plan.runners)
            ]
            rng = random.Random(plan.seed)
            builds: list[str] = []
            for kill in range(plan.kills):
                for _ in range(max(0, plan.runners + 1 - api.unfinished())):
                    builds.append(
                        api.call(
                            "POST",
                            f"/v1/projects/{project['id']}/builds",
                            {"pipeline_id": pipeline["id"]},
                            expect=201,
                        )["build"]["id"]
                    )
                time.sleep(rng.uniform(plan.min_gap, plan.max_gap))
                postmaster = postmaster_pid(data)
                killed_at = time.monotonic()
                oored.kill()
                oored.start()
                oored.wait_ready(client)
                figures.restarts.append(time.monotonic() - killed_at)
                figures.kills += 1
                if postmaster is not None and postmaster_pid(data) == postmaster:
                    figures.adopted_postgres += 1
                say(f"kill {kill + 1}/{plan.kills}: back in {figures.restarts[-1]:.1f}s")
            deadline = time.monotonic() + plan.settle
            while api.unfinished() and time.monotonic() < deadline:
                time.sleep(0.2)
            check(api, builds, plan, figures, work)
        stop_runners(runners)
        pg = postmaster_pid(data)
        if (status := oored.stop()) != 0:
            raise SoakFailed(f"oored stopped with {status}:\n{oored.tail()}")
        if pg is not None and alive(pg):
            raise SoakFailed("the embedded PostgreSQL outlived the daemon's SIGTERM")
    finally:
        stop_runners(runners)
        oored.stop()
        pg = postmaster_pid(data)
        if pg is not None and alive(pg):
            os.kill(pg, signal.SIGTERM)
    figures.seconds = time.monotonic() - began
    return figures


def check(api: Api, builds: list[str], plan: Plan, figures: Figures, work: Path) -> None:
    """Every invariant of the module's docstring, build by build."""
    stuck = api.call("GET", f"/v1/builds?status={UNFINISHED}&limit=200")["builds"]
    if stuck:
        states = ", ".join(f"#{b['build_number']} {b['status']}" for b in stuck)
        raise SoakFailed(f"builds left unfinished {plan.settle:g}s after the last kill: {states}")
    said: Counter[str] = Counter()
    for log in work.glob("runner-*.log"):
        said.update(re.findall(r"build (#\d+) succeeded in", log.read_text(errors="replace")))
    for build_id in builds:
        detail = api.call("GET", f"/v1/builds/{build_id}")
        build, events = detail["build"], detail["events"]
        name = f"build #{build['build_number']} ({build_id})"
        if build["status"] != "succeeded":
            raise SoakFailed(f"{name} ended {build['status']}: {events}")
        ended = [e for e in events if e["to_status"] in TERMINAL]
        if len(ended) != 1 or ended[0] is not events[-1]:
            raise SoakFailed(f"{name} did not end exactly once: {events}")
        assigned = sum(1 for e in events if e["to_status"] == "assigned")
        if assigned != build["attempt"]:
            raise SoakFailed(f"{name}: {assigned} assignments, attempt {build['attempt']}")
        if said[f"#{build['build_number']}"] != 1:
            times = said[f"#{build['build_number']}"]
            raise SoakFailed(f"{name}: the runners said it succeeded {times} times")
        figures.requeued += build["attempt"] - 1
        for attempt in range(1, build["attempt"] + 1):
            figures.lines += check_log(
                api, name, build_id, attempt, attempt == build["attempt"], plan
            )
        figures.artifact_bytes += check_artifact(api, name, build_id)
        figures.artifacts += 1
        figures.builds += 1


def check_log(api: Api, name: str, build_id: str, attempt: int, last: bool, plan: Plan) -> int:
    """One attempt's log: sequences 0..n-1; its numbered lines 1..k once each, in order,
    k the whole count for the last attempt. Answers k."""
    found = api.call("GET", f"/v1/builds/{build_id}/logs?limit=5000&attempt={attempt}")
    logs = found["logs"]
    if found["total"] != len(logs) or [line["sequence"] for line in logs] != list(range(len(logs))):
        raise SoakFailed(f"{name} attempt {attempt}: sequences with a gap or twice")
    numbered = [line["content"] for line in logs if line["content"].startswith("line ")]
    if numbered != [f"line {i}" for i in range(1, len(numbered) + 1)]:
        raise SoakFailed(f"{name} attempt {attempt}: numbered lines out of order or twice")
    if last and len(numbered) != plan.lines:
        raise SoakFailed(f"{name}: {len(numbered)} of its {plan.lines} lines stored")
    return len(numbered)


def check_artifact(api: Api, name: str, build_id: str) -> int:
    """The build's one artifact downloads as the bytes its step wrote; answers their count."""
    artifacts = api.call("GET", f"/v1/builds/{build_id}/artifacts")["artifacts"]
    if [(a["name"], a["state"]) for a in artifacts] != [("out.txt", "available")]:
        raise SoakFailed(f"{name}: artifacts {artifacts}")
    [artifact] = artifacts
    expected = expected_artifact(build_id)
    if (artifact["file_size"], artifact["checksum"]) != (
        len(expected),
        hashlib.sha256(expected).hexdigest(),
    ):
        raise SoakFailed(f"{name}: artifact listed as {artifact}")
    link = api.call("POST", f"/v1/artifacts/{artifact['id']}/download-link")["download_url"]
    body = httpx.get(link, timeout=30).content
    if body != expected:
        raise SoakFailed(f"{name}: the artifact downloads as {len(body)} other bytes")
    return len(body)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench crash", description=__doc__)
    defaults = Plan()
    parser.add_argument("--kills", type=int, default=defaults.kills)
    parser.add_argument("--runners", type=int, default=defaults.runners)
    parser.add_argument("--lines", type=int, default=defaults.lines)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    runs: list[dict[str, float]] = []
    for i in range(args.repeat):
        plan = Plan(kills=args.kills, runners=args.runners, lines=args.lines, seed=args.seed + i)
        work = Path(tempfile.mkdtemp(prefix="oore-bench-crash-"))
        try:
            runs.append(
                soak(plan, work, say=lambda text: print(f"  {text}", file=sys.stderr)).row()
            )
        except SoakFailed as exc:
            raise SystemExit(f"crash: {exc}\n(kept {work})") from None
        subprocess.run(["rm", "-rf", str(work)], check=False)
    params = {"kills": args.kills, "runners": args.runners, "lines": args.lines, "seed": args.seed}
    report("crash", params, runs)
    return {"params": params, "runs": runs}
