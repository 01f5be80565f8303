"""The runner side of the runner channel against the real app served as the daemon serves it
(the channel on the lean listener, the rest on Hypercorn), on loopback."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from quart_trio import QuartTrio

from oore.runner.agent import Agent, AgentConfig
from oore.runner.channel import ChannelRunnerClient, RunnerChannel
from oore.runner.client import ConnectionFailed, LogChunk, RunnerCredentials, ServerError, retryable
from oore.runner.servers import Servers
from tests.http.builds_kit import Setup, eventually, make_setup, repo, setup
from tests.http.channel_kit import serve_app, services_of
from tests.http.conftest import (
    Api,
    api,
    app,
    apple_config,
    artifacts_config,
    clock,
    events_config,
    guess_limit,
    log_config,
    network_defaults,
    owner_token,
    runtime,
    scheduling_config,
    scm_config,
)

__all__ = [
    "api",
    "app",
    "apple_config",
    "artifacts_config",
    "clock",
    "events_config",
    "guess_limit",
    "log_config",
    "network_defaults",
    "owner_token",
    "repo",
    "runtime",
    "scheduling_config",
    "scm_config",
    "setup",
]

Asgi = Any


class Server:
    """The server on a fixed loopback port that a test can kill and start again; with
    ``lean`` False, without the lean listener (the app alone answers every request)."""

    def __init__(
        self, nursery: trio.Nursery, app: QuartTrio, asgi: Asgi = None, *, lean: bool = True
    ) -> None:
        self._nursery = nursery
        self._app = app
        self._asgi = app if asgi is None else asgi
        self._lean = lean
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._scope: trio.CancelScope | None = None

    async def start(self) -> None:
        self._scope = await self._nursery.start(self._serve)

    async def _serve(self, *, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as inner:
                await inner.start(
                    partial(
                        serve_app,
                        self._asgi,
                        services_of(self._app),
                        bind=f"127.0.0.1:{self.port}",
                        shutdown_trigger=trio.sleep_forever,
                        lean=self._lean,
                    )
                )
                task_status.started(scope)

    def kill(self) -> None:
        """Drop every connection at once, as a crashed daemon would."""
        assert self._scope is not None
        self._scope.cancel()


@pytest.fixture
async def server(app: QuartTrio) -> AsyncIterator[Server]:
    async with trio.open_nursery() as nursery:
        served = Server(nursery, app)
        await served.start()
        yield served
        nursery.cancel_scope.cancel()


def without_channel(app: QuartTrio) -> Asgi:
    """The app as a server without the channel would be: the upgrade is answered 404."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            headers = [(b"content-type", b"application/json")]
            await send({"type": "websocket.http.response.start", "status": 404, "headers": headers})
            body = b'{"error": "No route matches this path", "code": "not_found"}'
            await send({"type": "websocket.http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return wrapped


async def test_round_trips_over_the_channel(server: Server, setup: Setup) -> None:
    runner = await setup.runner()
    channel = RunnerChannel(server.url, credentials=RunnerCredentials(runner.id, runner.token))
    async with trio.open_nursery() as nursery:
        await nursery.start(channel.run)
        await channel.heartbeat("online", {"os": "linux"})
        assert await channel.claim(0) is None
        build = await setup.trigger()
        job = await channel.claim(5)
        assert job is not None and job.build_id == build["id"]
        running = await channel.report(job.build_id, "running")
        assert running["status"] == "running"
        assert await channel.job_state(job.build_id, 0) == "running"
        chunks = [LogChunk(0, "hello", "stdout"), LogChunk(1, "careful", "stderr")]
        assert await channel.append_logs(job.build_id, chunks) == 2
        assert await channel.append_logs(job.build_id, chunks) == 0
        done = await channel.report(job.build_id, "succeeded", exit_code=0)
        assert done["status"] == "succeeded"
        nursery.cancel_scope.cancel()
    shown = await setup.api.get(f"/v1/runners/{runner.id}", token=setup.token)
    assert shown.body["runner"]["capabilities"] == {"os": "linux"}
    assert (await setup.build(build["id"]))["build"]["status"] == "succeeded"
    logs = await setup.api.get(f"/v1/builds/{build['id']}/logs", token=setup.token)
    assert [line["content"] for line in logs.body["logs"]] == ["hello", "careful"]


async def test_server_errors_carry_status_and_code(server: Server, setup: Setup) -> None:
    runner = await setup.runner()
    other = await setup.runner("other")
    async with trio.open_nursery() as nursery:
        channel = RunnerChannel(server.url, credentials=RunnerCredentials(runner.id, runner.token))
        await nursery.start(channel.run)
        with pytest.raises(ServerError) as missing:
            await channel.report("0" * 32, "running")
        assert (missing.value.status, missing.value.code) == (404, "not_found")
        assert not retryable(missing.value)
        # A refused upgrade is the same ServerError the HTTP route would give.
        foreign = RunnerChannel(server.url, credentials=RunnerCredentials(runner.id, other.token))
        await nursery.start(foreign.run)
        with pytest.raises(ServerError) as mismatch:
            await foreign.heartbeat("online")
        assert (mismatch.value.status, mismatch.value.code) == (403, "runner_mismatch")
        nursery.cancel_scope.cancel()


async def test_a_dropped_connection_is_retryable_and_the_next_call_reconnects(
    server: Server, setup: Setup
) -> None:
    runner = await setup.runner()
    channel = RunnerChannel(server.url, credentials=RunnerCredentials(runner.id, runner.token))
    failed: list[BaseException] = []

    async def parked_claim() -> None:
        try:
            await channel.claim(30)
        except ConnectionFailed as exc:
            failed.append(exc)

    async with trio.open_nursery() as nursery:
        await nursery.start(channel.run)
        await channel.heartbeat("online")
        async with trio.open_nursery() as claims:
            claims.start_soon(parked_claim)
            await trio.testing.wait_all_tasks_blocked(0.2)
            server.kill()
        assert len(failed) == 1 and retryable(failed[0])
        with pytest.raises(ConnectionFailed):
            await channel.heartbeat("online")  # nobody listens now
        await server.start()
        await channel.heartbeat("busy")  # a new connection
        nursery.cancel_scope.cancel()
    shown = await setup.api.get(f"/v1/runners/{runner.id}", token=setup.token)
    assert shown.body["runner"]["status"] == "busy"


async def run_agent(url: str, setup: Setup, work: Path) -> tuple[ChannelRunnerClient, list[str]]:
    """An agent on ``url`` until it has run one build; what it said."""
    said: list[str] = []
    config = AgentConfig(
        work_dir=work, name="chan", heartbeat_interval=0.2, claim_wait=1, job_state_wait=1
    )
    client = ChannelRunnerClient(url, say=said.append)
    async with client, trio.open_nursery() as nursery:
        await nursery.start(client.run_channel)
        agent = Agent(client, config, credential=setup.token, say=said.append)
        async with trio.open_nursery() as running:
            await running.start(agent.run)
            build = await setup.trigger()
            await eventually(setup, build["id"], "succeeded", within=30)
            agent.stop()
        nursery.cancel_scope.cancel()
    return client, said


async def test_the_agent_uses_the_channel_when_offered(
    server: Server, setup: Setup, tmp_path: Path
) -> None:
    client, said = await run_agent(server.url, setup, tmp_path / "agent")
    assert client.offered is True
    assert not [line for line in said if "no runner channel" in line]


async def test_the_agent_falls_back_to_http_without_a_channel(
    app: QuartTrio, setup: Setup, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        plain = Server(nursery, app, without_channel(app), lean=False)
        await plain.start()
        client, said = await run_agent(plain.url, setup, tmp_path / "agent")
        nursery.cancel_scope.cancel()
    assert client.offered is False
    assert [line for line in said if "no runner channel" in line] == [
        "the server offers no runner channel; using HTTP"
    ]


async def stored_lines(setup: Setup, build_id: str) -> list[str]:
    logs = await setup.api.get(f"/v1/builds/{build_id}/logs?limit=1000", token=setup.token)
    return [line["content"] for line in logs.body["logs"]]


async def test_a_running_build_moves_to_the_next_server_when_its_server_dies(
    app: QuartTrio, api: Api, owner_token: str, repo: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "go"
    commands = [
        "echo before",
        f'while [ ! -e "{gate}" ]; do sleep 0.02; done',
        "for i in $(seq 1 50); do echo after $i; done",
    ]
    setup = await make_setup(
        api,
        owner_token,
        repo,
        execution_config={"platforms": ["android"], "commands": {"build": commands}},
    )
    said: list[str] = []
    config = AgentConfig(
        work_dir=tmp_path / "agent", name="two", heartbeat_interval=0.2, job_state_wait=1
    )
    async with trio.open_nursery() as nursery:
        # Two listeners of one server: two daemons as far as the runner can tell.
        first, second = Server(nursery, app), Server(nursery, app)
        await first.start()
        await second.start()
        client = ChannelRunnerClient(Servers([first.url, second.url], say=said.append))
        async with client:
            await nursery.start(client.run_channel)
            agent = Agent(client, config, credential=setup.token, say=said.append)
            async with trio.open_nursery() as running:
                await running.start(agent.run)
                build = await setup.trigger()
                with trio.fail_after(30):
                    while "before" not in await stored_lines(setup, build["id"]):  # noqa: ASYNC110
                        await trio.sleep(0.05)
                first.kill()
                gate.touch()
                await eventually(setup, build["id"], "succeeded", within=30)
                agent.stop()
        nursery.cancel_scope.cancel()

    lines = await stored_lines(setup, build["id"])
    assert [line for line in lines if line.startswith("after")] == [
        f"after {i}" for i in range(1, 51)
    ]
    assert client.offered is True
    assert [line for line in said if "switching to" in line] == [
        line for line in said if line.startswith(f"no answer from {first.url} (")
    ]
    assert len([line for line in said if "switching to" in line]) == 1


async def test_a_connection_reset_during_the_handshake_fails_the_call_at_once() -> None:
    """As a dropped network shows itself: the peer accepts, reads the upgrade, resets. The
    call fails then (not at the connect timeout) and may be repeated."""

    async def reset_after_the_request(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, reset_after_the_request, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        channel = RunnerChannel(
            f"http://127.0.0.1:{port}", credentials=RunnerCredentials("r", "t" * 64)
        )
        await nursery.start(channel.run)
        with pytest.raises(ConnectionFailed) as failed:
            await channel.heartbeat("online")
        assert "closed during the handshake" in str(failed.value), failed.value
        assert retryable(failed.value)
        nursery.cancel_scope.cancel()
