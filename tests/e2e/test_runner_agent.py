"""The real ``oored`` with two real ``oore runner`` processes running shell commands.

One repository holds a ``.oore.yaml`` per pipeline (explicit ``config_path``); pipelines
require labels, so each build must land on the runner that has them. The scenario covers
success and failure with logs and steps, a cancel that must kill a process ignoring
SIGTERM, and a runner SIGKILLed mid-build whose build the other runner finishes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import DaemonFactory, alive, free_port

GRACE = 2.0
LEASE = 4
WAIT = 30.0


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@e", "-c", "user.name=t", *args],
        check=True,
        capture_output=True,
    )


def committed_repo(repo: Path, files: Mapping[str, str]) -> Path:
    """A git repository at ``repo`` with ``files`` (path: text) committed on ``main``."""
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "pipelines")
    return repo


def pipeline_file(*build: str) -> str:
    listed = "".join(f"    - {command!r}\n" for command in build)
    return f"version: 1\nplatforms: [android]\ncommands:\n  build:\n{listed}"


def make_repo(root: Path, marks: Path) -> Path:
    files = {
        "ci/pass.yaml": pipeline_file(
            'for i in $(seq 1 300); do echo "line $i"; done',
            'echo "to stderr" >&2; echo "register token: ${OORE_RUNNER_TOKEN:-not inherited}"',
        ),
        "ci/fail.yaml": pipeline_file("echo before the failure", "exit 3", "echo never runs"),
        # Ignores SIGTERM (and so does its child), so only the SIGKILL after the grace ends it.
        "ci/stubborn.yaml": pipeline_file(
            f"trap '' TERM; sleep 300 & echo $! > {marks}/stubborn.pid; wait"
        ),
        # The first attempt parks; the attempt after a lost runner finds the mark and finishes.
        "ci/handoff.yaml": pipeline_file(
            f"if [ -e {marks}/handoff.1 ]; then echo second attempt; "
            f"else sleep 300 & echo $! > {marks}/handoff.1; wait; fi"
        ),
    }
    return committed_repo(root / "repo", files)


def wait_until(what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def gone(pid: int) -> bool:
    """Ended, or a zombie nobody has reaped yet (it runs no more code)."""
    if not alive(pid):
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return True


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


class Api:
    def __init__(self, client: httpx.Client, token: str) -> None:
        self.client = client
        self.token = token
        self.auth = {"Authorization": f"Bearer {token}"}

    @classmethod
    def local_owner(cls, client: httpx.Client) -> Api:
        """Signed in as the owner by local sign-in."""
        return cls(client, client.post("/v1/auth/local/login", json={}).json()["session_token"])

    def project(self, name: str, repo: Path) -> dict[str, Any]:
        body = {"name": name, "local_repository_path": str(repo)}
        made: dict[str, Any] = self.call("POST", "/v1/projects", body, expect=201)["project"]
        return made

    def pipeline(self, project_id: str, **body: Any) -> dict[str, Any]:
        path = f"/v1/projects/{project_id}/pipelines"
        made: dict[str, Any] = self.call("POST", path, body, expect=201)["pipeline"]
        return made

    def trigger(self, project_id: str, pipeline_id: str) -> dict[str, Any]:
        path = f"/v1/projects/{project_id}/builds"
        body = {"pipeline_id": pipeline_id}
        made: dict[str, Any] = self.call("POST", path, body, expect=201)["build"]
        return made

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        reply = self.client.request(method, path, json=body, headers=self.auth)
        assert reply.status_code == expect, f"{method} {path}: {reply.text}"
        return reply.json()

    def build(self, build_id: str) -> dict[str, Any]:
        detail: dict[str, Any] = self.call("GET", f"/v1/builds/{build_id}")
        return detail

    def finished(self, build_id: str) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            detail = self.build(build_id)
            return detail if detail["build"].get("finished_at") else None

        result: dict[str, Any] = wait_until(f"build {build_id} to end", ended)
        return result

    def logs(self, build_id: str) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = self.call("GET", f"/v1/builds/{build_id}/logs?limit=5000")[
            "logs"
        ]
        return lines


@pytest.fixture
def runners(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(server: str, token: str, name: str, labels: str) -> subprocess.Popen[bytes]:
        work = tmp_path / f"runner-{name}"
        out = (tmp_path / f"runner-{name}.log").open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OORED_", "OORE_"))}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "oore.cli",
                "runner",
                "--server",
                server,
                "--name",
                name,
                "--labels",
                labels,
                "--work-dir",
                str(work),
                "--grace",
                str(GRACE),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env, PYTHONUNBUFFERED="1", OORE_RUNNER_TOKEN=token),
        )
        out.close()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_two_runners_run_real_builds(
    make_daemon: DaemonFactory,
    runners: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    repo = make_repo(tmp_path, marks)
    daemon = make_daemon()
    daemon.env["OORED_RUNNER_LEASE_SECONDS"] = str(LEASE)
    port = free_port()
    daemon.start("--listen", f"127.0.0.1:{port}")
    leftovers: list[Path] = [marks / "stubborn.pid", marks / "handoff.1"]
    try:
        with daemon.client() as client:
            token = client.post("/v1/auth/local/login", json={}).json()["session_token"]
            api = Api(client, token)
            project = api.call(
                "POST",
                "/v1/projects",
                {"name": "app", "local_repository_path": str(repo)},
                expect=201,
            )["project"]

            def pipeline(name: str, labels: list[str]) -> str:
                created = api.call(
                    "POST",
                    f"/v1/projects/{project['id']}/pipelines",
                    {
                        "name": name,
                        "config_path": f"ci/{name}.yaml",
                        "config_path_explicit": True,
                        "runner_labels": labels,
                    },
                    expect=201,
                )
                pipeline_id: str = created["pipeline"]["id"]
                return pipeline_id

            def trigger(pipeline_id: str) -> str:
                build = api.call(
                    "POST",
                    f"/v1/projects/{project['id']}/builds",
                    {"pipeline_id": pipeline_id},
                    expect=201,
                )["build"]
                build_id: str = build["id"]
                return build_id

            passing = pipeline("pass", ["alpha"])
            failing = pipeline("fail", ["beta"])
            stubborn = pipeline("stubborn", ["alpha"])
            handoff = pipeline("handoff", ["shared"])

            alpha = runners(daemon.url, token, "a", "alpha,shared")
            beta = runners(daemon.url, token, "b", "beta,shared")
            # The owner's session is in no process's command line, for ps to show.
            for proc in (alpha, beta):
                assert token not in Path(f"/proc/{proc.pid}/cmdline").read_text()
            listed = wait_until(
                "both runners to register",
                lambda: (page := api.call("GET", "/v1/runners"))["total"] == 2 and page,
            )
            ids = {r["name"]: r["id"] for r in listed["runners"]}

            # Success, with every log line stored once and in order, and steps recorded.
            ok = api.finished(trigger(passing))
            assert ok["build"]["status"] == "succeeded", ok
            assert [e["actor"] for e in ok["events"] if e["to_status"] == "assigned"] == [
                f"runner:{ids['a']}"
            ]
            steps = ok["build"]["step_results"]
            assert [(s["name"], s["status"], s.get("exit_code")) for s in steps] == [
                ("build[0]", "succeeded", 0),
                ("build[1]", "succeeded", 0),
            ]
            lines = api.logs(ok["build"]["id"])
            sequences = [line["sequence"] for line in lines]
            assert sequences == sorted(set(sequences))
            numbered = [line["content"] for line in lines if line["content"].startswith("line ")]
            assert numbered == [f"line {i}" for i in range(1, 301)]
            assert {"content": "to stderr", "stream": "stderr"} in [
                {"content": line["content"], "stream": line["stream"]} for line in lines
            ]
            # Each line names the step that printed it; the checkout's lines name none.
            step_of = {line["content"]: (line.get("step"), line.get("step_name")) for line in lines}
            assert step_of["line 300"] == (0, "build[0]")
            assert step_of["to stderr"] == (1, "build[1]")
            assert all(
                "step" not in line
                for line in lines
                if line["content"].startswith("[oore] checking")
            )
            # ... nor in the environment of the builds the runner runs.
            assert "register token: not inherited" in [line["content"] for line in lines]

            # Failure: the exit code and the failed step, and nothing after it ran.
            bad = api.finished(trigger(failing))
            assert bad["build"]["status"] == "failed"
            assert bad["build"]["exit_code"] == 3
            assert [e["actor"] for e in bad["events"] if e["to_status"] == "assigned"] == [
                f"runner:{ids['b']}"
            ]
            assert [(s["name"], s["status"]) for s in bad["build"]["step_results"]] == [
                ("build[0]", "succeeded"),
                ("build[1]", "failed"),
                ("build[2]", "skipped"),
            ]
            texts = [line["content"] for line in api.logs(bad["build"]["id"])]
            assert "before the failure" in texts and "never runs" not in texts

            # Cancel: the process ignores SIGTERM; it must be gone within the grace period.
            held = trigger(stubborn)
            pid = wait_until("the stubborn step to start", lambda: read_pid(marks / "stubborn.pid"))
            wait_until(
                "the build to be running",
                lambda: api.build(held)["build"]["status"] == "running",
            )
            asked = time.monotonic()
            canceled = api.call("POST", f"/v1/builds/{held}/cancel")
            assert canceled["build"]["status"] == "canceled"
            wait_until("the canceled process to end", lambda: gone(pid), timeout=GRACE + 5)
            took = time.monotonic() - asked
            assert took >= GRACE * 0.8, "SIGTERM was ignored, so only SIGKILL can have ended it"
            assert api.build(held)["build"]["status"] == "canceled"
            # The runner (alpha, by the labels) tells a cancel as a cancel, and who made it.
            said = tmp_path / "runner-a.log"
            wait_until(
                "the runner to tell of the cancel",
                lambda: "the build was canceled by owner@local" in said.read_text(),
            )
            assert "took it back" not in said.read_text()

            # A runner SIGKILLed mid-build: the build is requeued and the other runner ends it.
            moving = trigger(handoff)
            wait_until("the first attempt to start", lambda: (marks / "handoff.1").exists())
            first = api.build(moving)["build"]
            assert first["status"] == "running" and first["attempt"] == 1
            holder, other = (alpha, "b") if first["runner_id"] == ids["a"] else (beta, "a")
            holder.kill()
            holder.wait()
            done = api.finished(moving)
            assert done["build"]["status"] == "succeeded", done
            assert done["build"]["attempt"] == 2
            assigned = [e["actor"] for e in done["events"] if e["to_status"] == "assigned"]
            assert assigned == [f"runner:{first['runner_id']}", f"runner:{ids[other]}"]
            requeued = [e for e in done["events"] if e["to_status"] == "queued"][1:]
            assert len(requeued) == 1 and "lease expired" in requeued[0]["reason"]
            texts = [line["content"] for line in api.logs(moving)]
            assert "second attempt" in texts

        # The daemon restarts: the surviving runner reconnects (with backoff) and builds on.
        assert daemon.stop() == 0
        daemon.start("--listen", f"127.0.0.1:{port}")
        with daemon.client() as client:
            api = Api(client, token)
            after = api.finished(trigger(handoff))
            assert after["build"]["status"] == "succeeded", after
            assert [e["actor"] for e in after["events"] if e["to_status"] == "assigned"] == [
                f"runner:{ids[other]}"
            ]
    finally:
        # The SIGKILLed runner could not end its build's process: do it here.
        for path in leftovers:
            pid = read_pid(path)
            if pid is not None and not gone(pid):
                os.kill(pid, signal.SIGKILL)
    assert daemon.stop() == 0
