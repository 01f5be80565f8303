"""``python -m bench scaleout``: each scenario at ``--workers 1``, ``--workers 2`` and
``--daemons 2`` in one run, side by side, with the issue's targets, in one JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import scaleout, suite


def _figures(argv: list[str] | None) -> dict[str, float]:
    """Made-up figures that say which set-up they came from."""
    assert argv is not None
    setup = argv[argv.index("--repeat") - 2 : argv.index("--repeat")]
    claims = {"--workers 1": 200.0, "--workers 2": 300.0, "--daemons 2": 350.0}
    return {
        "claims_per_s": claims[" ".join(setup)],
        "pickup_p99_ms": 40.0 if setup[0] == "--daemons" else 10.0,
        "server_cpu_cores": 1.0,
    }


def test_every_setup_of_every_scenario_runs_and_lands_side_by_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OORE_BENCH_RESULTS", str(tmp_path))
    calls: list[tuple[str, list[str] | None]] = []

    def scenario(name: str) -> suite.Scenario:
        def run(argv: list[str] | None) -> dict[str, Any]:
            calls.append((name, argv))
            return {"params": {}, "runs": [_figures(argv)]}

        return run

    scaleout.main({name: scenario(name) for name in scaleout.OPTIONS}, ["--repeat", "1"])
    assert [entry for entry, _, _ in scaleout.PLAN] == [
        f"{name}-{setup}"
        for name in ("claims", "fleet", "logs", "pickup")
        for setup in scaleout.SETUPS
    ]
    assert calls[:3] == [
        ("claims", ["--builds", "10000", "--workers", "1", "--repeat", "1"]),
        ("claims", ["--builds", "10000", "--workers", "2", "--repeat", "1"]),
        ("claims", ["--builds", "10000", "--daemons", "2", "--repeat", "1"]),
    ]
    written = json.loads((tmp_path / "scaleout.json").read_text())
    assert list(written["results"]) == [entry for entry, _, _ in scaleout.PLAN]
    assert written["targets"]["claims_workers_2_over_1"] == {
        "value": 1.5,
        "at_least": 1.5,
        "met": True,
    }
    assert written["targets"]["pickup_across_daemons_p99_ms"]["met"] is True
    shown = capsys.readouterr().out
    assert "| figure | workers 1 | workers 2 | daemons 2 |" in shown
    assert "| claims_per_s | 200 | 300 | 350 |" in shown
    assert "target claims_workers_2_over_1 >= 1.5: 1.5 (met)" in shown


def test_a_setup_that_fails_is_written_with_its_error_and_the_others_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An oored without ``--workers`` fails to start with it: the run goes on."""
    monkeypatch.setenv("OORE_BENCH_RESULTS", str(tmp_path))

    def run(argv: list[str] | None) -> dict[str, Any]:
        assert argv is not None
        if "--workers 2" in " ".join(argv):
            raise SystemExit("oored did not start:\nunrecognized arguments: --workers 2")
        return {"params": {}, "runs": [_figures(argv)]}

    only = ["claims-w1", "claims-w2", "claims-d2", "pickup-d2"]
    scaleout.main({"claims": run, "pickup": run}, ["--only", *only, "--repeat", "1"])
    written = json.loads((tmp_path / "scaleout.json").read_text())
    assert list(written["results"]) == only
    assert "unrecognized arguments" in written["results"]["claims-w2"]["error"]
    assert written["results"]["claims-d2"]["summary"]["claims_per_s"]["median"] == 350.0
    assert written["targets"]["claims_workers_2_over_1"]["met"] is None
    assert written["targets"]["pickup_across_daemons_p99_ms"] == {
        "value": 40.0,
        "at_most": 50.0,
        "met": True,
    }
    shown = capsys.readouterr().out
    assert "| claims_per_s | 200 | failed | 350 |" in shown
    assert "target claims_workers_2_over_1 >= 1.5: not measured (unknown)" in shown


def test_all_still_stops_at_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OORE_BENCH_RESULTS", str(tmp_path))

    def run(argv: list[str] | None) -> dict[str, Any]:
        raise SystemExit("a load process failed")

    with pytest.raises(SystemExit, match="a load process failed"):
        suite.main({"logs": run}, ["--only", "logs-100", "--repeat", "1"])
