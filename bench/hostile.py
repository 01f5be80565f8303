"""hostile: other clients' latency and the daemon's memory under slowloris and idle connections.

Run: ``.venv/bin/python -m bench hostile [--slow N] [--idle M] [--samples K]``. Starts a
fresh ``oored`` (embedded PostgreSQL) and measures, from a keep-alive client of its own,
``/healthz`` and an authenticated read (``GET /v1/projects``), ``--samples`` of each,
p50/p99/max in milliseconds:

- ``alone``: nothing else connected;
- ``slow``: while a load process holds N connections that each send a request head one
  byte every ``--byte-every`` seconds (reconnecting whenever the daemon drops one, so the
  N stay there), for at least one and a half keep-alive timeouts;
- ``idle``: while a load process holds M connections that send nothing (reconnecting
  likewise).

Beside them: the daemon's RSS before (``rss_before_kb``), under each load
(``rss_slow_kb``, ``rss_idle_kb``) and a few seconds after the last load left
(``rss_after_kb``), and how many hostile connections the daemon dropped
(``slow_dropped``, ``idle_dropped``: at its keep-alive timeout, ``--keepalive``, which
is also the time a request head has to arrive whole). Prints medians (min..max over
``--repeat`` runs) and writes ``bench/results/hostile.json``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from typing import Any

import httpx
import trio

from bench import procfs
from bench.harness import BackgroundLoad, percentile, report, started_daemon

CONNECT_AT_ONCE = 200
SLOW_HEAD = (
    b"GET /v1/projects HTTP/1.1\r\nHost: localhost\r\n" + b"User-Agent: " + b"a" * 200 + b"\r\n\r\n"
)


def hold(
    results: Any,
    kind: str,
    count: int,
    host: str,
    port: int,
    byte_every: float,
    ready: Any,
    stop: Any,
) -> None:
    """Load process: hold ``count`` hostile connections of ``kind`` until ``stop`` is set."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 256
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    results.put(trio.run(_hold, kind, count, host, port, byte_every, ready, stop))


async def _hold(
    kind: str, count: int, host: str, port: int, byte_every: float, ready: Any, stop: Any
) -> dict[str, float]:
    opened = 0
    dropped = 0
    connecting = trio.CapacityLimiter(CONNECT_AT_ONCE)

    async def one() -> None:
        nonlocal opened, dropped
        while True:
            try:
                async with connecting:
                    stream = await trio.open_tcp_stream(host, port)
            except OSError:
                await trio.sleep(0.1)
                continue
            opened += 1
            if opened == count:
                ready.set()
            async with stream:
                try:
                    if kind == "idle":
                        while await stream.receive_some(4096):
                            pass
                    else:
                        for at in range(len(SLOW_HEAD)):
                            await stream.send_all(SLOW_HEAD[at : at + 1])
                            await trio.sleep(byte_every)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
            dropped += 1

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
        await trio.to_thread.run_sync(stop.wait)
        nursery.cancel_scope.cancel()
    return {"opened": opened, "dropped": dropped}


def latencies(client: httpx.Client, token: str, samples: int) -> dict[str, list[float]]:
    """``samples`` of each call, in milliseconds, one after another."""
    auth = {"Authorization": f"Bearer {token}"}
    series: dict[str, list[float]] = {"healthz": [], "api": []}
    for _ in range(samples):
        for name, path, headers in (("healthz", "/healthz", {}), ("api", "/v1/projects", auth)):
            sent = time.perf_counter()
            reply = client.get(path, headers=headers)
            series[name].append((time.perf_counter() - sent) * 1000)
            if reply.status_code != 200:
                raise SystemExit(f"GET {path}: {reply.status_code} {reply.text}")
        time.sleep(0.01)
    return series


def _figures(phase: str, series: dict[str, list[float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, values in series.items():
        out[f"{phase}_{name}_p50_ms"] = percentile(values, 0.50)
        out[f"{phase}_{name}_p99_ms"] = percentile(values, 0.99)
        out[f"{phase}_{name}_max_ms"] = max(values)
    return out


def one_run(args: argparse.Namespace) -> dict[str, float]:
    env = {"OORED_KEEPALIVE_SECONDS": str(args.keepalive)}
    with started_daemon(env) as server:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        with httpx.Client(base_url=server.url, timeout=60) as client:
            token = client.post("/v1/auth/local/login", json={}).json()["session_token"]
            latencies(client, token, 20)  # warm up
            procfs.wait_idle(server.pid)
            run = {"rss_before_kb": float(procfs.rss_kb(server.pid))}
            run.update(_figures("alone", latencies(client, token, args.samples)))
            for kind, count in (("slow", args.slow), ("idle", args.idle)):
                context = multiprocessing.get_context("spawn")
                ready, stop = context.Event(), context.Event()
                load = BackgroundLoad(
                    hold, [(kind, count, host, int(port), args.byte_every, ready, stop)]
                )
                if not ready.wait(timeout=120):
                    stop.set()
                    raise SystemExit(f"the {kind} load never held {count} connections")
                held_since = time.monotonic()
                time.sleep(args.settle)
                run.update(_figures(kind, latencies(client, token, args.samples)))
                # Held past the keep-alive timeout, so the daemon's dropping is counted.
                while time.monotonic() - held_since < args.keepalive * 1.5:
                    time.sleep(0.2)
                run[f"rss_{kind}_kb"] = float(procfs.rss_kb(server.pid))
                stop.set()
                (held,) = load.results(timeout=60)
                run[f"{kind}_dropped"] = float(held["dropped"])
            time.sleep(args.after)
            run["rss_after_kb"] = float(procfs.rss_kb(server.pid))
    return run


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench hostile", description=__doc__)
    parser.add_argument("--slow", type=int, default=500, help="slowloris connections")
    parser.add_argument("--idle", type=int, default=5000, help="idle connections")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--byte-every", type=float, default=1.0, help="seconds per head byte")
    parser.add_argument("--keepalive", type=float, default=10.0, help="OORED_KEEPALIVE_SECONDS")
    parser.add_argument(
        "--settle", type=float, default=2.0, help="seconds between a load's start and sampling"
    )
    parser.add_argument(
        "--after", type=float, default=5.0, help="seconds after the loads for rss_after_kb"
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    runs = [one_run(args) for _ in range(args.repeat)]
    params = {
        "slow": args.slow,
        "idle": args.idle,
        "samples": args.samples,
        "byte_every": args.byte_every,
        "keepalive": args.keepalive,
    }
    report("hostile", params, runs)
    return {"params": params, "runs": runs}
