"""The agent runs a ``steps`` file: continue_on_error, the file's timeout and labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from oore.runner.agent import Agent
from oore.runner.client import RunnerClient
from tests.runner.server import FakeServer, job
from tests.runner.test_agent import Terminal, client, config, repo_with, server

__all__ = ["client", "server"]


async def final_report(tmp_path: Path, server: FakeServer, client: RunnerClient) -> Any:
    agent = Agent(client, config(tmp_path), credential="enroll-me", say=Terminal())
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await server.wait_until(lambda: len(server.statuses("build-1")) == 2)
        agent.stop()
    return server.reports["build-1"][-1]


async def test_a_tolerated_failure_does_not_fail_the_build(
    tmp_path: Path, server: FakeServer, client: RunnerClient
) -> None:
    text = (
        "version: 1\nsteps:\n"
        "  - {name: lint, run: exit 4, continue_on_error: true}\n"
        "  - {name: test, run: 'true'}\n"
        "  - {name: cleanup, run: 'true', if: failure()}\n"
    )
    repo, sha = repo_with(tmp_path, text)
    server.add_job(job(repo, sha))
    final = await final_report(tmp_path, server, client)
    assert (final["status"], final["exit_code"]) == ("succeeded", 0)
    assert [(s["name"], s["status"]) for s in final["steps"]] == [
        ("lint", "failed"),
        ("test", "succeeded"),
        ("cleanup", "skipped"),
    ]


async def test_the_files_timeout_ends_the_steps(
    tmp_path: Path, server: FakeServer, client: RunnerClient
) -> None:
    text = "version: 1\ntimeout: 1\nsteps:\n  - {name: hangs, run: sleep 300}\n"
    repo, sha = repo_with(tmp_path, text)
    server.add_job(job(repo, sha))
    final = await final_report(tmp_path, server, client)
    assert final["status"] == "failed"
    assert final["error_message"] == "the build timed out after 1s (.oore.yaml)"
    assert [(s["name"], s["status"]) for s in final["steps"]] == [("hangs", "canceled")]


async def test_a_runner_without_the_files_labels_fails_the_build(
    tmp_path: Path, server: FakeServer, client: RunnerClient
) -> None:
    text = "version: 1\nrunner_labels: [linux, gpu]\nsteps:\n  - {name: s, run: echo ran}\n"
    repo, sha = repo_with(tmp_path, text)
    server.add_job(job(repo, sha))
    final = await final_report(tmp_path, server, client)
    assert final["status"] == "failed"
    assert final["error_message"].startswith(
        ".oore.yaml asks for runner labels this runner lacks: gpu"
    )
    assert ("stdout", "ran") not in server.log_lines("build-1")
