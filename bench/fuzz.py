"""Generated requests against a fresh ``oored``: what its OpenAPI document promises, checked.

Run: ``.venv/bin/python -m bench fuzz [--requests N] [--seed S]``. Starts ``oored`` as its
own process (embedded PostgreSQL in a temporary directory), seeds it (bench/fuzzing.py) and
sends about N requests that schemathesis generates from ``/v1/openapi.json``, half with the
owner's Bearer token and half with no credentials. Prints the requests sent, the failures of
each check, the statuses seen and every distinct finding with a curl command that sends it
again; writes ``bench/results/fuzz.json``. Exits 1 when a check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench import fuzzing
from bench.harness import RESULTS_ENV, done_progress, progress, started_daemon


def main(argv: list[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench fuzz", description=__doc__)
    parser.add_argument("--requests", type=int, default=20000, help="requests to send, about")
    parser.add_argument("--seed", type=int, default=1, help="the generation's seed")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with started_daemon() as server:
        seeded = fuzzing.seed(server.url)
        tally = fuzzing.run(
            seeded,
            requests_total=args.requests,
            seed_value=args.seed,
            on_progress=lambda t: progress(f"{t.requests} requests, {t.failed} failures"),
        )
        done_progress()
    seconds = time.monotonic() - started
    params = {"requests": args.requests, "seed": args.seed}
    show(tally, seconds, params)
    command = f"python -m bench fuzz --requests {args.requests} --seed {args.seed}"
    result = {
        "scenario": "fuzz",
        "command": command,
        "cores": os.cpu_count(),
        "params": params,
        "seconds": round(seconds, 1),
    }
    result |= tally.as_dict()
    results = Path(os.environ.get(RESULTS_ENV) or Path(__file__).parent / "results")
    results.mkdir(parents=True, exist_ok=True)
    out = results / "fuzz.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    if tally.failed:
        sys.exit(1)
    return result


def show(tally: fuzzing.Tally, seconds: float, params: dict[str, Any]) -> None:
    """The table: requests, failures per check, statuses; then each finding."""
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    print(f"\nfuzz: {shown}; {seconds:.0f} s")
    print(f"{'requests':<34} {tally.requests:>8}")
    for name in fuzzing.CHECK_NAMES:
        print(f"{'failures ' + name:<34} {tally.failures[name]:>8}")
    statuses = ", ".join(f"{status}: {n}" for status, n in sorted(tally.statuses.items()))
    print(f"statuses  {statuses}")
    for finding in tally.findings.values():
        print(f"\n[{finding.check}] {finding.operation} ({finding.auth}) -> {finding.status}")
        print(f"  {finding.message}".replace("\n", "\n  "))
        print(f"  {finding.curl}")
    for excluded in tally.excluded:
        print(f"not sent: {excluded}")
