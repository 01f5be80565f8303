"""Failures of ``oore``'s commands for people: one line on standard error and an exit code
a script can act on, never a traceback."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from oore.cli import main
from oore.commands.enrollment import parse_ttl


@pytest.fixture(autouse=True)
def private_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OORE_SERVER", "OORE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err and err.count("\n") == 1, err
    return code, err


def test_without_a_sign_in_it_says_how_to_get_one(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "projects", "--server", "http://127.0.0.1:9")
    assert code == 5 and "run `oore login` or set OORE_TOKEN" in err


def test_a_server_that_does_not_answer_is_exit_4(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OORE_TOKEN", "t")
    monkeypatch.setenv("OORE_SERVER", "http://127.0.0.1:9")  # discard: nothing listens
    code, err = run(capsys, "build", "list")
    assert code == 4 and err.startswith("oore: cannot reach http://127.0.0.1:9")
    code, err = run(capsys, "login")
    assert code == 4


def test_bad_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "build", "show", "not-a-build")
    assert code == 2 and "give its id or PROJECT#NUMBER" in err
    code, err = run(capsys, "projects", "--server", "ftp://x")
    assert code == 3 and "http:// or https://" in err
    code, err = run(capsys, "runner", "drain")
    assert code == 2 and "name the runner" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "list", "--status", "sideways"])
    assert exit_info.value.code == 2


def test_an_empty_token_file_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    code, err = run(capsys, "login", "--token-file", str(tmp_path / "empty"))
    assert code == 2 and "the token is empty" in err
    code, err = run(capsys, "login", "--token-file", str(tmp_path / "missing"))
    assert code == 3 and "cannot read the token file" in err


def test_enrollment_lifetimes() -> None:
    assert [parse_ttl(text) for text in ("90", "15m", "12h", "7d")] == [90, 900, 43200, 604800]
    for bad in ("", "0", "-5m", "1w", "m"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_ttl(bad)
