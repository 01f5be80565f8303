"""The agent loop against an in-process protocol server, with real git and real processes."""

from __future__ import annotations

import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from oore.runner.agent import Agent, AgentConfig, AgentError, save_credentials
from oore.runner.client import RunnerClient, RunnerCredentials
from tests.runner.kit import make_repo, running
from tests.runner.server import RUNNER_ID, TOKEN, FakeServer, job

SERVER_URL = "http://oore.test"


class Terminal:
    """What the agent prints, with a way to wait for a line."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = trio.Event()

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, text: str) -> str:
        with trio.fail_after(20):
            while True:
                found = [line for line in self.lines if text in line]
                if found:
                    return found[0]
                await self._changed.wait()


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
async def client(server: FakeServer) -> AsyncIterator[RunnerClient]:
    async with RunnerClient(SERVER_URL, transport=server.transport()) as opened:
        yield opened


def config(tmp_path: Path) -> AgentConfig:
    return AgentConfig(
        work_dir=tmp_path / "agent",
        name="test-runner",
        labels=("linux", "fast"),
        concurrency=2,
        grace=0.5,
        heartbeat_interval=0.2,
        claim_wait=1,
        job_state_wait=1,
    )


def repo_with(tmp_path: Path, oore_yaml: str) -> tuple[Path, str]:
    repo = tmp_path / "repo"
    return repo, make_repo(repo, {".oore.yaml": oore_yaml, "README": "hi\n"})


def build_yaml(*commands: str) -> str:
    listed = "".join(f"    - {json.dumps(command)}\n" for command in commands)
    return f"version: 1\nplatforms: [android]\ncommands:\n  build:\n{listed}"


async def test_registers_runs_a_build_and_reuses_its_identity(
    tmp_path: Path, server: FakeServer, client: RunnerClient
) -> None:
    repo, sha = repo_with(
        tmp_path, build_yaml('echo "hello from build $OORE_BUILD_NUMBER"', "echo careful >&2")
    )
    server.add_job(job(repo, sha, number=5))
    terminal = Terminal()
    agent = Agent(client, config(tmp_path), credential="enroll-me", say=terminal)
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await server.wait_until(lambda: len(server.statuses("build-5")) == 2)
        agent.stop()

    [(bearer, body)] = server.registrations
    assert bearer == "enroll-me"
    assert body["name"] == "test-runner"
    assert body["labels"] == ["linux", "fast"]
    assert body["max_concurrent"] == 2
    assert body["capabilities"]["protocol_version"] == 4
    saved = tmp_path / "agent" / "runner.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text())["token"] == TOKEN

    running_report, final = server.reports["build-5"]
    assert running_report == {"status": "running"}
    assert final["status"] == "succeeded"
    assert final["exit_code"] == 0
    assert [(s["name"], s["status"], s["exit_code"]) for s in final["steps"]] == [
        ("build[0]", "succeeded", 0),
        ("build[1]", "succeeded", 0),
    ]
    lines = server.log_lines("build-5")
    assert ("stdout", "hello from build 5") in lines
    assert ("stderr", "careful") in lines
    assert server.heartbeats[0] == "online"
    assert server.heartbeats[-1] == "offline"
    assert any("claimed build #5" in line for line in terminal.lines)
    assert any("build #5 succeeded" in line for line in terminal.lines)
    assert not (tmp_path / "agent" / "builds" / "build-5").exists(), "the checkout is removed"

    # Started again without a credential, it is the same runner.
    async with trio.open_nursery() as nursery:
        again = Agent(client, config(tmp_path), say=terminal)
        await nursery.start(again.run)
        again.stop()
    assert len(server.registrations) == 1


async def test_a_build_whose_log_the_server_refused_is_not_reported_succeeded(
    tmp_path: Path, server: FakeServer, client: RunnerClient
) -> None:
    repo, sha = repo_with(tmp_path, build_yaml("echo all went well"))
    server.add_job(job(repo, sha))
    server.logs_refused.add("build-1")
    terminal = Terminal()
    agent = Agent(client, config(tmp_path), credential="enroll-me", say=terminal)
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await server.wait_until(lambda: len(server.statuses("build-1")) == 2)
        agent.stop()

    final = server.reports["build-1"][-1]
    assert final["status"] == "failed"
    assert final["error_message"].startswith("the server refused ")
    assert "lines of the log" in final["error_message"]
    await terminal.wait_for("log lines not stored")


async def test_a_failing_step_fails_the_build_with_its_exit_code(
    tmp_path: Path, server: FakeServer, client: RunnerClient
) -> None:
    repo, sha = repo_with(tmp_path, build_yaml("echo ok", "exit 4", "echo never"))
    server.add_job(job(repo, sha))
    agent = Agent(client, config(tmp_path), credential="enroll-me", say=Terminal())
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await server.wait_until(lambda: len(server.statuses("build-1")) == 2)
        agent.stop()

    final = server.reports["build-1"][-1]
    assert final["status"] == "failed"
    assert final["exit_code"] == 4
    assert final["error_message"] == "step build[1] failed with exit code 4"
    assert [s["status"] for s in final["steps"]] == ["succeeded", "failed", "skipped"]
    assert ("stdout", "never") not in server.log_lines("build-1")


async def test_an_invalid_config_file_fails_the_build_with_its_problems(
    tmp_path: Path, server: FakeServer, client: RunnerClient
) -> None:
    repo, sha = repo_with(tmp_path, "version: 2\nplatforms: [android]\n")
    server.add_job(job(repo, sha))
    agent = Agent(client, config(tmp_path), credential="enroll-me", say=Terminal())
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await server.wait_until(lambda: len(server.statuses("build-1")) == 2)
        agent.stop()

    final = server.reports["build-1"][-1]
    assert final["status"] == "failed"
    assert final["exit_code"] == 1
    assert "invalid configuration in .oore.yaml" in final["error_message"]
    assert "version: must be 1" in final["error_message"]
    assert ("stderr", "[oore] .oore.yaml: version: must be 1, got 2") in server.log_lines("build-1")


async def test_a_build_the_server_takes_back_is_killed_and_not_reported(
    tmp_path: Path, server: FakeServer, client: RunnerClient
) -> None:
    repo, sha = repo_with(tmp_path, build_yaml('sleep 300 & echo "child $!"; wait'))
    server.add_job(job(repo, sha))
    terminal = Terminal()
    agent = Agent(client, config(tmp_path), credential="enroll-me", say=terminal)
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await server.wait_until(
            lambda: any(c.startswith("child ") for _, c in server.log_lines("build-1"))
        )
        [child] = [
            int(c.split()[1]) for _, c in server.log_lines("build-1") if c.startswith("child ")
        ]
        assert running(child)
        server.take_back("build-1")
        await terminal.wait_for("build #1 stopped")
        assert not running(child)
        agent.stop()

    assert server.statuses("build-1") == ["running"]
    assert any(
        "build #1: the server took it back (runner_mismatch" in line for line in terminal.lines
    )
    assert not any("cancel" in line for line in terminal.lines)


async def test_a_build_canceled_by_a_user_is_told_as_canceled(
    tmp_path: Path, server: FakeServer, client: RunnerClient
) -> None:
    repo, sha = repo_with(tmp_path, build_yaml("sleep 300"))
    server.add_job(job(repo, sha))
    terminal = Terminal()
    agent = Agent(client, config(tmp_path), credential="enroll-me", say=terminal)
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await terminal.wait_for("started: sleep 300")
        server.cancel("build-1", by="owner@example.com")
        await terminal.wait_for("build #1 stopped")
        agent.stop()
    assert server.statuses("build-1") == ["running"]
    told = [line for line in terminal.lines if "build #1" in line and "canceled" in line]
    assert told == [
        "build #1: the build was canceled by owner@example.com; stopping it",
        "build #1 stopped: the build was canceled by owner@example.com",
    ], terminal.lines
    assert not any("took it back" in line for line in terminal.lines)


async def test_stopping_the_agent_cancels_its_build_and_reports_it_failed(
    tmp_path: Path, server: FakeServer, client: RunnerClient
) -> None:
    repo, sha = repo_with(tmp_path, build_yaml('sleep 300 & echo "child $!"; wait'))
    server.add_job(job(repo, sha))
    agent = Agent(client, config(tmp_path), credential="enroll-me", say=Terminal())
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await server.wait_until(
            lambda: any(c.startswith("child ") for _, c in server.log_lines("build-1"))
        )
        [child] = [
            int(c.split()[1]) for _, c in server.log_lines("build-1") if c.startswith("child ")
        ]
        agent.stop()

    assert not running(child)
    final = server.reports["build-1"][-1]
    assert final["status"] == "failed"
    assert final["error_message"] == "runner stopped during the build"
    assert [s["status"] for s in final["steps"]] == ["canceled"]
    assert server.heartbeats[-1] == "offline"


async def test_unreachable_server_calls_are_retried(
    tmp_path: Path, server: FakeServer, client: RunnerClient
) -> None:
    repo, sha = repo_with(tmp_path, build_yaml("echo fine"))
    server.add_job(job(repo, sha))
    server.unreachable_calls = 2
    terminal = Terminal()
    agent = Agent(client, config(tmp_path), credential="enroll-me", say=terminal)
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await server.wait_until(lambda: server.statuses("build-1") == ["running", "succeeded"])
        agent.stop()

    assert any("retrying in" in line for line in terminal.lines)


async def test_without_identity_or_credential_the_agent_does_not_start(
    tmp_path: Path, client: RunnerClient
) -> None:
    with pytest.raises(AgentError, match="--enrollment-token"):
        await Agent(client, config(tmp_path), say=Terminal()).run()


async def test_a_rejected_token_ends_the_agent_with_a_clear_message(
    tmp_path: Path, server: FakeServer, client: RunnerClient
) -> None:
    (tmp_path / "agent").mkdir()
    save_credentials(
        tmp_path / "agent", SERVER_URL, RunnerCredentials(RUNNER_ID, TOKEN), "test-runner"
    )
    server.token_rejected = True
    with pytest.raises(AgentError, match="no longer accepts this runner's token"):
        await Agent(client, config(tmp_path), say=Terminal()).run()
    assert server.registrations == []


async def test_it_runs_up_to_concurrency_builds_at_once(
    tmp_path: Path, server: FakeServer, client: RunnerClient
) -> None:
    gate = tmp_path / "go"
    repo, sha = repo_with(
        tmp_path, build_yaml(f'while [ ! -e "{gate}" ]; do sleep 0.02; done; echo through')
    )
    for number in (1, 2, 3):
        server.add_job(job(repo, sha, number=number))
    agent = Agent(client, config(tmp_path), credential="enroll-me", say=Terminal())
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await server.wait_until(
            lambda: server.statuses("build-1") == server.statuses("build-2") == ["running"]
        )
        assert agent.statistics().running == 2
        assert len(server.jobs) == 1, "with both slots taken, the third build is not claimed"
        await server.wait_until(lambda: "busy" in server.heartbeats)
        gate.touch()
        await server.wait_until(
            lambda: all(
                server.statuses(f"build-{n}") == ["running", "succeeded"] for n in (1, 2, 3)
            )
        )
        agent.stop()

    assert agent.statistics().outcomes == {"succeeded": 3}


async def test_each_line_names_the_step_that_printed_it(
    tmp_path: Path, server: FakeServer, client: RunnerClient
) -> None:
    repo, sha = repo_with(tmp_path, build_yaml("echo one", "echo two >&2"))
    server.add_job({**job(repo, sha, number=7), "attempt": 1})  # an oore server: it takes steps
    server.add_job(job(repo, sha, number=8))  # oored's claim names no attempt
    agent = Agent(client, config(tmp_path), credential="enroll-me", say=Terminal())
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await server.wait_until(
            lambda: all(len(server.statuses(b)) == 2 for b in ("build-7", "build-8"))
        )
        agent.stop()

    chunks = [server.logs["build-7"][n] for n in sorted(server.logs["build-7"])]
    steps = {chunk["content"]: (chunk.get("step"), chunk.get("step_name")) for chunk in chunks}
    assert steps["one"] == (0, "build[0]") and steps["two"] == (1, "build[1]")
    assert steps["[oore] step build[0]: echo one"] == (0, "build[0]")
    finished = [content for content in steps if content.startswith("[oore] step build[1] succ")]
    assert [steps[content] for content in finished] == [(1, "build[1]")]
    outside = [c for c in chunks if c["content"].startswith("[oore] checking out")]
    assert outside and all("step" not in c and "step_name" not in c for c in outside)
    # To a server that did not name an attempt (oored), lines go as they always did.
    plain = server.logs["build-8"].values()
    assert plain and all(set(chunk) == {"sequence", "content", "stream"} for chunk in plain)
