"""``oored --workers N``: one supervisor process and N worker processes on one port.

The supervisor (:func:`supervise`) does what happens once per data directory: it holds
the data-directory lock, starts the embedded PostgreSQL unless OORED_DATABASE_URL names a
server (and starts it again if it dies), migrates the schema, checks the encryption key
against the database, and reserves the listening port (port 0 becomes a real port here).
Then it starts N workers, each ``python -m oore.daemon`` in worker mode given the
database's URL: a whole daemon but for the lock and the embedded server, its listening
socket bound to the same port with SO_REUSEPORT, so the kernel spreads new connections
over the workers. Worker 0 serves the runners' lane (their channels and the live logs: the
other workers hand it those connections, see oore/http/lean/lanes.py) and the control
socket. "oored listening on ..." is printed once, when every worker serves.

Each worker has a channel to the supervisor, one end of a Unix socket pair. The worker
writes the address it serves on once it is ready; the supervisor closing its end asks
the worker to stop, and so does the supervisor's death (its end closes with it), so no
worker outlives it. Each worker runs in a process group of its own: a Ctrl-C at a
terminal reaches the supervisor only, which stops them in order.

- A worker that exits while the supervisor is not stopping is started again in its slot
  after a backoff that doubles with each recent restart; more restarts than the budget
  within its period stop everything (exit 1). A worker that fails to start the first time
  stops everything too: what stops a fresh worker (its message is in the output above) a
  restart does not fix.
- SIGTERM or SIGINT: every worker is asked to stop and gets OORED_SHUTDOWN_GRACE, plus
  :data:`STOP_MARGIN` to close its actors and database connections; what is left is
  killed, then the embedded PostgreSQL is stopped. A second signal kills them at once.

Every line the processes log carries ``pid=``; the supervisor's events
(``worker.started``, ``.serving``, ``.died``, ``.restarting``, ``.stopped``, ``.killed``)
name the slot (``worker=``) and the worker's ``worker_pid=``.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import trio

from oore.config import Settings
from oore.datadir import (
    PGDATA_DIR,
    PGSERVER_LOG,
    DataDirBusy,
    DataDirLock,
    check_key_fingerprint,
    key_fingerprint,
    load_or_create_key,
)
from oore.errors import ApiError, lone_api_error
from oore.eventlog import event
from oore.services.clock import SystemClock
from oore.store import Store, open_store
from oore.store.embedded import EmbeddedPostgres, embedded_postgres

log = logging.getLogger("oored.workers")

# Beyond the grace: how long a stopping worker has to close its actors and its database
# connections once its last request is answered or cut.
STOP_MARGIN = 5.0
# Seconds between checks that the embedded PostgreSQL still runs.
DATABASE_CHECK_INTERVAL = 5.0
# A worker: the daemon in worker mode (the supervisor adds the flags that say so).
WORKER_COMMAND = (sys.executable, "-m", "oore.daemon")
# The longest line a worker writes on its channel (the address it serves on).
MAX_READY_LINE = 4096


@dataclass(frozen=True)
class RestartPolicy:
    """At most ``budget`` restarts within ``period`` seconds; before each, a pause of
    ``backoff`` seconds doubled for every other restart in the period, up to ``backoff_max``."""

    budget: int = 5
    period: float = 60.0
    backoff: float = 0.5
    backoff_max: float = 8.0


class Restarts:
    """The restarts made within the policy's period, and what the next one may do."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self._times: deque[float] = deque()

    def allow(self, now: float) -> float | None:
        """Count a restart at ``now``: the pause before it, or None once over budget."""
        while self._times and now - self._times[0] >= self.policy.period:
            self._times.popleft()
        if len(self._times) >= self.policy.budget:
            return None
        pause: float = self.policy.backoff * 2 ** len(self._times)
        self._times.append(now)
        return min(self.policy.backoff_max, pause)


