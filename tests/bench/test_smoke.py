"""Every benchmark scenario runs end to end at a tiny size, so the harness cannot rot.
(Several daemons or workers: ``test_smoke_cluster.py``, on a pytest worker of its own.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import scratch_dir

SCENARIOS = {
    "claims": [
        *("--runners", "4", "--builds", "40", "--procs", "1"),
        *("--healthz-seconds", "0.5", "--repeat", "1"),
    ],
    "pickup": ["--samples", "5", "--runners", "3", "--repeat", "1"],
    "fleet": [
        "--runners",
        "20",
        "--interval",
        "1",
        "--seconds",
        "3",
        "--procs",
        "1",
        "--repeat",
        "1",
    ],
    "memory": ["--runners", "20", "--viewers", "20", "--settle", "0", "--repeat", "1"],
    "hostile": [
        "--slow",
        "10",
        "--idle",
        "50",
        "--samples",
        "5",
        "--keepalive",
        "1",
        "--byte-every",
        "0.2",
        "--settle",
        "0.1",
        "--after",
        "0.1",
        "--repeat",
        "1",
    ],
    "peers": ["--runners", "4", "--builds", "40", "--procs", "1", "--repeat", "1"],
    "logs": [
        "--viewers",
        "6",
        "--stalled",
        "0.2",
        "--seconds",
        "1",
        "--procs",
        "1",
        "--repeat",
        "1",
    ],
    "readers": [
        *("--readers", "4", "--seconds", "1", "--procs", "1"),
        *("--projects", "2", "--builds", "8", "--lines", "20"),
        *("--runners", "2", "--build-seconds", "0.5", "--repeat", "1"),
    ],
    "logs-fleet": [
        "--builds",
        "4",
        "--viewers",
        "2",
        "--seconds",
        "2",
        "--procs",
        "1",
        "--repeat",
        "1",
    ],
}


# The scenarios whose runners can speak either transport (EITHER_TRANSPORT) also run over
# plain HTTP where that is code of their own: fleet's beats over shared keep-alive
# connections, memory's runners parking claims on raw HTTP connections, logs-fleet's
# appends that reconnect. pickup's runners over HTTP are bench/channel.py's HttpLink, whose
# claims run over HTTP in test_smoke_cluster.py (claims --daemons 2 --transport http).
EITHER_TRANSPORT = ["claims", "fleet", "logs-fleet", "memory", "pickup"]
OVER_HTTP = ["fleet", "logs-fleet", "memory"]
RUNS: list[tuple[str, list[str]]] = [
    *[(name, []) for name in sorted(SCENARIOS)],
    *[(name, ["--transport", "http"]) for name in OVER_HTTP],
    ("fleet", ["--pings"]),  # runners that only ping their channels keep their leases
]


def bench(results: Path, args: list[str], **daemon_env: str) -> subprocess.CompletedProcess[str]:
    """``python -m bench *args`` writing its JSON into ``results``; it must succeed. Its
    daemons' data directories (and PostgreSQL's) go where the test server's do, in
    memory where there is room: the sizes here are too small for a disk to matter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OORED_", "OORE_"))}
    env["OORE_BENCH_RESULTS"] = str(results)
    env.update(daemon_env)
    scratch = scratch_dir("oore-bench-smoke-")
    scratch.chmod(0o755)  # run as root, PostgreSQL runs as a user of its own
    env["TMPDIR"] = str(scratch)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
            check=False,
        )
        # what the bench made there (data directories, repositories) went with its run
        left = sorted(path.name for path in scratch.iterdir() if path.name.startswith("oore-"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert left == [], f"left in the temporary directory: {left}"
    return done


@pytest.mark.parametrize(("scenario", "extra"), RUNS, ids=[" ".join([n, *e]) for n, e in RUNS])
def test_scenario_prints_its_table_and_writes_its_figures(
    scenario: str, extra: list[str], tmp_path: Path
) -> None:
    done = bench(tmp_path, [scenario, *SCENARIOS[scenario], *extra])
    assert f"{scenario}:" in done.stdout and "median" in done.stdout
    written = json.loads((tmp_path / f"{scenario}.json").read_text())
    assert written["scenario"] == scenario and len(written["runs"]) == 1
    if scenario in EITHER_TRANSPORT:
        over_http = extra[-2:] == ["--transport", "http"]
        assert written["params"]["transport"] == ("http" if over_http else "channel")
    assert all(fig["min"] <= fig["median"] <= fig["max"] for fig in written["summary"].values())
    run = written["runs"][0]
    assert all(value > 0 for key, value in run.items() if "per_s" in key)
    assert all(value == 0 for key, value in run.items() if "lost" in key or "reordered" in key)
    if "--pings" in extra:
        assert run["runners_online"] == 20
    if scenario == "claims":
        assert run["daemon_cpu_us_per_claim"] > 0
    if scenario == "hostile":  # every hostile connection was dropped by the daemon in time
        assert run["slow_dropped"] >= 10 and run["idle_dropped"] >= 50
        assert run["rss_idle_kb"] > 0 and run["idle_api_p99_ms"] > 0
    if scenario == "readers":  # reads of every kind, none refused, in the second phase
        assert run["read_errors"] == 0
        assert all(run[f"{kind}_p50_ms"] > 0 for kind in ("build_list", "build", "log_page"))
        assert run["claims"] >= 1 and run["claims_alone"] >= 1
        assert run["live_latency_p50_ms"] > 0 and run["live_latency_p50_ms_alone"] > 0
        assert run["append_p99_ratio"] == run["append_p99_ms"] / run["append_p99_ms_alone"]
        assert written["params"]["load_cpus"] == "apart"
        # one run: its samples pooled are its own
        pooled = written["pooled"]
        assert pooled["claim_p99_ms"] == run["claim_p99_ms"]
        assert pooled["live_latency_p50_ms_alone"] == run["live_latency_p50_ms_alone"]
        assert pooled["append_p99_ratio"] == run["append_p99_ratio"]
        assert pooled["claim_samples"] == run["claims"]
        for name in ("claim", "append", "live_latency"):
            ratio = pooled[f"{name}_p99_ratio"]
            assert pooled[f"{name}_p99_ratio_low"] <= ratio <= pooled[f"{name}_p99_ratio_high"]
    if scenario == "logs-fleet":  # every line stored, and seen by both viewers of its build
        assert run["lines_sent"] == run["lines_acknowledged"] == 4 * 20 * 2
        assert run["viewers_finished"] == 4 * 2 and run["viewers_ended_early"] == 0
        assert run["latency_p99_ms"] > 0


def test_logs_fleet_reports_the_lines_a_daemon_did_not_store(tmp_path: Path) -> None:
    """A daemon that keeps 25 lines of each build (its cap) stores 15 of the 40 sent to
    each of 3 builds short: lost, and missed by both viewers of each build."""
    options = ["--builds", "3", "--viewers", "2", "--seconds", "2", "--procs", "1"]
    bench(tmp_path, ["logs-fleet", *options, "--repeat", "1"], OORED_LOG_LINES_PER_BUILD="25")
    run = json.loads((tmp_path / "logs-fleet.json").read_text())["runs"][0]
    assert run["lines_sent"] == 3 * 40 and run["lines_acknowledged"] == 3 * 25
    assert run["lines_lost"] == 3 * 15
    assert run["viewer_lines_lost"] == 3 * 2 * 15 and run["viewer_lines_reordered"] == 0


def test_an_unknown_scenario_lists_the_known_ones() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "nonsense"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    names = ["claims", "crash", "fleet", "fuzz", "hostile", "logs", "logs-fleet", "memory"]
    names += ["peers", "pickup", "readers"]
    assert all(name in done.stderr for name in names)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_exits_0_with_the_usage_and_the_scenarios(flag: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", flag], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m bench")
    names = (
        "claims",
        "fleet",
        "logs",
        "logs-fleet",
        "memory",
        "peers",
        "pickup",
        "all",
        "scaleout",
    )
    assert all(name in done.stdout for name in names)
