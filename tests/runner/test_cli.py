"""``oore runner`` on the command line."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import pytest

from oore import __version__
from oore.cli import CredentialError, build_parser, main, register_credential, runner_credentials
from oore.runner.client import RunnerCredentials


def test_the_register_credentials_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            ["runner", "--server", "http://x", "--token-file", "a", "--ask-enrollment-token"]
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


def test_several_servers_are_checked_each_and_the_help_says_how_to_give_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = ["--work-dir", str(tmp_path)]
    assert main(["runner", "--server", "http://a.test,oore.example", *work]) == 2
    assert "'oore.example' is not an http:// or https:// URL" in capsys.readouterr().err
    assert main(["runner", "--server", "http://a.test", "--server", "b.test", *work]) == 2
    assert "'b.test'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["runner", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "repeat it or separate the URLs by commas" in text


def _args(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["runner", "--server", "http://x", *extra])


def test_a_token_on_the_command_line_is_refused_saying_how_to_give_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for option, variable in (
        ("--token", "OORE_RUNNER_TOKEN"),
        ("--enrollment-token", "OORE_RUNNER_ENROLLMENT_TOKEN"),
    ):
        assert main(["runner", "--server", "http://127.0.0.1:9", option, "s3cret"]) == 2
        err = capsys.readouterr().err
        assert variable in err and f"{option}-file" in err and f"--ask-{option[2:]}" in err
        assert "s3cret" not in err


def test_help_says_where_tokens_come_from(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["runner", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for way in ("OORE_RUNNER_TOKEN", "OORE_RUNNER_ENROLLMENT_TOKEN", "--token-file", "--ask-token"):
        assert way in text
    assert "never taken from the command line" in text


def test_the_token_comes_from_the_environment_which_builds_then_do_not_inherit() -> None:
    environ = {"OORE_RUNNER_TOKEN": " abc\n", "OORE_RUNNER_ENROLLMENT_TOKEN": "", "PATH": "/bin"}
    assert register_credential(_args(), environ) == "abc"
    assert environ == {"PATH": "/bin"}
    environ = {"OORE_RUNNER_ENROLLMENT_TOKEN": "enrol"}
    assert register_credential(_args(), environ) == "enrol"
    assert environ == {}
    assert register_credential(_args(), {}) is None


def test_the_token_comes_from_a_file_standard_input_or_a_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("from-file\n")
    assert register_credential(_args("--token-file", str(tmp_path / "token")), {}) == "from-file"
    monkeypatch.setattr(sys, "stdin", io.StringIO("from-stdin\n"))
    assert register_credential(_args("--enrollment-token-file", "-"), {}) == "from-stdin"
    monkeypatch.setattr(sys, "stdin", io.StringIO("typed\n"))
    assert register_credential(_args("--ask-token"), {}) == "typed"


@pytest.mark.parametrize(
    ("extra", "environ", "message"),
    [
        (("--token-file", "{tmp}/token"), {"OORE_RUNNER_TOKEN": "b"}, "not several"),
        ((), {"OORE_RUNNER_TOKEN": "a", "OORE_RUNNER_ENROLLMENT_TOKEN": "b"}, "not several"),
        (("--token-file", "{tmp}/empty"), {}, "empty"),
        (("--token-file", "{tmp}/missing"), {}, "cannot read the token file"),
    ],
)
def test_unusable_credentials_are_refused(
    tmp_path: Path, extra: tuple[str, ...], environ: dict[str, str], message: str
) -> None:
    (tmp_path / "token").write_text("a")
    (tmp_path / "empty").write_text("\n")
    args = _args(*(part.format(tmp=tmp_path) for part in extra))
    with pytest.raises(CredentialError, match=message):
        register_credential(args, dict(environ))


def test_a_runner_token_from_register_is_used_as_it_is() -> None:
    answer = '{"runner": {"id": "r-1", "name": "x"}, "token": "runner-token"}'
    assert runner_credentials(answer, None) == RunnerCredentials("r-1", "runner-token")
    assert runner_credentials("runner-token", "r-2") == RunnerCredentials("r-2", "runner-token")
    assert runner_credentials("user-token", None) == "user-token"
    for bad in ('{"token": "t"}', '{"runner": {"id": "r"}}', "{nope"):
        with pytest.raises(CredentialError):
            runner_credentials(bad, None)


def test_version_prints_the_package_version_and_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["--version"])
    assert ended.value.code == 0
    assert capsys.readouterr().out.strip() == f"oore {__version__}"
