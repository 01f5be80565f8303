"""Settings held in memory by two daemons sharing one database: a change saved through one
is in force on the other, told by a notice, or found by the fallback poll when the notice
was lost."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import trio

from oore.domain.artifact_storage import StorageProvider, StorageUpdate, StoredStorageSettings
from oore.domain.builds import QueuedBuild
from oore.domain.crypto import SecretBox
from oore.domain.network import LOCAL_ORIGINS, NetworkSettings
from oore.domain.setup import Preferences
from oore.domain.users import Role, Session, UserStatus
from oore.errors import StoreUnavailable
from oore.runtime import ClusterConfig, Runtime, open_runtime
from oore.scheduling.dispatcher import RunnerSlot
from oore.services.artifact_storage import ArtifactsConfig
from oore.services.clock import SystemClock
from oore.storage.local import LocalStorage
from oore.storage.s3 import S3Storage
from oore.store import Store, open_store
from oore.store.embedded import EmbeddedPostgres
from tests.s3_kit import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Server, s3_server

__all__ = ["s3_server"]

CLOCK = SystemClock()
KEY = SecretBox(bytes(range(32)))  # every daemon of an installation has the same key
BOUND = 20.0  # seconds a change may take to reach the other daemon on a loaded machine
NEVER = 3600.0  # a fallback poll that does not come within a test
ORIGIN = "https://new.example.com"
LOOPBACK = "127.0.0.1"


@asynccontextmanager
async def daemon(
    database_url: str, data_dir: Path, *, settings_poll_every: float
) -> AsyncIterator[tuple[Store, Runtime]]:
    """One daemon's store and runtime on the shared database."""
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(database_url, pool_size=4))
        await store.instance.ensure(CLOCK.now())
        runtime = await stack.enter_async_context(
            open_runtime(
                store,
                CLOCK,
                artifacts_config=ArtifactsConfig(data_dir=data_dir, secrets=KEY),
                cluster_config=ClusterConfig(settings_poll_every=settings_poll_every),
            )
        )
        yield store, runtime


async def owner(store: Store) -> Session:
    user = await store.users.create(
        email="o@example.com", role=Role.OWNER, status=UserStatus.ACTIVE, subject=None, now=1
    )
    return Session("0" * 64, user, None)


async def until(condition: Callable[[], bool]) -> None:
    """Until another daemon makes ``condition()`` true (bounded)."""
    with trio.fail_after(BOUND):
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.01)


async def test_network_settings_saved_on_one_daemon_are_told_to_the_other(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        daemon(database_url, tmp_path / "a", settings_poll_every=NEVER) as (store, a),
        daemon(database_url, tmp_path / "b", settings_poll_every=NEVER) as (_, b),
    ):
        await until(lambda: b.notices.listening)
        session = await owner(store)
        await a.instance_settings.update_network(
            session,
            public_url="https://ci.example.org",
            artifact_delivery_url=None,
            allowed_origins=[ORIGIN, "https://ci.example.org"],
            client_ip=LOOPBACK,
        )
        await until(lambda: ORIGIN in b.network.allowed_origins)
        assert b.network.to_json() == a.network.to_json()
        assert b.network.public_url == "https://ci.example.org"
        assert b.network.serves("ci.example.org") and b.network.serves("new.example.com")
        # Origins saved on B go back to A the same way.
        await b.instance_settings.update_network(
            session,
            public_url=None,
            artifact_delivery_url=None,
            allowed_origins=[],
            client_ip=LOOPBACK,
        )
        await until(lambda: ORIGIN not in a.network.allowed_origins)
        assert a.network.allowed_origins == LOCAL_ORIGINS
        assert not a.network.serves("ci.example.org")


async def test_storage_settings_saved_on_one_daemon_rebuild_the_others_backend(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        daemon(database_url, tmp_path / "a", settings_poll_every=NEVER) as (store, a),
        daemon(database_url, tmp_path / "b", settings_poll_every=NEVER) as (_, b),
    ):
        await until(lambda: b.notices.listening)
        storage = b.artifacts.storage
        assert storage.backend.provider is StorageProvider.LOCAL
        session = await owner(store)
        await a.artifacts.storage.update(session, StorageUpdate(StorageProvider.DISABLED))
        await until(lambda: storage.backend.provider is StorageProvider.DISABLED)
        shared = tmp_path / "shared-artifacts"
        await a.artifacts.storage.update(
            session, StorageUpdate(StorageProvider.LOCAL, local_base_dir=str(shared))
        )
        await until(lambda: storage.backend.provider is StorageProvider.LOCAL)
        backend = storage.backend
        assert isinstance(backend, LocalStorage) and backend.base_dir == shared.resolve()


