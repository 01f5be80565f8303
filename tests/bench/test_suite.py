"""``python -m bench all``: the plan runs in order and lands in one JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import suite


def test_every_entry_of_the_plan_runs_and_is_written_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OORE_BENCH_RESULTS", str(tmp_path))
    calls: list[tuple[str, list[str] | None]] = []

    def scenario(name: str) -> suite.Scenario:
        def run(argv: list[str] | None) -> dict[str, Any]:
            calls.append((name, argv))
            return {"params": {"n": len(calls)}, "runs": [{"x_per_s": 1.0}, {"x_per_s": 3.0}]}

        return run

    names = {scenario_name for _, scenario_name, _ in suite.PLAN}
    suite.main({name: scenario(name) for name in names}, ["--repeat", "2"])
    assert [name for name, _ in calls] == [name for _, name, _ in suite.PLAN]
    assert all(argv is not None and argv[-2:] == ["--repeat", "2"] for _, argv in calls)
    written = json.loads((tmp_path / "all.json").read_text())
    assert list(written["results"]) == [entry for entry, _, _ in suite.PLAN]
    first = written["results"]["claims-http"]
    assert first["command"] == "python -m bench claims --builds 10000 --transport http"
    assert first["summary"]["x_per_s"] == {"median": 2.0, "min": 1.0, "max": 3.0}
    shown = capsys.readouterr().out
    assert "| x_per_s | 2 | 1..3 |" in shown


def test_only_runs_the_named_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OORE_BENCH_RESULTS", str(tmp_path))
    ran: list[list[str] | None] = []

    def run(argv: list[str] | None) -> dict[str, Any]:
        ran.append(argv)
        return {"params": {}, "runs": [{"x": 1.0}]}

    suite.main({"logs": run}, ["--only", "logs-100", "--repeat", "1"])
    assert ran == [["--viewers", "100", "--repeat", "1"]]
