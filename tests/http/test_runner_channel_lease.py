"""An open channel is proof of life: WebSocket pings renew the runner's lease (a short one
here), so a runner that only pings keeps its build; once it falls silent, it is lost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import pytest
import trio
from quart_trio import QuartTrio
from wsproto.events import Pong

from oore.scheduling import SchedulingConfig
from tests.http.builds_kit import Setup, eventually, repo, setup
from tests.http.channel_kit import RawChannel, serve_app, services_of

__all__ = ["repo", "setup"]

LEASE = 1.0


@pytest.fixture
def scheduling_config() -> SchedulingConfig:
    return SchedulingConfig(runner_lease=LEASE)


@pytest.fixture
async def served(app: QuartTrio) -> AsyncIterator[str]:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(serve_app, app, services_of(app), shutdown_trigger=stop.wait)
        )
        yield binds[0]
        stop.set()
        nursery.cancel_scope.deadline = trio.current_time() + 5


async def test_pings_keep_the_lease_and_silence_loses_it(served: str, setup: Setup) -> None:
    runner = await setup.runner()
    build = await setup.trigger()
    channel = await RawChannel.open(served, runner.id, runner.token)
    try:
        await channel.send({"id": 1, "op": "claim", "protocol_version": 4, "wait_seconds": 0})
        claimed = await channel.reply()
        assert claimed["job"]["build_id"] == build["id"]
        # Four leases long, the runner sends nothing but pings, four a lease.
        for _ in range(16):
            await channel.ping()
            assert isinstance(await channel.event(), Pong)
            await trio.sleep(LEASE / 4)
        assert (await setup.build(build["id"]))["build"]["status"] == "assigned"
        # Silent (the channel still open), it is lost after a lease and its build requeued.
        await eventually(setup, build["id"], "queued", within=10)
    finally:
        await channel.aclose()
