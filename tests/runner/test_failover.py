"""The agent given several servers of one installation: when the one it talks to stops
answering, it moves on to the next and carries on with what it was doing."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from oore.runner.agent import Agent, AgentError, save_credentials
from oore.runner.channel import RunnerChannel
from oore.runner.client import ConnectionFailed, RunnerClient, RunnerCredentials
from oore.runner.servers import Servers
from tests.runner.server import RUNNER_ID, TOKEN, FakeServer, job
from tests.runner.test_agent import Terminal, build_yaml, config, repo_with

FIRST, SECOND = "http://first.test", "http://second.test"


class Daemons:
    """One FakeServer (one installation's state) behind several host names, as daemons
    on one database; a host that is down refuses connections."""

    def __init__(self, server: FakeServer) -> None:
        self.down: set[str] = set()
        self.answered: list[tuple[str, str]] = []  # (host, "METHOD path") that got through
        self._inner = server.transport()

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        self.answered.append((request.url.host, f"{request.method} {request.url.path}"))
        return await self._inner.handle_async_request(request)

    def hosts_of(self, call: str) -> list[str]:
        return [host for host, made in self.answered if made == call]


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def daemons(server: FakeServer) -> Daemons:
    return Daemons(server)


def switches(terminal: Terminal) -> list[str]:
    return [line for line in terminal.lines if "switching to" in line]


async def test_the_runner_registers_and_builds_through_the_next_server_when_the_first_is_down(
    tmp_path: Path, server: FakeServer, daemons: Daemons
) -> None:
    repo, sha = repo_with(tmp_path, build_yaml("echo built"))
    server.add_job(job(repo, sha))
    daemons.down.add("first.test")
    terminal = Terminal()
    servers = Servers([FIRST, SECOND], say=terminal)
    async with RunnerClient(servers, transport=daemons.transport()) as client:
        agent = Agent(client, config(tmp_path), credential="enroll-me", say=terminal)
        async with trio.open_nursery() as nursery:
            await nursery.start(agent.run)
            await server.wait_until(lambda: server.statuses("build-1") == ["running", "succeeded"])
            agent.stop()

    assert len(server.registrations) == 1
    assert daemons.hosts_of("POST /v1/runners/register") == ["second.test"]
    assert set(daemons.hosts_of(f"POST /v1/runners/{RUNNER_ID}/jobs/build-1/status")) == {
        "second.test"
    }
    assert switches(terminal) == [
        f"no answer from {FIRST} (POST {FIRST}/v1/runners/register: ConnectError: connection "
        f"refused); switching to {SECOND}"
    ]
    # The identity is the installation's, kept under the first URL.
    saved = json.loads((tmp_path / "agent" / "runner.json").read_text())
    assert (saved["server_url"], saved["token"]) == (FIRST, TOKEN)

    # Started again, still with the first server down: the same runner, through the second.
    again_said = Terminal()
    again = Servers([FIRST, SECOND], say=again_said)
    async with RunnerClient(again, transport=daemons.transport()) as client:
        agent = Agent(client, config(tmp_path), say=again_said)
        async with trio.open_nursery() as nursery:
            await nursery.start(agent.run)
            await server.wait_until(lambda: "second.test" in daemons.hosts_of(heartbeat()))
            agent.stop()
    assert len(server.registrations) == 1
    assert len(switches(again_said)) == 1


def heartbeat() -> str:
    return f"POST /v1/runners/{RUNNER_ID}/heartbeat"


async def test_a_running_build_carries_on_through_the_next_server_when_its_server_dies(
    tmp_path: Path, server: FakeServer, daemons: Daemons
) -> None:
    gate = tmp_path / "go"
    repo, sha = repo_with(
        tmp_path,
        build_yaml(
            "echo before",
            f'while [ ! -e "{gate}" ]; do sleep 0.02; done',
            "for i in $(seq 1 50); do echo after $i; done",
        ),
    )
    server.add_job(job(repo, sha))
    terminal = Terminal()
    servers = Servers([FIRST, SECOND], say=terminal)
    async with RunnerClient(servers, transport=daemons.transport()) as client:
        agent = Agent(client, config(tmp_path), credential="enroll-me", say=terminal)
        async with trio.open_nursery() as nursery:
            await nursery.start(agent.run)
            await server.wait_until(lambda: ("stdout", "before") in server.log_lines("build-1"))
            daemons.down.add("first.test")  # the daemon dies mid-build
            gate.touch()
            await server.wait_until(lambda: server.statuses("build-1") == ["running", "succeeded"])
            agent.stop()

    # Every line arrived once, in order, the later ones through the second server.
    lines = [content for _, content in server.log_lines("build-1")]
    assert [line for line in lines if line.startswith("after")] == [
        f"after {i}" for i in range(1, 51)
    ]
    assert "before" in lines
    logs = f"POST /v1/runners/{RUNNER_ID}/jobs/build-1/logs"
    assert daemons.hosts_of(logs)[0] == "first.test"
    assert daemons.hosts_of(logs)[-1] == "second.test"
    assert daemons.hosts_of(f"POST /v1/runners/{RUNNER_ID}/jobs/build-1/status") == [
        "first.test",
        "second.test",
    ]
    assert len(switches(terminal)) == 1
    assert any("build #1 succeeded" in line for line in terminal.lines)
    assert server.heartbeats[-1] == "offline"


async def test_an_identity_saved_under_any_of_the_urls_is_the_runners(
    tmp_path: Path, server: FakeServer, daemons: Daemons
) -> None:
    # The runner used to be given the second URL alone; now it is given both.
    (tmp_path / "agent").mkdir()
    save_credentials(tmp_path / "agent", SECOND, RunnerCredentials(RUNNER_ID, TOKEN), "t")
    terminal = Terminal()
    async with RunnerClient(Servers([FIRST, SECOND]), transport=daemons.transport()) as client:
        agent = Agent(client, config(tmp_path), say=terminal)
        async with trio.open_nursery() as nursery:
            await nursery.start(agent.run)
            await server.wait_until(lambda: bool(server.heartbeats))
            agent.stop()
    assert server.registrations == []
    assert daemons.hosts_of(heartbeat())[0] == "first.test"


async def test_a_refusal_is_the_servers_word_and_moves_nothing(
    tmp_path: Path, server: FakeServer, daemons: Daemons
) -> None:
    (tmp_path / "agent").mkdir()
    save_credentials(tmp_path / "agent", FIRST, RunnerCredentials(RUNNER_ID, TOKEN), "t")
    server.token_rejected = True
    terminal = Terminal()
    servers = Servers([FIRST, SECOND], say=terminal)
    async with RunnerClient(servers, transport=daemons.transport()) as client:
        with pytest.raises(AgentError, match="no longer accepts this runner's token"):
            await Agent(client, config(tmp_path), say=terminal).run()
    assert {host for host, _ in daemons.answered} == {"first.test"}
    assert switches(terminal) == []


async def test_a_final_report_taken_before_its_answer_was_lost_counts_as_delivered(
    tmp_path: Path, server: FakeServer, daemons: Daemons
) -> None:
    repo, sha = repo_with(tmp_path, build_yaml("echo fine"))
    server.add_job(job(repo, sha))
    server.lose_final_answer = True
    terminal = Terminal()
    servers = Servers([FIRST, SECOND], say=terminal)
    async with RunnerClient(servers, transport=daemons.transport()) as client:
        agent = Agent(client, config(tmp_path), credential="enroll-me", say=terminal)
        async with trio.open_nursery() as nursery:
            await nursery.start(agent.run)
            await terminal.wait_for("build #1 succeeded")
            agent.stop()

    # The first try was taken; the retry, at the second server, hears the build succeeded.
    assert server.statuses("build-1") == ["running", "succeeded"]
    assert daemons.hosts_of(f"POST /v1/runners/{RUNNER_ID}/jobs/build-1/status") == [
        "first.test",
        "first.test",
        "second.test",
    ]
    assert agent.statistics().outcomes == {"succeeded": 1}
    assert not [line for line in terminal.lines if "refused the final report" in line]
    assert len(switches(terminal)) == 1


# -- the runner channel ---------------------------------------------------------------------


class ChannelServer:
    """A bare runner-channel server on loopback that answers every call ``ok``, until it
    hangs: then it keeps the connection open and answers nothing (a machine gone quiet)."""

    def __init__(self) -> None:
        self.url = ""
        self.answered = 0
        self.hung = False

    async def handle(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        with contextlib.suppress(ConnectionClosed):
            while True:
                frame = json.loads(await ws.get_message())
                if not self.hung:
                    self.answered += 1
                    await ws.send_message(json.dumps({"id": frame["id"], "ok": True}))


async def test_a_channel_to_a_server_gone_quiet_is_left_for_the_next_server(
    tmp_path: Path,
) -> None:
    quiet, other = ChannelServer(), ChannelServer()
    async with trio.open_nursery() as nursery:
        for fake in (quiet, other):
            listener = await nursery.start(serve_websocket, fake.handle, "127.0.0.1", 0, None)
            fake.url = f"http://127.0.0.1:{listener.port}"
        terminal = Terminal()
        servers = Servers([quiet.url, other.url], say=terminal)
        channel = RunnerChannel(
            servers, credentials=RunnerCredentials(RUNNER_ID, TOKEN), timeout=1.0
        )
        await nursery.start(channel.run)
        await channel.heartbeat("online")
        assert quiet.answered == 1
        quiet.hung = True
        with pytest.raises(ConnectionFailed, match="no answer in 1s"):
            await channel.heartbeat("online")
        assert len(switches(terminal)) == 1
        # The open connection to the quiet server is dropped; the call goes to the next.
        await channel.heartbeat("online")
        assert other.answered == 1
        nursery.cancel_scope.cancel()
