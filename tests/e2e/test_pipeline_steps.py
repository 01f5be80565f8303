"""The real ``oored`` and a real ``oore runner`` run a plain shell project's ``steps`` file.

No platforms, no Flutter: a step that fails, a ``continue_on_error`` step, a step past its
timeout, an ``if: failure()`` cleanup that runs only when the build failed, an
``if: always()`` step, step variables, the file's artifacts; the server reads the file at
trigger, so its build timeout ends the build and its runner labels route it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.conftest import DaemonFactory
from tests.e2e.test_runner_agent import Api, committed_repo, runners

__all__ = ["runners"]

PASSES = """\
version: 1
runner_labels: [linux]
env:
  - {key: GREETING, value: hello}
steps:
  - name: build
    run: |
      mkdir -p dist
      echo "$GREETING from the $STAGE step" | tee dist/report.txt
    env:
      - {key: STAGE, value: build}
  - name: lint
    run: echo "lint found 4 problems"; exit 4
    continue_on_error: true
  - name: flaky upload
    run: echo "waiting forever"; sleep 300
    timeout: 1
    continue_on_error: true
  - name: cleanup
    run: echo "cleanup ran"
    if: failure()
  - name: summary
    run: echo "summary ran"
    if: always()
artifacts:
  patterns: [dist/*.txt]
"""

FAILS = """\
version: 1
steps:
  - name: test
    run: echo "1 test failed"; exit 3
  - name: package
    run: echo "package ran"
  - name: cleanup
    run: echo "cleanup ran"
    if: failure()
  - name: summary
    run: echo "summary ran"
    if: always()
"""

TIMES_OUT = """\
version: 1
timeout: 1
steps:
  - name: hangs
    run: sleep 300
  - name: cleanup
    run: echo "cleanup ran"
    if: failure()
"""

NEEDS_GPU = """\
version: 1
runner_labels: [gpu]
steps:
  - name: train
    run: echo "trained"
"""


def make_repo(root: Path) -> Path:
    files = {"passes": PASSES, "fails": FAILS, "times-out": TIMES_OUT, "needs-gpu": NEEDS_GPU}
    return committed_repo(root / "repo", {f"ci/{name}.yaml": text for name, text in files.items()})


def steps_of(detail: dict[str, Any]) -> list[tuple[str, str, int | None]]:
    return [(s["name"], s["status"], s.get("exit_code")) for s in detail["build"]["step_results"]]


def test_a_runner_runs_a_plain_shell_steps_file(
    make_daemon: DaemonFactory,
    runners: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path)
    daemon = make_daemon().start()
    with daemon.client() as client:
        api = Api.local_owner(client)
        token = api.token
        project = api.project("tool", repo)

        def create(name: str) -> str:
            pipeline = api.call(
                "POST",
                f"/v1/projects/{project['id']}/pipelines",
                {"name": name, "config_path": f"ci/{name}.yaml", "config_path_explicit": True},
                expect=201,
            )["pipeline"]
            return str(pipeline["id"])

        def trigger(pipeline_id: str) -> dict[str, Any]:
            build: dict[str, Any] = api.call(
                "POST",
                f"/v1/projects/{project['id']}/builds",
                {"pipeline_id": pipeline_id},
                expect=201,
            )["build"]
            return build

        def run(name: str) -> dict[str, Any]:
            return api.finished(trigger(create(name))["id"])

        def texts(detail: dict[str, Any]) -> list[str]:
            return [line["content"] for line in api.logs(detail["build"]["id"])]

        runners(daemon.url, token, "shell", "linux")

        # Two tolerated failures (one a timeout): the build succeeds, the cleanup is skipped.
        ok = run("passes")
        assert ok["build"]["status"] == "succeeded", ok
        assert steps_of(ok) == [
            ("build", "succeeded", 0),
            ("lint", "failed", 4),
            ("flaky upload", "failed", 124),
            ("cleanup", "skipped", None),
            ("summary", "succeeded", 0),
        ]
        lines = texts(ok)
        assert "hello from the build step" in lines
        assert "[oore] step flaky upload timed out after 1s" in lines
        assert "cleanup ran" not in lines and "summary ran" in lines
        # No platforms: only the file's own pattern is collected, no Flutter default.
        artifacts = api.call("GET", f"/v1/builds/{ok['build']['id']}/artifacts")["artifacts"]
        assert [a["name"] for a in artifacts] == ["report.txt"]

        # A failing step: what follows is skipped, the failure() cleanup and always() run.
        bad = run("fails")
        assert (bad["build"]["status"], bad["build"]["exit_code"]) == ("failed", 3)
        assert steps_of(bad) == [
            ("test", "failed", 3),
            ("package", "skipped", None),
            ("cleanup", "succeeded", 0),
            ("summary", "succeeded", 0),
        ]
        lines = texts(bad)
        assert "cleanup ran" in lines and "summary ran" in lines and "package ran" not in lines

        # The server read the file at trigger: its timeout ends the running build.
        late = run("times-out")
        assert late["build"]["status"] == "timed_out", late
        assert late["events"][-1]["reason"] == "build timeout exceeded"

        # ... and its labels route the build: no runner here has gpu, so it waits.
        gpu = trigger(create("needs-gpu"))
        assert gpu["runner_labels"] == ["gpu"]
        assert api.build(gpu["id"])["build"]["status"] == "queued"
        api.call("POST", f"/v1/builds/{gpu['id']}/cancel")
    assert daemon.stop() == 0
