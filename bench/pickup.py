"""Long-poll pickup: how soon a parked claim hears of a build queued after it.

Run: ``.venv/bin/python bench/pickup.py [--samples N] [--runners R]``. Starts ``oored`` as
its own process (embedded PostgreSQL in a temporary directory) unless ``--url`` and
``--token`` name a running one. R runners each park a claim (``wait_seconds``: 60); then,
one sample at a time, a build is triggered over HTTP and the time until one of the parked
claims is answered is taken from the moment the trigger request was sent (``pickup``).
Beside it: the trigger's own round trip (it commits the build before answering) and the
claim's answer measured from the trigger's answer (negative when the runner heard first).
Prints a table of percentiles and writes ``bench/results/pickup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

RESULTS = Path(__file__).parent / "results"
LISTENING = re.compile(r"oored listening on (http://\S+)")


@contextmanager
def started_daemon() -> Iterator[str]:
    """A fresh ``oored`` on a free loopback port; stopped (SIGTERM) on exit."""
    data = Path(tempfile.mkdtemp(prefix="oore-bench-"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "oore.daemon", "--listen", "127.0.0.1:0", "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("OORED_", "OORE_"))},
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            match = LISTENING.search(line)
            if match:
                break
        else:
            raise SystemExit("oored ended before it listened")
        # Keep draining its output so a full pipe never blocks it.
        drain = subprocess.Popen(["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL)
        yield match[1]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if "drain" in locals():
            drain.wait(timeout=5)


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=b@e", "-c", "user.name=b"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    (repo / "README").write_text("bench\n")
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "bench"], check=True)
    return repo


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Bench:
    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self.client = client
        self.auth = {"Authorization": f"Bearer {token}"}

    async def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        reply = await self.client.post(path, json=body, headers=headers or self.auth)
        if reply.status_code not in (200, 201):
            raise SystemExit(f"POST {path}: {reply.status_code} {reply.text}")
        return reply.json()


async def measure(base: str, token: str, samples: int, runners: int) -> dict[str, list[float]]:
    limits = httpx.Limits(max_connections=runners + 8)
    async with httpx.AsyncClient(base_url=base, timeout=90, limits=limits) as client:
        bench = Bench(client, token)
        repo = make_repo(Path(tempfile.mkdtemp(prefix="oore-bench-repo-")))
        project = await bench.post(
            "/v1/projects", {"name": f"pickup-{time.time_ns()}", "local_repository_path": str(repo)}
        )
        project_id = project["project"]["id"]
        pipeline = await bench.post(f"/v1/projects/{project_id}/pipelines", {"name": "ci"})
        pipeline_id = pipeline["pipeline"]["id"]
        registered = []
        for i in range(runners):
            reg = await bench.post("/v1/runners/register", {"name": f"bench-{i}"})
            registered.append((reg["runner"]["id"], {"Authorization": f"Bearer {reg['token']}"}))

        pickup: list[float] = []
        trigger: list[float] = []
        after: list[float] = []
        answered: trio.MemorySendChannel[tuple[float, str, str, dict[str, str]]]
        answered, heard = trio.open_memory_channel(runners)

        async def park(runner_id: str, headers: dict[str, str]) -> None:
            while True:
                body = await bench.post(
                    f"/v1/runners/{runner_id}/claim",
                    {"protocol_version": 4, "wait_seconds": 60},
                    headers,
                )
                if body.get("job") is not None:
                    await answered.send(
                        (time.perf_counter(), body["job"]["build_id"], runner_id, headers)
                    )
                    return

        async with trio.open_nursery() as nursery:
            for runner_id, headers in registered:
                nursery.start_soon(park, runner_id, headers)
            await trio.sleep(0.5)  # every claim parked
            for _ in range(samples):
                sent = time.perf_counter()
                await bench.post(f"/v1/projects/{project_id}/builds", {"pipeline_id": pipeline_id})
                trigger.append(time.perf_counter() - sent)
                at, build_id, runner_id, headers = await heard.receive()
                pickup.append(at - sent)
                after.append(at - sent - trigger[-1])
                for status in ("running", "succeeded"):
                    await bench.post(
                        f"/v1/runners/{runner_id}/jobs/{build_id}/status",
                        {"status": status, "exit_code": 0},
                        headers,
                    )
                nursery.start_soon(park, runner_id, headers)
                await trio.sleep(0.05)  # the runner parks again
            nursery.cancel_scope.cancel()
        return {
            "pickup_ms": [s * 1000 for s in pickup],
            "trigger_ms": [s * 1000 for s in trigger],
            "after_201_ms": [s * 1000 for s in after],
        }


async def local_token(base: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        reply = await client.post("/v1/auth/local/login", json={})
        token: str = reply.json()["session_token"]
        return token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--runners", type=int, default=4)
    parser.add_argument("--url", help="a running oored (default: start one)")
    parser.add_argument("--token", help="an owner/admin session for --url")
    args = parser.parse_args()
    if args.url:
        if not args.token:
            raise SystemExit("--url needs --token")
        series = trio.run(measure, args.url, args.token, args.samples, args.runners)
    else:
        with started_daemon() as base:
            token = trio.run(local_token, base)
            series = trio.run(measure, base, token, args.samples, args.runners)
    summary = {
        name: {
            "p50": percentile(values, 0.50),
            "p90": percentile(values, 0.90),
            "p99": percentile(values, 0.99),
            "max": max(values),
            "mean": statistics.fmean(values),
        }
        for name, values in series.items()
    }
    print(f"{args.samples} samples, {args.runners} parked runners, {os.cpu_count()} cores")
    print(f"{'ms':<12} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    for name, fig in summary.items():
        cells = " ".join(f"{fig[key]:>8.2f}" for key in ("p50", "p90", "p99", "max"))
        print(f"{name:<12} {cells}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "pickup.json"
    out.write_text(
        json.dumps(
            {
                "cores": os.cpu_count(),
                "samples": args.samples,
                "runners": args.runners,
                "series": series,
                "summary": summary,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
