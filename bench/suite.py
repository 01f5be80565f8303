"""all: every scenario at the issue's sizes, one after another on this machine, in one
run; the figures for the README, with the peers' from the same run.

Writes ``bench/results/all.json`` (every scenario's parameters, repetitions and summary,
the machine's core count, start and end) and prints each scenario's table as Markdown.
``--repeat`` applies to every scenario; ``--only`` runs the named entries of the plan.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.harness import RESULTS_ENV, summarize

Scenario = Callable[[list[str] | None], dict[str, Any]]

# Queueing a build over HTTP costs more than claiming it (about 150 builds/s on 2 cores),
# so the claim scenarios queue 10,000 builds, not their default 50,000: the claim rate is
# a steady state well before either, and the whole run stays near an hour.
CLAIM_BUILDS = ["--builds", "10000"]

# (entry, scenario, options): otherwise the scenarios' own defaults are the issue's sizes
PLAN: list[tuple[str, str, list[str]]] = [
    ("claims", "claims", CLAIM_BUILDS),
    ("claims-http", "claims", [*CLAIM_BUILDS, "--transport", "http"]),
    ("pickup", "pickup", []),
    ("pickup-http", "pickup", ["--transport", "http"]),
    ("logs-100", "logs", ["--viewers", "100"]),
    ("logs-1000", "logs", ["--viewers", "1000"]),
    ("logs-10000", "logs", ["--viewers", "10000"]),
    ("logs-10000-stalled", "logs", ["--viewers", "10000", "--stalled", "0.01"]),
    ("logs-fleet", "logs-fleet", []),
    ("fleet", "fleet", []),
    ("fleet-http", "fleet", ["--transport", "http"]),
    ("memory", "memory", []),
    ("memory-http", "memory", ["--transport", "http"]),
    ("hostile", "hostile", []),
    ("peers", "peers", CLAIM_BUILDS),
    ("readers", "readers", []),
]


def markdown(entry: str, result: Mapping[str, Any]) -> str:
    params = ", ".join(f"{k}={v}" for k, v in result["params"].items())
    lines = [f"`{entry}` ({params})", "", "| figure | median | min..max |", "|---|---|---|"]
    for key, fig in summarize(result["runs"]).items():
        low, high = _figure(fig["min"]), _figure(fig["max"])
        lines.append(f"| {key} | {_figure(fig['median'])} | {low}..{high} |")
    return "\n".join(lines)


def _figure(value: float) -> str:
    """Whole numbers from 100 up (with thousands separators), three figures below."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def main(scenarios: Mapping[str, Scenario], argv: list[str] | None = None) -> dict[str, Any]:
    return run_plan("all", PLAN, scenarios, argv, description=__doc__)


def run_plan(
    name: str,
    plan: Sequence[tuple[str, str, list[str]]],
    scenarios: Mapping[str, Scenario],
    argv: list[str] | None,
    *,
    description: str | None,
    keep_going: bool = False,
) -> dict[str, Any]:
    """Run the entries of ``plan`` in order, writing ``bench/results/<name>.json`` after
    each; ``keep_going``: an entry that fails is written with its error and the next runs
    (otherwise the failure ends the run)."""
    parser = argparse.ArgumentParser(prog=f"python -m bench {name}", description=description)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--only", nargs="+", choices=[entry for entry, _, _ in plan], help="entries to run"
    )
    args = parser.parse_args(argv)
    chosen = [p for p in plan if args.only is None or p[0] in args.only]
    results: dict[str, Any] = {}
    began = time.time()
    out = Path(os.environ.get(RESULTS_ENV) or Path(__file__).parent / "results") / f"{name}.json"
    for entry, scenario, options in chosen:
        command = f"python -m bench {scenario} {' '.join(options)}".strip()
        print(f"\n== {entry}: {command}", flush=True)
        started = time.time()
        try:
            result = scenarios[scenario]([*options, "--repeat", str(args.repeat)])
        except SystemExit as exc:
            if not keep_going:
                raise
            print(f"\n{entry} failed: {exc}", flush=True)
            results[entry] = {"command": command, "seconds": time.time() - started}
            results[entry]["error"] = str(exc)
        else:
            results[entry] = {
                "command": command,
                "seconds": time.time() - started,
                **result,
                "summary": summarize(result["runs"]),
            }
        out.parent.mkdir(parents=True, exist_ok=True)
        body = {"cores": os.cpu_count(), "began": began, "repeat": args.repeat}
        out.write_text(json.dumps({**body, "ended": time.time(), "results": results}, indent=2))
    print()
    for entry, result in results.items():
        if "error" in result:
            print(f"`{entry}` failed: {result['error']}", end="\n\n")
        else:
            print(markdown(entry, result), end="\n\n")
    print(f"wrote {out}")
    return {"params": {"repeat": args.repeat}, "runs": [], "results": results, "out": str(out)}
