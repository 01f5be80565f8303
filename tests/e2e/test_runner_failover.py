"""Two real ``oored`` on one PostgreSQL and a real ``oore runner`` given both URLs: the
first daemon is dead before the runner starts, so the runner registers, claims and builds
through the second."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from oore.datadir import ENCRYPTION_KEY_FILE
from tests.e2e.conftest import DaemonFactory
from tests.e2e.test_runner_agent import Api, committed_repo, pipeline_file, wait_until

STOP_TIMEOUT = 15.0


def data_dir_with_key(path: Path, key: bytes) -> Path:
    """A daemon's data directory holding the installation's ``encryption.key``."""
    path.mkdir(parents=True)
    (path / ENCRYPTION_KEY_FILE).write_bytes(key)
    os.chmod(path / ENCRYPTION_KEY_FILE, 0o600)
    return path


@pytest.fixture
def runner_proc() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_a_runner_given_two_daemons_works_through_the_second_when_the_first_is_dead(
    make_daemon: DaemonFactory,
    database_url: str,
    runner_proc: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    key = os.urandom(32)
    first = make_daemon(data_dir_with_key(tmp_path / "first", key))
    second = make_daemon(data_dir_with_key(tmp_path / "second", key))
    first.env["OORED_DATABASE_URL"] = database_url  # the env is the daemons' shared one
    first.start()
    second.start()
    repo = committed_repo(tmp_path / "repo", {".oore.yaml": pipeline_file("echo built here")})

    first.kill()
    work = tmp_path / "runner"
    log = tmp_path / "runner.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OORED_", "OORE_"))}

    def start_runner(*servers: str, **extra_env: str) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "oore.cli",
                    "runner",
                    *(f"--server={server}" for server in servers),
                    "--name",
                    "failover",
                    "--work-dir",
                    str(work),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env, PYTHONUNBUFFERED="1", **extra_env),
            )
        runner_proc.append(proc)
        return proc

    def stop(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_TIMEOUT) == 0, log.read_text()

    with second.client() as client:
        api = Api.local_owner(client)
        project = api.project("app", repo)
        pipeline = api.pipeline(project["id"], name="ci")

        stop_first = start_runner(first.url, second.url, OORE_RUNNER_TOKEN=api.token)
        runners = wait_until(
            "the runner to register",
            lambda: (page := api.call("GET", "/v1/runners"))["total"] == 1 and page["runners"],
        )
        runner_id = runners[0]["id"]
        done = api.finished(api.trigger(project["id"], pipeline["id"])["id"])
        assert done["build"]["status"] == "succeeded", done
        assigned = [e["actor"] for e in done["events"] if e["to_status"] == "assigned"]
        assert assigned == [f"runner:{runner_id}"]
        assert "built here" in [line["content"] for line in api.logs(done["build"]["id"])]
        stop(stop_first)
        said = log.read_text()
        assert said.count("switching to") == 1, said
        assert f"no answer from {first.url} (" in said and f"switching to {second.url}" in said
        # The runner's identity is the installation's, kept under the first URL.
        saved = json.loads((work / "runner.json").read_text())
        assert saved["server_url"] == first.url and saved["runner_id"] == runner_id

        # Started again from OORE_SERVER, without a token: the same runner, through the
        # second daemon.
        again = start_runner(OORE_SERVER=f"{first.url},{second.url}")
        done = api.finished(api.trigger(project["id"], pipeline["id"])["id"])
        assert done["build"]["status"] == "succeeded", done
        assigned = [e["actor"] for e in done["events"] if e["to_status"] == "assigned"]
        assert assigned == [f"runner:{runner_id}"]
        assert api.call("GET", "/v1/runners")["total"] == 1
        stop(again)
    assert log.read_text().count("switching to") == 2
    assert second.stop() == 0