async def test_s3_keys_saved_on_one_daemon_are_used_by_the_other(
    database_url: str, tmp_path: Path, s3_server: S3Server
) -> None:
    bucket = await trio.to_thread.run_sync(s3_server.new_bucket)
    async with (
        daemon(database_url, tmp_path / "a", settings_poll_every=NEVER) as (store, a),
        daemon(database_url, tmp_path / "b", settings_poll_every=NEVER) as (_, b),
    ):
        await until(lambda: b.notices.listening)
        session = await owner(store)
        await a.artifacts.storage.update(
            session,
            StorageUpdate(
                StorageProvider.S3,
                s3_bucket=bucket,
                s3_region=REGION,
                s3_endpoint=s3_server.endpoint,
                access_key_id=ACCESS_KEY_ID,
                secret_access_key=SECRET_ACCESS_KEY,
            ),
        )
        storage = b.artifacts.storage
        await until(lambda: storage.backend.provider is StorageProvider.S3)
        backend = storage.backend
        assert isinstance(backend, S3Storage) and backend.bucket == bucket


async def test_a_change_whose_notice_was_lost_is_found_by_the_poll(
    database_url: str, tmp_path: Path
) -> None:
    """A daemon that died between its commit and its notice: only the rows tell."""
    async with (
        daemon(database_url, tmp_path / "b", settings_poll_every=0.2) as (_, b),
        open_store(database_url, pool_size=1) as dying,
    ):
        await dying.settings.save_network(NetworkSettings(None, None, (ORIGIN,)), CLOCK.now())
        await until(lambda: ORIGIN in b.network.allowed_origins)
        assert b.network.source == "database"
        await dying.artifacts.save_storage_settings(
            StoredStorageSettings(StorageProvider.DISABLED, updated_at=CLOCK.now())
        )
        storage = b.artifacts.storage
        await until(lambda: storage.backend.provider is StorageProvider.DISABLED)


async def test_a_second_change_within_the_same_second_is_found_by_the_poll(
    database_url: str, tmp_path: Path
) -> None:
    """The poll compares whole rows, not their timestamps (seconds)."""
    now = CLOCK.now()
    async with (
        daemon(database_url, tmp_path / "b", settings_poll_every=0.2) as (_, b),
        open_store(database_url, pool_size=1) as dying,
    ):
        await dying.settings.save_network(NetworkSettings(None, None, (ORIGIN,)), now)
        await until(lambda: ORIGIN in b.network.allowed_origins)
        later = "https://later.example.com"
        await dying.settings.save_network(NetworkSettings(None, None, (later,)), now)
        await until(lambda: later in b.network.allowed_origins)
        assert ORIGIN not in b.network.allowed_origins


async def test_a_reload_that_cannot_read_the_settings_keeps_the_backend_in_use(
    own_postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    """A notice heard while the database is down must not disable artifact storage."""
    server = own_postgres
    async with daemon(server.uri, tmp_path / "a", settings_poll_every=NEVER) as (store, a):
        storage = a.artifacts.storage
        in_use = storage.backend
        assert in_use.provider is StorageProvider.LOCAL
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        with trio.fail_after(BOUND):
            while True:  # the first query after the kill fails, and starts the outage
                try:
                    await store.settings.network()
                except StoreUnavailable:
                    break
        with pytest.raises(StoreUnavailable):
            await storage.reload()
        assert storage.backend is in_use


async def test_the_runner_pause_saved_on_one_daemon_holds_on_the_other(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        daemon(database_url, tmp_path / "a", settings_poll_every=NEVER) as (store, a),
        daemon(database_url, tmp_path / "b", settings_poll_every=NEVER) as (_, b),
    ):
        await until(lambda: b.notices.listening)
        session = await owner(store)

        async def pause(paused: bool) -> None:
            await a.instance_settings.update_preferences(
                session,
                key_storage_mode="file",
                runtime_mode=None,
                remote_auth_mode=None,
                direct_macos_runner_paused=paused,
                client_ip=LOOPBACK,
            )

        await pause(True)
        assert a.scheduling.direct_macos_paused
        await until(lambda: b.scheduling.direct_macos_paused)
        # B's claims obey it: nothing for a Mac, the same build for another runner.
        b.scheduling.dispatcher.enqueue([QueuedBuild("b1", frozenset(), 1)])
        assert (
            b.scheduling.dispatcher.take(RunnerSlot("mac", frozenset(), 1, direct_macos=True))
            is None
        )
        taken = b.scheduling.dispatcher.take(RunnerSlot("linux", frozenset(), 1))
        assert taken is not None and taken.id == "b1"
        await pause(False)
        await until(lambda: not b.scheduling.direct_macos_paused)


async def test_a_runner_pause_whose_notice_was_lost_is_found_by_the_poll(
    database_url: str, tmp_path: Path
) -> None:
    async with open_store(database_url, pool_size=1) as dying:
        await dying.instance.set_preferences(Preferences(direct_macos_runner_paused=True), 1)
        async with daemon(database_url, tmp_path / "b", settings_poll_every=0.2) as (_, b):
            assert b.scheduling.direct_macos_paused  # as saved when it started
            await dying.instance.set_preferences(Preferences(), 2)
            await until(lambda: not b.scheduling.direct_macos_paused)
