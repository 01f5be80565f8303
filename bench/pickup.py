"""Long-poll pickup: how soon a parked claim hears of a build queued after it.

Run: ``.venv/bin/python -m bench pickup [--samples N] [--runners R]``. Starts ``oored`` as
its own process (embedded PostgreSQL in a temporary directory) unless ``--url`` and
``--token`` name a running one. R runners each park a claim (``wait_seconds``: 60); then,
one sample at a time, a build is triggered over HTTP and the time until one of the parked
claims is answered is taken from the moment the trigger request was sent (``pickup``).
Beside it: the trigger's own round trip (it commits the build before answering) and the
claim's answer measured from the trigger's answer (negative when the runner heard first).
Prints medians (min..max over ``--repeat`` runs) and writes ``bench/results/pickup.json``.

``--daemons N`` starts N daemons on one PostgreSQL: the trigger goes to the first and every
runner parks its claim on the second, so each pickup crosses from one daemon to another
(``--workers M`` starts each with ``--workers M``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from bench.channel import TRANSPORTS, RunnerLink, open_link
from bench.harness import add_cluster_options, make_repo, percentile, report, started_cluster


class Bench:
    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self.client = client
        self.auth = {"Authorization": f"Bearer {token}"}

    async def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        reply = await self.client.post(path, json=body, headers=headers or self.auth)
        if reply.status_code not in (200, 201):
            raise SystemExit(f"POST {path}: {reply.status_code} {reply.text}")
        return reply.json()


async def measure(
    base: str, token: str, samples: int, runners: int, transport: str, parked_on: str = ""
) -> dict[str, list[float]]:
    """Builds triggered through ``base``, claims parked on ``parked_on`` (default: the
    same daemon)."""
    with tempfile.TemporaryDirectory(prefix="oore-bench-repo-") as scratch:
        return await _measure(
            base, token, samples, runners, transport, parked_on, make_repo(Path(scratch))[0]
        )


async def _measure(
    base: str,
    token: str,
    samples: int,
    runners: int,
    transport: str,
    parked_on: str,
    repo: Path,
) -> dict[str, list[float]]:
    async with httpx.AsyncClient(base_url=base, timeout=90) as client:
        bench = Bench(client, token)
        project = await bench.post(
            "/v1/projects", {"name": f"pickup-{time.time_ns()}", "local_repository_path": str(repo)}
        )
        project_id = project["project"]["id"]
        pipeline = await bench.post(f"/v1/projects/{project_id}/pipelines", {"name": "ci"})
        pipeline_id = pipeline["pipeline"]["id"]
        registered = []
        for i in range(runners):
            reg = await bench.post("/v1/runners/register", {"name": f"bench-{i}"})
            registered.append((reg["runner"]["id"], reg["token"]))

        pickup: list[float] = []
        trigger: list[float] = []
        after: list[float] = []
        answered: trio.MemorySendChannel[tuple[float, str, RunnerLink]]
        answered, heard = trio.open_memory_channel(runners)
        parked = 0
        all_parked = trio.Event()

        async def park(link: RunnerLink) -> None:
            nonlocal parked
            parked += 1
            if parked == runners:
                all_parked.set()
            while True:
                job = await link.claim(wait_seconds=60)
                if job is not None:
                    await answered.send((time.perf_counter(), job["build_id"], link))
                    return

        async with trio.open_nursery() as nursery:
            links = [
                await open_link(transport, nursery, parked_on or base, runner_id, runner_token)
                for runner_id, runner_token in registered
            ]
            for link in links:
                nursery.start_soon(park, link)
            await all_parked.wait()
            await trio.sleep(0.5)  # every claim reached the server
            for _ in range(samples):
                sent = time.perf_counter()
                await bench.post(f"/v1/projects/{project_id}/builds", {"pipeline_id": pipeline_id})
                trigger.append(time.perf_counter() - sent)
                at, build_id, link = await heard.receive()
                pickup.append(at - sent)
                after.append(at - sent - trigger[-1])
                await link.report(build_id, "running")
                await link.report(build_id, "succeeded", exit_code=0)
                nursery.start_soon(park, link)
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


def figures(series: dict[str, list[float]]) -> dict[str, float]:
    """One repetition's figures, in milliseconds."""
    out: dict[str, float] = {}
    for name, values in series.items():
        base = name.removesuffix("_ms")
        out[f"{base}_p50_ms"] = percentile(values, 0.50)
        out[f"{base}_p99_ms"] = percentile(values, 0.99)
        out[f"{base}_max_ms"] = max(values)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench pickup", description=__doc__)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--runners", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--transport", choices=TRANSPORTS, default=TRANSPORTS[0], help="what the runners speak"
    )
    parser.add_argument("--url", help="a running oored (default: start one)")
    parser.add_argument("--token", help="an owner/admin session for --url")
    add_cluster_options(parser)
    args = parser.parse_args(argv)
    runs: list[dict[str, float]] = []
    if args.url and (args.daemons, args.workers) != (1, 1):
        parser.error("--url names one running oored: no --daemons or --workers with it")
    if args.url:
        if not args.token:
            raise SystemExit("--url needs --token")
        for _ in range(args.repeat):
            runs.append(
                figures(
                    trio.run(
                        measure, args.url, args.token, args.samples, args.runners, args.transport
                    )
                )
            )
    else:
        with started_cluster(args.daemons, args.workers) as cluster:
            trigger, parked_on = cluster.urls[0], cluster.urls[min(1, args.daemons - 1)]
            token = trio.run(local_token, trigger)
            for _ in range(args.repeat):
                series = trio.run(
                    measure, trigger, token, args.samples, args.runners, args.transport, parked_on
                )
                runs.append(figures(series))
    params = {
        "samples": args.samples,
        "runners": args.runners,
        "transport": args.transport,
        "daemons": args.daemons,
        "workers": args.workers,
    }
    report("pickup", params, runs)
    return {"params": params, "runs": runs}
