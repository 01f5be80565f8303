"""Over its channel the agent keeps its lease with WebSocket pings, and heartbeats only when
its status changes (at most once a minute otherwise); over HTTP it heartbeats as before.

The server's runner lease is short here (1 s) and the agent's heartbeat interval shorter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import trio
from quart_trio import QuartTrio

from oore.runner.agent import Agent, AgentConfig
from oore.runner.channel import ChannelRunnerClient
from oore.runner.client import RunnerStatus
from oore.scheduling import SchedulingConfig
from tests.http.builds_kit import Setup, repo, setup
from tests.http.conftest import (
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
    scm_config,
)
from tests.runner.test_channel import Server, without_channel

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
    "scm_config",
    "setup",
]

LEASE = 1.0
BEAT = LEASE / 4


@pytest.fixture
def scheduling_config() -> SchedulingConfig:
    return SchedulingConfig(runner_lease=LEASE)


class CountingClient(ChannelRunnerClient):
    """Notes the status of every heartbeat the agent sends."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.beats: list[RunnerStatus] = []

    async def heartbeat(
        self, status: RunnerStatus, capabilities: Mapping[str, Any] | None = None
    ) -> None:
        self.beats.append(status)
        await super().heartbeat(status, capabilities)


async def idle_agent(url: str, setup: Setup, work: Path) -> tuple[CountingClient, str]:
    """An agent with no builds to run, for four leases; its client and its runner's status
    as the server then shows it."""
    config = AgentConfig(work_dir=work, name="idle", heartbeat_interval=BEAT, claim_wait=30)
    client = CountingClient(url)
    async with client, trio.open_nursery() as nursery:
        await nursery.start(client.run_channel)
        agent = Agent(client, config, credential=setup.token, say=lambda _: None)
        async with trio.open_nursery() as running:
            await running.start(agent.run)
            await trio.sleep(4 * LEASE)  # the time the lease must be kept over
            assert client.credentials is not None
            shown = await setup.api.get(
                f"/v1/runners/{client.credentials.runner_id}", token=setup.token
            )
            agent.stop()
        nursery.cancel_scope.cancel()
    status: str = shown.body["runner"]["status"]
    return client, status


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as opened:
        yield opened
        opened.cancel_scope.cancel()


async def test_over_the_channel_pings_keep_the_lease_without_heartbeats(
    app: QuartTrio, setup: Setup, tmp_path: Path, nursery: trio.Nursery
) -> None:
    server = Server(nursery, app)
    await server.start()
    client, status = await idle_agent(server.url, setup, tmp_path / "agent")
    assert client.offered is True
    assert status == "online"  # never lost, though its claim was parked all along
    # One heartbeat to say it is online, one to say it is leaving; nothing in between.
    assert client.beats == ["online", "offline"]


async def test_over_http_the_agent_heartbeats_as_before(
    app: QuartTrio, setup: Setup, tmp_path: Path, nursery: trio.Nursery
) -> None:
    server = Server(nursery, app, without_channel(app), lean=False)
    await server.start()
    client, status = await idle_agent(server.url, setup, tmp_path / "agent")
    assert client.offered is False
    assert status == "online"
    assert len(client.beats) >= 8 and set(client.beats) == {"online", "offline"}
