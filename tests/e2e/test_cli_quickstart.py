"""The README's quickstart, the command-line way: from an empty machine to a followed build
with a secret, using only ``oore`` (no curl), against a real daemon and a real runner."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import DaemonFactory
from tests.e2e.test_cli import CLI, cli_env, oore, processes
from tests.e2e.test_runner_agent import committed_repo

__all__ = ["cli_env", "processes"]

SECRET = "s3cr3t-deploy-key-from-stdin"
PIPELINE = """\
version: 1
steps:
  - name: hello
    run: echo "hello from $OORE_BRANCH, greeting=$GREETING"
  - name: deploy
    run: |
      echo "key is $DEPLOY_KEY"
      printf %s "$DEPLOY_KEY" | sha256sum
"""


def test_a_newcomer_sets_up_and_follows_a_build_with_the_cli_alone(
    make_daemon: DaemonFactory,
    processes: list[subprocess.Popen[bytes]],
    cli_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    repo = committed_repo(tmp_path / "hello", {".oore.yaml": PIPELINE})
    daemon = make_daemon().start()

    assert oore(capsys, "login", "--server", daemon.url)[0] == 0
    code, out, err = oore(capsys, "project", "create", "hello", "--repo", str(repo))
    assert code == 0 and out.startswith("project hello ("), err
    code, out, err = oore(capsys, "pipeline", "create", "hello", "ci")
    assert code == 0 and "runs .oore.yaml" in out, err
    assert oore(capsys, "variable", "set", "hello", "GREETING", "hi there")[0] == 0

    # A secret's value is refused on the command line, taken from standard input.
    code, _, err = oore(capsys, "variable", "set", "hello", "DEPLOY_KEY", SECRET, "--secret")
    assert code == 2 and "never from the command line" in err
    piped = subprocess.run(
        [*CLI, "variable", "set", "hello", "DEPLOY_KEY", "--secret"],
        input=SECRET + "\n",
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=60,
    )
    assert piped.returncode == 0, piped.stderr
    assert "secret DEPLOY_KEY set on project hello" in piped.stdout
    code, out, _ = oore(capsys, "variables", "hello", "--json")
    listed = {v["name"]: v for v in json.loads(out)["variables"]}
    assert listed["GREETING"]["value"] == "hi there" and listed["DEPLOY_KEY"]["secret"]
    assert SECRET not in out

    # A runner on this machine, registered with an enrollment token the CLI minted.
    code, enrollment, _ = oore(capsys, "enrollment-token", "create", "--label", "laptop")
    assert code == 0 and enrollment.strip()
    with (tmp_path / "runner.log").open("wb") as log:
        processes.append(
            subprocess.Popen(
                [*CLI, "runner", "--work-dir", str(tmp_path / "work")],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(cli_env, OORE_RUNNER_ENROLLMENT_TOKEN=enrollment.strip()),
            )
        )

    code, out, err = oore(capsys, "build", "run", "hello", "--follow")
    assert code == 0, err + (tmp_path / "runner.log").read_text()
    assert "hello from main, greeting=hi there" in out
    assert "key is ********" in out and SECRET not in out
    assert hashlib.sha256(SECRET.encode()).hexdigest() in out  # the step saw the real value
    assert "hello#1 succeeded" in err

    assert oore(capsys, "variable", "delete", "hello", "DEPLOY_KEY")[0] == 0
    code, out, _ = oore(capsys, "variables", "hello")
    assert "DEPLOY_KEY" not in out and "GREETING" in out
    code, _, err = oore(capsys, "variable", "delete", "hello", "DEPLOY_KEY")
    assert code == 3 and "not found" in err.lower()
    assert daemon.stop() == 0
