"""``python -m bench fuzz``'s table: requests, failures per check, statuses, and each
finding with the curl command that sends it again. (The run itself is
tests/e2e/test_fuzz.py.)"""

from __future__ import annotations

from collections import Counter

import pytest

from bench import fuzz, fuzzing


def test_the_table_shows_every_check_the_statuses_and_each_finding(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tally = fuzzing.Tally(requests=1200, statuses=Counter({200: 700, 404: 499, 500: 1}))
    tally.fail(
        fuzzing.Finding(
            fuzzing.SERVER_ERROR,
            "POST /v1/projects",
            fuzzing.OWNER,
            500,
            "Server error",
            "curl -X POST http://127.0.0.1:1/v1/projects -d '{}'",
        )
    )
    tally.excluded.append("POST /v1/auth/logout (owner): ends the owner session")

    fuzz.show(tally, 12.0, {"requests": 1200, "seed": 3})

    shown = capsys.readouterr().out
    assert "fuzz: requests=1200, seed=3; 12 s" in shown
    assert "requests" in shown and "1200" in shown
    for name in fuzzing.CHECK_NAMES:
        expected = 1 if name == fuzzing.SERVER_ERROR else 0
        assert any(
            line.split()[-1] == str(expected)
            for line in shown.splitlines()
            if line.startswith(f"failures {name} ")
        ), name
    assert "statuses  200: 700, 404: 499, 500: 1" in shown
    assert "[not_a_server_error] POST /v1/projects (owner) -> 500" in shown
    assert "curl -X POST http://127.0.0.1:1/v1/projects -d '{}'" in shown
    assert "not sent: POST /v1/auth/logout (owner)" in shown
    assert tally.as_dict()["failures"][fuzzing.SERVER_ERROR] == 1
