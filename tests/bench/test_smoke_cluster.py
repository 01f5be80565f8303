"""The scenarios that take ``--daemons`` or ``--workers`` run end to end at a tiny size on
several daemons on one PostgreSQL (the harness starts it) and on one daemon with worker
processes: the figures come out per process. A file apart from ``test_smoke.py`` so that
the two can run on different pytest workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.test_smoke import SCENARIOS, bench

# 200 claims rather than 40: PostgreSQL's CPU over so short a drain must still come to a
# clock tick (10 ms) or more, for each process's share to be told apart from none.
OPTIONS = {
    "claims": [
        *("--runners", "4", "--builds", "200", "--procs", "1"),
        *("--healthz-seconds", "0.5", "--repeat", "1"),
    ],
    "pickup": SCENARIOS["pickup"],
}
CLUSTER_RUNS: list[tuple[str, list[str]]] = [
    ("claims", ["--daemons", "2"]),
    ("claims", ["--daemons", "2", "--transport", "http"]),
    ("pickup", ["--daemons", "2"]),
    ("claims", ["--workers", "2"]),
]


@pytest.mark.parametrize(
    ("scenario", "extra"), CLUSTER_RUNS, ids=[" ".join([n, *e]) for n, e in CLUSTER_RUNS]
)
def test_scenario_runs_on_several_daemons_or_workers(
    scenario: str, extra: list[str], tmp_path: Path
) -> None:
    done = bench(tmp_path, [scenario, *OPTIONS[scenario], *extra])
    assert f"{scenario}:" in done.stdout
    written = json.loads((tmp_path / f"{scenario}.json").read_text())
    daemons = 2 if "--daemons" in extra else 1
    workers = 2 if "--workers" in extra else 1
    assert (written["params"]["daemons"], written["params"]["workers"]) == (daemons, workers)
    over_http = extra[-2:] == ["--transport", "http"]
    assert written["params"]["transport"] == ("http" if over_http else "channel")
    run = written["runs"][0]
    assert all(value > 0 for key, value in run.items() if "per_s" in key or "_p50_" in key)
    if scenario == "claims":  # every process's CPU: each daemon or worker, PostgreSQL, load
        busy = ["server", "postgres", "load"]  # the runners are dealt over the daemons:
        busy += [f"daemon{i}" for i in range(daemons)] if daemons > 1 else []  # each claims
        for name in busy:
            assert run[f"{name}_cpu_cores"] > 0, name
        # the kernel deals connections over the workers: one may have had none of these few
        workers_shown = [key for key in run if key.startswith("daemon0_worker")]
        expected = [f"daemon0_worker{j}_cpu_cores" for j in range(workers)] if workers > 1 else []
        assert workers_shown == expected
        assert run["daemon_cpu_us_per_claim"] > 0 and run["postgres_cpu_us_per_claim"] > 0
