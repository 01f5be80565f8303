"""scaleout: claims, fleet, logs and pickup side by side in one run, on one daemon
(``--workers 1``), on one daemon with two worker processes (``--workers 2``) and on two
daemons sharing one PostgreSQL (``--daemons 2``), so that a bigger machine (or a second
one) can be sized from the figures.

Each entry is the scenario's own run (its table, its CPU per process: every daemon and
worker, PostgreSQL, the load processes); ``pickup-d2`` triggers builds on one daemon while
every runner parks on the other. An entry that fails (``--workers 2`` on an oored without
it) is written with its error and the others still run. At the end: one table per
scenario with the three set-ups side by side, and the issue's targets (claims/s with
``--workers 2`` at least 1.5 times that with ``--workers 1``; cross-daemon pickup p99 at
most 50 ms). Writes ``bench/results/scaleout.json``. ``--repeat`` and ``--only`` as in
``all``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.suite import CLAIM_BUILDS, Scenario, run_plan

SETUPS = {"w1": ["--workers", "1"], "w2": ["--workers", "2"], "d2": ["--daemons", "2"]}
SHOWN = {  # per scenario: the figures put side by side
    "claims": [
        "claims_per_s",
        "daemon_cpu_us_per_claim",
        "postgres_cpu_us_per_claim",
        "server_cpu_cores",
        "postgres_cpu_cores",
        "load_cpu_cores",
    ],
    "fleet": [
        "heartbeats_answered_per_s",
        "latency_p50_ms",
        "latency_p99_ms",
        "server_cpu_cores",
        "postgres_cpu_cores",
        "load_cpu_cores",
    ],
    "logs": [
        "delivered_lines_per_s",
        "latency_p50_ms",
        "latency_p99_ms",
        "lines_lost",
        "append_p99_ms",
        "server_cpu_cores",
        "postgres_cpu_cores",
        "viewers_cpu_cores",
    ],
    "pickup": ["pickup_p50_ms", "pickup_p99_ms", "trigger_p50_ms"],
}
OPTIONS = {"claims": CLAIM_BUILDS, "fleet": [], "logs": ["--viewers", "1000"], "pickup": []}
PLAN: list[tuple[str, str, list[str]]] = [
    (f"{scenario}-{setup}", scenario, [*options, *SETUPS[setup]])
    for scenario, options in OPTIONS.items()
    for setup in SETUPS
]
CLAIMS_SPEEDUP = 1.5  # --workers 2 over --workers 1, at least
PICKUP_P99_MS = 50.0  # across daemons, at most


def side_by_side(results: Mapping[str, Any]) -> str:
    """Per scenario, a Markdown table of its figures' medians: one column per set-up."""
    out = []
    for scenario, figures in SHOWN.items():
        entries = [f"{scenario}-{setup}" for setup in SETUPS]
        if not any(entry in results for entry in entries):
            continue
        head = " | ".join(" ".join(SETUPS[setup]).removeprefix("--") for setup in SETUPS)
        lines = [f"`{scenario}`", "", f"| figure | {head} |", "|---" * (len(SETUPS) + 1) + "|"]
        for figure in figures:
            cells = [_median(results.get(entry), figure) for entry in entries]
            lines.append(f"| {figure} | {' | '.join(cells)} |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def _median(result: Mapping[str, Any] | None, figure: str) -> str:
    if result is None:
        return "not run"
    if "error" in result:
        return "failed"
    found = result["summary"].get(figure)
    if found is None:
        return "-"
    value = found["median"]
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def targets(results: Mapping[str, Any]) -> dict[str, Any]:
    """The issue's two targets, each with the figures it compares and whether it is met
    (None when an entry it needs did not run or failed)."""

    def median(entry: str, figure: str) -> float | None:
        result = results.get(entry)
        if result is None or "error" in result:
            return None
        value: float = result["summary"][figure]["median"]
        return value

    one, two = median("claims-w1", "claims_per_s"), median("claims-w2", "claims_per_s")
    speedup = two / one if one and two else None
    p99 = median("pickup-d2", "pickup_p99_ms")
    return {
        "claims_workers_2_over_1": {
            "value": speedup,
            "at_least": CLAIMS_SPEEDUP,
            "met": None if speedup is None else speedup >= CLAIMS_SPEEDUP,
        },
        "pickup_across_daemons_p99_ms": {
            "value": p99,
            "at_most": PICKUP_P99_MS,
            "met": None if p99 is None else p99 <= PICKUP_P99_MS,
        },
    }


def main(scenarios: Mapping[str, Scenario], argv: list[str] | None = None) -> dict[str, Any]:
    ran = run_plan("scaleout", PLAN, scenarios, argv, description=__doc__, keep_going=True)
    results = ran["results"]
    met = targets(results)
    print(side_by_side(results), end="\n\n")
    for name, target in met.items():
        bound = f">= {target['at_least']}" if "at_least" in target else f"<= {target['at_most']}"
        value = "not measured" if target["value"] is None else f"{target['value']:.3g}"
        verdict = {True: "met", False: "missed", None: "unknown"}[target["met"]]
        print(f"target {name} {bound}: {value} ({verdict})")
    out = Path(ran["out"])
    out.write_text(json.dumps({**json.loads(out.read_text()), "targets": met}, indent=2))
    return {**ran, "targets": met}
