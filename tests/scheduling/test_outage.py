"""Scheduling resumes from the database after a PostgreSQL outage."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import trio

from oore.domain.tokens import hash_token, new_token
from oore.errors import StoreUnavailable
from oore.runtime import open_runtime
from oore.services.artifact_storage import ArtifactsConfig
from oore.services.clock import SystemClock
from oore.store import Store, open_store
from oore.store.embedded import EmbeddedPostgres
from oore.store.runners import NewRunner
from tests.scheduling.kit import world

NOW = 1_800_000_000
WAIT = 60.0  # seconds for the server's restart and crash recovery on a loaded machine


async def queued_behind_the_dispatchers_back(store: Store) -> str:
    """A queued build committed without telling the dispatcher (its notice was lost)."""
    build = await store.builds.create((await world(store)).build())
    assert build is not None
    return build.id


async def test_after_an_outage_the_dispatcher_holds_what_the_database_holds(
    own_postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    server = own_postgres
    async with open_store(server.uri, pool_size=4, revive=server.revive_in_thread) as store:
        await store.instance.ensure(NOW)
        runner = await store.runners.register(
            NewRunner("r", None, (), 1, hash_token(new_token()), None, None, NOW)
        )
        artifacts = ArtifactsConfig(data_dir=tmp_path / "data")
        async with open_runtime(store, SystemClock(), artifacts_config=artifacts) as runtime:
            scheduling = runtime.scheduling
            build_id = await queued_behind_the_dispatchers_back(store)
            assert await scheduling.claim(runner, 0) is None  # it does not know

            assert server.pid is not None
            os.kill(server.pid, signal.SIGKILL)
            with trio.fail_after(WAIT):
                while True:  # the first query after the kill fails, and starts the outage
                    try:
                        await store.builds.get(build_id)
                    except StoreUnavailable:
                        break
                await store.db.wait_recovered(0)  # the server was restarted, the pool back
                job = await scheduling.claim(runner, WAIT)
            assert job is not None and job.build.id == build_id
            assert (store.db.outages, store.db.recoveries) == (1, 1)
