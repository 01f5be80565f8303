"""``oored``: the daemon. Opens the data directory, the database and the app, then serves."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial

import trio
from hypercorn.config import Config as HypercornConfig
from pydantic import SecretStr

from oore.config import ConfigError, Settings, WorkerRole, daemon_args
from oore.control import serve_control
from oore.datadir import (
    PGDATA_DIR,
    PGSERVER_LOG,
    SOCKET_FILE,
    DataDirLock,
)
from oore.domain.artifact_storage import EnvironmentStorage
from oore.domain.crypto import SecretBox
from oore.eventlog import configure_logging
from oore.http.app import create_app
from oore.http.lean.lanes import API_NICENESS, RUNNERS_SLOT, Lanes
from oore.http.lean.runner_channel import lean_routes
from oore.http.metrics import app_metrics
from oore.http.server import (
    RESERVED_FILES,
    ConnectionLimits,
    connection_cap,
    open_files_limit,
    raise_open_files_limit,
    serve,
)
from oore.protocol.runner import MAX_FRAME
from oore.runtime import ClusterConfig, Runtime, open_runtime
from oore.scheduling import Scheduling, SchedulingConfig
from oore.services.apple import AppleConfig
from oore.services.artifact_storage import ArtifactsConfig
from oore.services.clock import SystemClock
from oore.services.events import EventsConfig
from oore.services.logs import LogConfig
from oore.services.network import NetworkDefaults
from oore.services.scm import ScmConfig
from oore.store import Store, open_store
from oore.store.database import Revive
from oore.store.embedded import embedded_postgres
from oore.timeslice import request_slice
from oore.workers import SupervisorChannel, check_shared_key, exit_status, supervise

log = logging.getLogger("oored")


# Seconds between checks that the database still answers while nothing else queries it.
DATABASE_CHECK_INTERVAL = 5.0


@dataclass(frozen=True)
class DatabaseTarget:
    """Where the database is, and how to bring it back if it dies (embedded only)."""

    url: str
    revive: Revive | None = None


@asynccontextmanager
async def open_database_url(settings: Settings) -> AsyncIterator[DatabaseTarget]:
    """OORED_DATABASE_URL if set, else the embedded PostgreSQL in the data directory.

    The embedded server is restarted by the store when it dies; an external one is
    waited for (the store reconnects once it answers again).
    """
    if settings.database_url:
        yield DatabaseTarget(settings.database_url)
        return
    async with embedded_postgres(
        settings.data_dir / PGDATA_DIR, pgserver_log=settings.data_dir / PGSERVER_LOG
    ) as server:
        yield DatabaseTarget(server.uri, server.revive_in_thread)


def scheduling_config(settings: Settings) -> SchedulingConfig:
    return SchedulingConfig(
        runner_lease=settings.runner_lease_seconds,
        assign_timeout=settings.assign_timeout_seconds,
        build_timeout=settings.build_timeout_seconds,
    )


def log_config(settings: Settings) -> LogConfig:
    return LogConfig(
        lines_per_build=settings.log_lines_per_build,
        viewers_per_build=settings.log_viewers_per_build,
        viewers_per_user=settings.log_viewers_per_user,
        viewers_total=settings.log_viewers_total,
    )


def events_config(settings: Settings) -> EventsConfig:
    return EventsConfig(
        viewers_per_user=settings.event_viewers_per_user,
        viewers_total=settings.event_viewers_total,
    )


def artifacts_config(settings: Settings, key: bytes) -> ArtifactsConfig:
    def plain(secret: SecretStr | None) -> str | None:
        return None if secret is None else secret.get_secret_value()

    return ArtifactsConfig(
        data_dir=settings.data_dir,
        secrets=SecretBox(key),
        environment=EnvironmentStorage(
            bucket=settings.s3_bucket,
            access_key_id=plain(settings.aws_access_key_id),
            secret_access_key=plain(settings.aws_secret_access_key),
            endpoint=settings.s3_endpoint,
            region=settings.s3_region,
        ),
        public_url=settings.public_url,
        artifact_delivery_url=settings.artifact_delivery_url,
        ttl_days=settings.artifact_ttl_days,
    )


LISTEN_BACKLOG = 4096
GIL_SWITCH_INTERVAL = 0.0005  # seconds
# Objects allocated between young collections; Python's default is 700.
GC_YOUNG_THRESHOLD = 50_000


def hypercorn_config(settings: Settings, *, shared_port: bool = False) -> HypercornConfig:
    """With ``shared_port`` (a worker of ``oored --workers N``) the listening socket takes
    SO_REUSEPORT, which Hypercorn sets when told of more than one worker: the kernel then
    spreads new connections over every worker's socket on the port."""
    config = HypercornConfig()
    host, port = settings.listen_host, settings.listen_port
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    if shared_port:
        config.workers = settings.workers
    config.graceful_timeout = settings.shutdown_grace_seconds
    # A fleet reconnecting at once (a daemon restart, a thousand runners starting) opens
    # more connections than Hypercorn's default backlog of 100 holds; the kernel caps this
    # at net.core.somaxconn.
    config.backlog = LISTEN_BACKLOG
    # A runner channel frame over this is refused (close 1009), like a JSON body over 2 MiB
    # (the daemon serves the channel on its lean listener; this holds for other WebSockets).
    config.websocket_max_message_size = MAX_FRAME
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    # An idle keep-alive connection is closed after this; so is one that sends no request.
    config.keep_alive_timeout = settings.keepalive_seconds
    return config


