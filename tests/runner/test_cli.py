"""``oore runner`` on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from oore.cli import build_parser, main


def test_the_two_register_credentials_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            ["runner", "--server", "http://x", "--token", "a", "--enrollment-token", "b"]
        )


def test_options_are_checked_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runner", "--server", "oore.example", "--work-dir", str(tmp_path)]) == 2
    assert "--server must be an http" in capsys.readouterr().err
    assert main(["runner", "--server", "http://x", "--concurrency", "0"]) == 2
    assert "--concurrency must be 1..100" in capsys.readouterr().err


def test_without_an_identity_or_a_credential_it_says_how_to_register(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["runner", "--server", "http://127.0.0.1:9", "--work-dir", str(tmp_path / "w")])
    assert code == 1
    err = capsys.readouterr().err
    assert "no runner token" in err
    assert "--enrollment-token" in err
