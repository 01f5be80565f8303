"""The ``oore`` commands for people against the real ``oored`` and a real ``oore runner``.

The runner was registered over the API and runs with the token that call answered. A
plain shell project has pipelines that pass (with colours and an artifact), fail, and wait
for a mark file, so ``oore build logs --follow`` watches a build that is still running.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import DaemonFactory
from tests.e2e.test_runner_agent import Api, git

CLI = (sys.executable, "-m", "oore.cli")
ARTIFACT = "".join(f"{n}\n" for n in range(1, 200001)).encode()
PIPELINES = {
    "pass": """version: 1
platforms: [android]
commands:
  build:
    - "printf '\\\\033[31mred text\\\\033[0m\\\\n'"
    - "seq 1 20000"
    - "mkdir -p dist && seq 1 200000 > dist/numbers.txt"
artifacts:
  patterns:
    - "dist/*.txt"
""",
    "fail": """version: 1
platforms: [android]
commands:
  build:
    - "echo before the failure"
    - "exit 3"
""",
    "wait": """version: 1
platforms: [android]
commands:
  build:
    - "printf '\\\\033[32mwaiting\\\\033[0m\\\\n'"
    - "while [ ! -e {mark} ]; do sleep 0.1; done; echo after the mark"
""",
}


def make_repo(root: Path, mark: Path) -> Path:
    repo = root / "repo"
    (repo / "ci").mkdir(parents=True)
    for name, text in PIPELINES.items():
        (repo / "ci" / f"{name}.yaml").write_text(text.replace("{mark}", str(mark)))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "pipelines")
    return repo


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A private config directory, for in-process calls and for child processes."""
    for name in ("OORE_SERVER", "OORE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return {k: v for k, v in os.environ.items() if not k.startswith("OORED_")}


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def on_a_terminal(argv: list[str], env: dict[str, str]) -> str:
    """What a command writes when its standard output is a terminal (a pseudo-terminal)."""
    main_fd, child_fd = pty.openpty()
    chunks = []
    try:
        proc = subprocess.Popen(argv, stdout=child_fd, stderr=subprocess.PIPE, env=env)
        os.close(child_fd)
        while True:  # read as it writes, until the other side is closed and drained
            try:
                chunk = os.read(main_fd, 65536)
            except OSError:  # EIO on Linux once the command has ended
                break
            if not chunk:
                break
            chunks.append(chunk)
        _, errors = proc.communicate(timeout=60)
    finally:
        os.close(main_fd)
    assert proc.returncode == 0, errors
    return b"".join(chunks).decode()


def oore(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from oore.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_people_drive_builds_from_the_command_line(
    make_daemon: DaemonFactory,
    processes: list[subprocess.Popen[bytes]],
    cli_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    mark = tmp_path / "go-on"
    repo = make_repo(tmp_path, mark)
    daemon = make_daemon().start()

    # Sign in: the session is kept 0600 and later commands need no --server.
    code, out, err = oore(capsys, "login", "--server", daemon.url)
    assert code == 0 and "signed in to" in out
    saved = tmp_path / "config" / "oore" / "login.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    token = json.loads(saved.read_text())["token"]

    with daemon.client() as client:
        api = Api(client, token)
        project = api.call(
            "POST", "/v1/projects", {"name": "app", "local_repository_path": str(repo)}, 201
        )["project"]
        for name in PIPELINES:
            api.call(
                "POST",
                f"/v1/projects/{project['id']}/pipelines",
                {"name": name, "config_path": f"ci/{name}.yaml", "config_path_explicit": True},
                201,
            )
        registered = api.call("POST", "/v1/runners/register", {"name": "api-runner"})

    code, out, _ = oore(capsys, "projects")
    assert code == 0 and "app" in out and project["id"] in out and "maintainer" in out
    code, out, _ = oore(capsys, "pipelines", "app", "--json")
    assert sorted(p["name"] for p in json.loads(out)["pipelines"]) == ["fail", "pass", "wait"]
    code, _, err = oore(capsys, "build", "run", "app")
    assert code == 3 and "pick one with --pipeline" in err

    # A runner registered over the API runs with the token that call answered.
    answer_file = tmp_path / "register-answer.json"
    answer_file.write_text(json.dumps(registered))
    runner_log = tmp_path / "runner.log"
    with runner_log.open("wb") as log:
        processes.append(
            subprocess.Popen(
                [*CLI, "runner", "--server", daemon.url, "--work-dir", str(tmp_path / "work"),
                 "--token-file", str(answer_file), "--grace", "2"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=cli_env,
            )
        )  # fmt: skip

    # `build run --follow` streams the log (colours stripped: this is no terminal) and
    # exits with the build's result.
    code, out, err = oore(capsys, "build", "run", "app", "--pipeline", "pass", "--follow")
    assert code == 0, err + runner_log.read_text()
    assert "red text" in out and "\x1b" not in out
    assert "app#1 succeeded" in err
    code, out, err = oore(capsys, "build", "run", "app", "--pipeline", "fail", "--follow")
    assert code == 1 and "before the failure" in out and "app#2 failed" in err

    # On a terminal the colours stay.
    assert (
        on_a_terminal([*CLI, "build", "logs", "app#1"], cli_env).count("\x1b[31mred text\x1b[0m")
        == 1
    )

    # A reader that stops early (`| head`) ends the command quietly.
    head = subprocess.Popen(
        [*CLI, "build", "logs", "app#1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env,
    )
    processes.append(head)
    assert head.stdout is not None and head.stdout.readline()
    head.stdout.close()  # the log (over 100 KB) cannot all fit in the pipe
    assert head.wait(timeout=60) == 0
    assert head.stderr is not None
    with head.stderr:
        assert head.stderr.read() == b""

    # --tail prints only the last lines, read backwards a page (5,000 lines) at a time.
    code, whole, _ = oore(capsys, "build", "logs", "app#1")
    assert code == 0 and len(whole.splitlines()) > 6000
    for count in (3, 6000):
        code, out, _ = oore(capsys, "build", "logs", "app#1", "--tail", str(count))
        assert code == 0 and out.splitlines() == whole.splitlines()[-count:]
    code, _, err = oore(capsys, "build", "logs", "app#1", "--tail", "-1")
    assert code != 0 and "--tail must not be negative" in err

    # The artifact comes back byte for byte, found by PROJECT#NUMBER.
    code, out, _ = oore(capsys, "artifact", "download", "app#1", "-o", str(tmp_path / "dl"))
    assert code == 0 and out.strip() == str(tmp_path / "dl" / "numbers.txt")
    assert (tmp_path / "dl" / "numbers.txt").read_bytes() == ARTIFACT
    assert os.listdir(tmp_path / "dl") == ["numbers.txt"]

    # `build logs --follow` on a running build, piped: lines as they come, then the end.
    code, build_id, _ = oore(capsys, "build", "run", "app", "--pipeline", "wait")
    build_id = build_id.strip()
    watcher = subprocess.Popen(
        [*CLI, "build", "logs", build_id, "--follow", "--exit-status"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env,
    )
    processes.append(watcher)
    assert watcher.stdout is not None
    seen = []
    for raw in iter(watcher.stdout.readline, b""):  # the runner's "[oore] ..." lines first
        seen.append(raw)
        if not raw.startswith(b"[oore]"):
            break
    assert seen[-1] == b"waiting\n", seen  # live, from a running build, escapes stripped
    code, out, _ = oore(capsys, "build", "show", build_id)
    assert code == 0 and "running" in out
    mark.touch()
    rest, errors = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, errors
    assert "after the mark" in rest.decode().splitlines() and b"\x1b" not in rest
    assert b"app#3 succeeded" in errors

    # Cancel, rerun, list and show.
    mark.unlink()
    code, build_id, _ = oore(capsys, "build", "run", "app", "--pipeline", "wait")
    code, out, _ = oore(capsys, "build", "cancel", build_id.strip())
    assert code == 0 and "canceled" in out
    code, _, _ = oore(capsys, "build", "logs", build_id.strip(), "--follow", "--exit-status")
    assert code == 6
    code, out, err = oore(capsys, "build", "rerun", "app#2", "--follow")
    assert code == 1 and err.startswith("build app#5 ") and "app#5 failed" in err
    code, out, _ = oore(capsys, "build", "list", "--status", "failed", "--json")
    assert sorted(b["build_number"] for b in json.loads(out)["builds"]) == [2, 5]
    code, out, _ = oore(capsys, "build", "show", "app#1")
    assert code == 0 and "succeeded" in out and "STEP" in out
    code, out, _ = oore(capsys, "build", "logs", "app#2")
    assert code == 0 and "before the failure" in out

    # Runners: listed, drained and given work again; enrollment tokens.
    code, out, _ = oore(capsys, "runners")
    assert code == 0 and "api-runner" in out
    code, out, _ = oore(capsys, "runner", "drain", "api-runner")
    assert code == 0 and "is draining" in out
    code, out, _ = oore(capsys, "runner", "undrain", registered["runner"]["id"], "--json")
    assert code == 0 and json.loads(out)["runner"]["draining"] is False
    code, out, err = oore(
        capsys, "enrollment-token", "create", "--label", "fleet", "--ttl", "1h", "--max-uses", "2"
    )
    assert code == 0 and len(out.strip()) == 64 and "shown only once" in err
    minted = out.strip()
    code, out, _ = oore(capsys, "enrollment-token", "list")
    assert code == 0 and "fleet" in out and minted not in out

    # Failures are one line and an exit code.
    code, _, err = oore(capsys, "build", "show", "nope#9")
    assert code == 3 and err == "oore: no project named 'nope'\n"
    code, _, err = oore(capsys, "build", "show", "00000000-0000-4000-8000-000000000000")
    assert code == 3 and "not_found" in err
    code, _, _ = oore(capsys, "logout")
    assert code == 0 and not saved.exists()
    code, _, err = oore(capsys, "projects", "--server", daemon.url)
    assert code == 5 and "oore login" in err
    with httpx.Client() as plain:  # the session ended on the server too
        me = plain.get(f"{daemon.url}/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 401