def connection_limits(settings: Settings) -> ConnectionLimits:
    """The connection cap leaves descriptors for the database pool and files."""
    cap = connection_cap(
        settings.max_connections,
        open_files_limit(),
        reserved=settings.database_pool_size + RESERVED_FILES,
    )
    return ConnectionLimits(max_connections=cap, keepalive_seconds=settings.keepalive_seconds)


async def run_daemon(
    settings: Settings,
    role: WorkerRole | None = None,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until SIGINT/SIGTERM, then stop within the configured grace period.

    As a worker of ``oored --workers N`` (``role``), it shares the port with the other
    workers, tells the supervisor where it listens instead of printing it, stops when the
    supervisor closes the channel (or dies), and serves the control socket only in slot 0.
    """
    clock = SystemClock()
    async with AsyncExitStack() as stack:
        target = await stack.enter_async_context(open_database_url(settings))
        store: Store = await stack.enter_async_context(
            open_store(
                target.url,
                pool_size=settings.database_pool_size,
                revive=target.revive,
                watch_interval=DATABASE_CHECK_INTERVAL,
                # and for the database sessions a runner's claim waits on, too
                short_slices=_runs_runners_lane(role),
            )
        )
        await store.instance.ensure(clock.now())
        key = await check_shared_key(store, settings.data_dir)
        runtime: Runtime = await stack.enter_async_context(
            open_runtime(
                store,
                clock,
                scheduling_config(settings),
                log_config(settings),
                artifacts_config(settings, key),
                NetworkDefaults(
                    settings.cors_origins,
                    settings.public_url,
                    settings.artifact_delivery_url,
                    settings.host_names,
                    warpgate_ticket=None
                    if settings.warpgate_ticket is None
                    else settings.warpgate_ticket.get_secret_value(),
                ),
                scm_config=ScmConfig(
                    github_api_url=settings.github_api_url,
                    github_web_url=settings.github_web_url,
                ),
                apple_config=AppleConfig(base_url=settings.app_store_connect_api_base_url),
                cookie_secure=settings.cookie_secure,
                events_config=events_config(settings),
                cluster_config=ClusterConfig(leader_lease=settings.leader_lease_seconds),
                guess_limit=settings.credential_guess_limit,
            )
        )
        app_services = runtime.app_services(store)
        app = create_app(app_services, access_log=settings.access_log)
        metrics = app_metrics(app)
        lanes = None
        if role is not None and role.lanes and settings.workers > 1:
            lanes = Lanes(role.lanes, role.slot, settings.workers)
            stack.callback(lanes.close)
            metrics.count_lanes(lanes)
        lean = lean_routes(
            app_services, access_log=settings.access_log, metrics=metrics, lanes=lanes
        )
        stop = trio.Event()
        supervisor = None if role is None else SupervisorChannel(role.channel)
        async with trio.open_nursery() as background:
            background.start_soon(_wait_for_signal, stop)
            if supervisor is not None:
                background.start_soon(supervisor.follow, stop)
            if role is None or role.slot == 0:
                await background.start(
                    serve_control, settings.data_dir / SOCKET_FILE, runtime.identity
                )
            async with trio.open_nursery() as http:
                http.start_soon(
                    _bound_shutdown, stop, http.cancel_scope, settings, runtime.scheduling
                )
                limits = connection_limits(settings)
                binds: list[str] = await http.start(
                    partial(
                        serve,
                        app,
                        hypercorn_config(settings, shared_port=role is not None),
                        limits,
                        shutdown_trigger=stop.wait,
                        lean=lean,
                    )
                )
                log.info("serving at most %d connections at once", limits.max_connections)
                if supervisor is None:
                    print(
                        f"oored listening on {binds[0]} (data directory {settings.data_dir})",
                        flush=True,
                    )
                else:  # the supervisor says it once, for all its workers
                    await supervisor.ready(binds[0])
                runtime.artifacts.storage.listening_on(binds[0])
                task_status.started(binds)
            background.cancel_scope.cancel()
        log.info("stopped serving; closing actors and the database")


async def _bound_shutdown(
    stop: trio.Event, scope: trio.CancelScope, settings: Settings, scheduling: Scheduling
) -> None:
    """Once asked to stop, answer the long-polls, give requests the grace period, then cut."""
    await stop.wait()
    log.info("shutting down (grace %.0fs)", settings.shutdown_grace_seconds)
    scheduling.end_long_polls()
    scope.deadline = trio.current_time() + settings.shutdown_grace_seconds + 1


async def _wait_for_signal(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if stop.is_set():
                raise KeyboardInterrupt  # a second signal: stop now
            stop.set()


def main(argv: list[str] | None = None) -> int:
    try:
        settings, role = daemon_args(argv)
    except ConfigError as exc:
        print(f"oored: {exc}", file=sys.stderr)
        return 2
    several = role is not None or settings.workers > 1
    configure_logging(settings.log_format, pid=several)
    if role is None and settings.workers > 1:
        return supervise(settings)
    # The database driver runs on its own thread (see oore/store/bridge.py); each query's
    # socket write and read releases the GIL, and getting it back from a busy event-loop
    # thread takes up to the switch interval (5 ms by default) — per query, under load.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    # Thousands of open connections and actors make a big, long-lived heap, and a full
    # collection walks all of it. Collecting the young generation less often lets the
    # short-lived objects of a request die before they are promoted, so full collections
    # come rarely; what was loaded at start is frozen out of them altogether.
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    # Every connection holds a descriptor; the default soft limit (often 1,024) is far
    # below what a fleet of runners and browsers keeps open.
    log.info("open files limit %d", raise_open_files_limit())
    return exit_status(lambda: _serve(settings, role))


def _runs_runners_lane(role: WorkerRole | None) -> bool:
    return role is not None and bool(role.lanes) and role.slot == RUNNERS_SLOT


def _serve(settings: Settings, role: WorkerRole | None) -> int:
    # Both set before any thread starts, as every thread of the process takes them.
    if _runs_runners_lane(role):
        # A runner's claim waits on this worker's wake-ups; short slices shorten them.
        granted = request_slice()
        log.info("short CPU slices for the runners' lane: %s", "yes" if granted else "no")
    elif role is not None and role.lanes:
        # On a busy machine the runners' worker comes first.
        os.nice(API_NICENESS)
    if role is not None:  # the supervisor holds the lock and the embedded PostgreSQL
        trio.run(run_daemon, settings, role)
    else:
        with DataDirLock(settings.data_dir):
            trio.run(run_daemon, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