async def check_shared_key(store: Store, data_dir: Path) -> bytes:
    """This daemon's encryption key (created if missing), checked against the database's.

    Every daemon sharing a database (and every worker) must hold the same key: the first
    to start on a database records its key's fingerprint there; one with another key gets
    500 ``encryption_key_mismatch``, whose message says to copy the first one's key file.
    """
    key = await trio.to_thread.run_sync(load_or_create_key, data_dir)
    recorded = await store.instance.record_key_fingerprint(key_fingerprint(key))
    check_key_fingerprint(recorded, key, data_dir)
    return key


class SupervisorChannel:
    """A worker's end of its channel to the supervisor."""

    def __init__(self, fd: int) -> None:
        sock = trio.socket.from_stdlib_socket(socket.socket(fileno=fd))
        self._stream = trio.SocketStream(sock)

    async def ready(self, bind: str) -> None:
        """Tell the supervisor this worker serves on ``bind``."""
        # If the supervisor is gone, follow() stops this worker.
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._stream.send_all(f"{bind}\n".encode())

    async def follow(self, stop: trio.Event) -> None:
        """Set ``stop`` when the supervisor closes its end or dies."""
        try:
            while await self._stream.receive_some():
                pass
        except trio.BrokenResourceError:
            pass
        log.info("the supervisor asked this worker to stop, or is gone")
        stop.set()


def _status(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


@dataclass
class _Worker:
    slot: int
    process: trio.Process
    channel: trio.SocketStream

    def ask_to_stop(self) -> None:
        with suppress(OSError):  # it has gone already
            self.channel.socket.shutdown(socket.SHUT_WR)

    async def wait_ready(self) -> str | None:
        """The address the worker serves on, or None if it ended before saying so."""
        line = b""
        try:
            while b"\n" not in line and len(line) < MAX_READY_LINE:
                chunk = await self.channel.receive_some(MAX_READY_LINE)
                if not chunk:
                    return None
                line += chunk
        except trio.BrokenResourceError:
            return None
        return line.split(b"\n", 1)[0].decode(errors="replace")


class Supervisor:
    """Keeps ``settings.workers`` worker processes serving ``listen`` until told to stop."""

    def __init__(
        self,
        settings: Settings,
        listen: str,
        database_url: str,
        policy: RestartPolicy,
        command: Sequence[str] = WORKER_COMMAND,
    ) -> None:
        self.settings = settings
        self.listen = listen
        self.command = command
        self.env = {**os.environ, "OORED_DATABASE_URL": database_url}
        # The workers' lane sockets are named from this (oore/http/lean/lanes.py): unique
        # to this supervisor, so two daemons on one machine never hand each other anything.
        self.lanes = f"oored-lanes-{os.getpid()}-{secrets.token_hex(8)}"
        self.failure: str | None = None
        self.exit_code = 0
        self._stopping = trio.Event()
        self._restarts = Restarts(policy)
        self._serving: dict[int, str] = {}
        # Set once every slot's first worker serves (the "listening" line is printed then).
        self.all_serving = trio.Event()
        self._keepers = trio.CancelScope()

    async def run(self, signals: AsyncIterator[int] | None = None) -> int:
        """Start the workers and keep them until a signal on ``signals`` or a failure;
        then stop them. Returns the exit status."""
        async with trio.open_nursery() as outer:
            if signals is not None:
                outer.start_soon(self._follow_signals, signals)
            with self._keepers:
                async with trio.open_nursery() as keepers:
                    for slot in range(self.settings.workers):
                        keepers.start_soon(self._keep, slot)
                    await self._stopping.wait()
                    keepers.cancel_scope.deadline = (
                        trio.current_time() + self.settings.shutdown_grace_seconds + STOP_MARGIN
                    )
            outer.cancel_scope.cancel()
        return self.exit_code

    def stop(self) -> None:
        """Ask every worker to stop (each keeper sees this and asks its own)."""
        self._stopping.set()

    def stop_now(self) -> None:
        """Kill every worker at once."""
        self._stopping.set()
        self._keepers.cancel()

    async def _follow_signals(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            if self._stopping.is_set():
                log.warning("a second signal (%d): killing the workers now", signum)
                self.stop_now()
            else:
                log.info(
                    "shutting down %d workers (grace %.0fs)",
                    self.settings.workers,
                    self.settings.shutdown_grace_seconds,
                )
                self.stop()

    def _fail(self, message: str, code: int) -> None:
        if self.failure is None:
            self.failure, self.exit_code = message, code
            log.error("%s", message)
        self.stop()

    async def _keep(self, slot: int) -> None:
        """Run a worker in ``slot``, and another when it dies, until the supervisor stops."""
        first = True
        while not self._stopping.is_set():
            worker = await self._start(slot)
            if worker is None:
                return
            bind: str | None = None
            async with trio.open_nursery() as watch:
                watch.start_soon(self._ask_when_stopping, worker)
                try:
                    bind = await worker.wait_ready()
                    if bind is not None:
                        self._ready(slot, worker.process.pid, bind)
                    code = await worker.process.wait()
                finally:
                    watch.cancel_scope.cancel()
                    with trio.CancelScope(shield=True):
                        if worker.process.returncode is None:
                            event(log, "worker.killed", worker=slot, worker_pid=worker.process.pid)
                            worker.process.kill()
                            await worker.process.wait()
                        await worker.channel.aclose()
            self._serving.pop(slot, None)
            pid = worker.process.pid
            if self._stopping.is_set():
                event(log, "worker.stopped", worker=slot, worker_pid=pid, status=_status(code))
                return
            event(
                log,
                "worker.died",
                level=logging.WARNING,
                worker=slot,
                worker_pid=pid,
                status=_status(code),
            )
            if first and bind is None:
                self._fail(
                    f"worker {slot} (pid {pid}) did not start ({_status(code)}); stopping",
                    code if code > 0 else 1,
                )
                return
            first = False
            pause = self._restarts.allow(trio.current_time())
            if pause is None:
                policy = self._restarts.policy
                self._fail(
                    f"workers died more than {policy.budget} times within "
                    f"{policy.period:.0f}s; stopping (see the messages above)",
                    1,
                )
                return
            event(log, "worker.restarting", worker=slot, after_s=pause)
            with trio.move_on_after(pause):
                await self._stopping.wait()

    async def _ask_when_stopping(self, worker: _Worker) -> None:
        await self._stopping.wait()
        worker.ask_to_stop()

    async def _start(self, slot: int) -> _Worker | None:
        ours, theirs = socket.socketpair()
        try:
            process = await trio.lowlevel.open_process(
                [
                    *self.command,
                    "--listen",
                    self.listen,
                    "--data-dir",
                    str(self.settings.data_dir),
                    "--log-format",
                    self.settings.log_format,
                    "--workers",
                    str(self.settings.workers),
                    "--worker-slot",
                    str(slot),
                    "--worker-channel",
                    str(theirs.fileno()),
                    "--worker-lanes",
                    self.lanes,
                ],
                env=self.env,
                pass_fds=(theirs.fileno(),),
                process_group=0,
            )
        except OSError as exc:
            ours.close()
            self._fail(f"could not start worker {slot}: {exc}", 1)
            return None
        finally:
            theirs.close()
        event(log, "worker.started", worker=slot, worker_pid=process.pid)
        return _Worker(slot, process, trio.SocketStream(trio.socket.from_stdlib_socket(ours)))

    def _ready(self, slot: int, pid: int, bind: str) -> None:
        self._serving[slot] = bind
        event(log, "worker.serving", worker=slot, worker_pid=pid)
        if self._stopping.is_set() or self.all_serving.is_set():
            return
        if len(self._serving) == self.settings.workers:
            self.all_serving.set()
            print(
                f"oored listening on {bind} (data directory {self.settings.data_dir}, "
                f"{self.settings.workers} worker processes)",
                flush=True,
            )


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reserve_port(host: str, port: int) -> socket.socket:
    """A socket holding ``host:port`` (a free port for port 0) for the workers' sockets.
    It does not listen: connections go to the workers' listening sockets only.

    A given port is first bound without SO_REUSEPORT, which fails if anything holds it:
    the workers must not join another program's sockets on it (any of the same user's
    that set SO_REUSEPORT would let them).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if port != 0:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[str]:
    """The database's URL: OORED_DATABASE_URL, else the embedded server, kept running."""
    if settings.database_url:
        yield settings.database_url
        return
    async with (
        embedded_postgres(
            settings.data_dir / PGDATA_DIR, pgserver_log=settings.data_dir / PGSERVER_LOG
        ) as server,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(_keep_running, server)
        yield server.uri
        nursery.cancel_scope.cancel()


async def _keep_running(server: EmbeddedPostgres) -> None:
    """Start the embedded server again if it dies (the workers' pools reconnect to it)."""
    while True:
        await trio.sleep(DATABASE_CHECK_INTERVAL)
        try:
            await server.revive_in_thread()
        except ApiError as exc:
            log.warning("%s", exc.message)


def check_connections(settings: Settings, limit: int) -> None:
    """Warn when the workers' pools together may ask more of the server than it takes."""
    wanted = settings.workers * settings.database_pool_size
    if wanted > limit:
        event(
            log,
            "database.connections_short",
            level=logging.WARNING,
            workers=settings.workers,
            pool_size=settings.database_pool_size,
            wanted=wanted,
            server_takes=limit,
            msg="fewer workers, a smaller OORED_DB_POOL_SIZE or a higher max_connections",
        )


async def _supervise(settings: Settings, port: int, policy: RestartPolicy) -> int:
    # Signals are taken from the start: one arriving while the database starts stops the
    # supervisor as soon as its workers can be told.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with _database(settings) as url:
            async with open_store(url, pool_size=2) as store:
                await store.instance.ensure(SystemClock().now())
                await check_shared_key(store, settings.data_dir)
                check_connections(settings, await store.connection_limit())
            supervisor = Supervisor(settings, _address(settings.listen_host, port), url, policy)
            code = await supervisor.run(signals)
    if supervisor.failure is not None:
        print(f"oored: {supervisor.failure}", file=sys.stderr)
    return code


def exit_status(run: Callable[[], int]) -> int:
    """``run()``'s exit status, a failure to start told in one line on stderr: 1 for a
    data directory in use or an error of ours (alone, or alone in a task group), 130 for
    an interrupt."""
    try:
        return run()
    except DataDirBusy as exc:
        print(f"oored: {exc}", file=sys.stderr)
        return 1
    except ApiError as exc:
        print(f"oored: {exc.message}", file=sys.stderr)
        return 1
    except BaseExceptionGroup as group:
        error = lone_api_error(group)
        if error is None:
            raise
        print(f"oored: {error.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def supervise(settings: Settings, policy: RestartPolicy | None = None) -> int:
    """Run ``oored --workers N`` until stopped; the exit status."""
    if not hasattr(socket, "SO_REUSEPORT"):
        print("oored: --workers above 1 needs SO_REUSEPORT (Linux)", file=sys.stderr)
        return 2
    return exit_status(lambda: _supervise_locked(settings, policy))


def _supervise_locked(settings: Settings, policy: RestartPolicy | None) -> int:
    with DataDirLock(settings.data_dir):
        try:
            reserved = _reserve_port(settings.listen_host, settings.listen_port)
        except OSError as exc:
            print(f"oored: cannot listen on {settings.listen}: {exc.strerror}", file=sys.stderr)
            return 1
        with reserved:
            port: int = reserved.getsockname()[1]
            return trio.run(_supervise, settings, port, policy or RestartPolicy())
