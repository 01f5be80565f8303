"""Embedded PostgreSQL (the ``pgserver`` package), kept in the data directory.

The server listens only on a Unix socket. It is started by whoever opens it and stopped
with ``pg_ctl stop`` by the daemon that started it. If a previous daemon was killed and
left the server running, the next one adopts it (its data is intact: PostgreSQL is
crash-safe) and stops it in turn on a clean exit. If the server dies while the daemon
runs, :meth:`EmbeddedPostgres.revive` starts it again on the same data directory and
socket, so the connection URI does not change and the pool reconnects to it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from pathlib import Path

import trio

with warnings.catch_warnings():
    # pgserver asks platformdirs for a runtime directory at import; without
    # XDG_RUNTIME_DIR it falls back to /tmp and warns. The fallback is fine for us.
    warnings.simplefilter("ignore")
    from pgserver import postgres_server

    # pgserver keeps the path of its bundled binaries in a private module (re-exported
    # for tests that drive pg_ctl themselves).
    from pgserver._commands import POSTGRES_BIN_PATH as POSTGRES_BIN_PATH
    from pgserver.utils import PostmasterInfo

from oore.errors import StoreError
from oore.eventlog import divert, event

log = logging.getLogger(__name__)

# pg_ctl waits this long for a restarted server to accept connections (crash recovery
# replays the WAL written since the last checkpoint first).
RESTART_TIMEOUT = 60


class EmbeddedPostgres:
    """A pgserver-managed PostgreSQL cluster in ``pgdata``."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self.uri = ""
        self._server: postgres_server.PostgresServer | None = None

    def start(self) -> str:
        """Initialise (first time) and start the cluster; return its connection URI."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._server = postgres_server.get_server(self.pgdata, cleanup_mode=None)
        except (OSError, subprocess.SubprocessError, AssertionError) as exc:
            log_file = self.pgdata / "log"
            tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
            raise StoreError(
                "embedded_postgres_failed",
                f"embedded PostgreSQL in {self.pgdata} did not start: {exc}",
                details=tail or None,
            ) from exc
        self.uri = str(self._server.get_uri())
        return self.uri

    @property
    def pid(self) -> int | None:
        return None if self._server is None else self._server.get_pid()

    def running(self) -> bool:
        """Whether the postmaster named in ``postmaster.pid`` is alive (not a zombie)."""
        try:
            info = PostmasterInfo.read_from_pgdata(self.pgdata)
        except (OSError, ValueError, KeyError, IndexError):  # half written: starting up
            return True
        return info is not None and _alive(info.pid)

    def revive(self) -> bool:
        """Start the cluster again if its postmaster died; True if it was restarted.

        Blocking (run it in a worker thread). Same data directory and socket directory as
        the first start, so the URI stays valid. The stale ``postmaster.pid`` and socket
        lock of the dead server are removed first (PostgreSQL takes a PID that has not been
        reaped yet for a live server); its own shared-memory interlock still refuses to
        start while a backend of the dead server lingers, and the caller retries. Raises
        StoreError if it fails.
        """
        server = self._server
        if server is None or self.running():
            return False
        with server_lock():
            if self.running():
                return False
            return self._restart(server)

    def _restart(self, server: postgres_server.PostgresServer) -> bool:
        socket_dir = server.get_postmaster_info().socket_dir or self.pgdata
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        for lock in socket_dir.glob(".s.PGSQL.*.lock"):
            if not _alive(_lock_pid(lock)):
                lock.unlink(missing_ok=True)
        try:
            subprocess.run(
                [
                    str(POSTGRES_BIN_PATH / "pg_ctl"),
                    "-D",
                    str(self.pgdata),
                    "-w",
                    "-t",
                    str(RESTART_TIMEOUT),
                    "-o",
                    '-h ""',
                    "-o",
                    f"-k {socket_dir}",
                    "-l",
                    str(self.pgdata / "log"),
                    "start",
                ],
                user=server.system_user,
                check=True,
                capture_output=True,
                timeout=RESTART_TIMEOUT + 10,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            said = getattr(exc, "stderr", None) or b""
            reason = said.decode(errors="replace").strip().splitlines()[-1:] or [str(exc)]
            raise StoreError(
                "embedded_postgres_failed",
                f"embedded PostgreSQL in {self.pgdata} did not restart: {reason[0]}",
            ) from exc
        log.info("embedded PostgreSQL in %s restarted", self.pgdata)
        return True

    async def revive_in_thread(self) -> bool:
        """:meth:`revive` from trio; a cancelled caller abandons the waiting pg_ctl."""
        return await trio.to_thread.run_sync(self.revive, abandon_on_cancel=True)

    def stop(self) -> None:
        """Stop the cluster (fast shutdown: sessions rolled back, committed data kept)."""
        server = self._server
        if server is None:
            return
        self._server = None
        try:
            subprocess.run(
                [
                    str(POSTGRES_BIN_PATH / "pg_ctl"),
                    "-D",
                    str(self.pgdata),
                    "-m",
                    "fast",
                    "-w",
                    "stop",
                ],
                user=server.system_user,
                check=True,
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("embedded PostgreSQL did not stop cleanly: %s", exc)


def server_lock() -> AbstractContextManager[object]:
    """pgserver's inter-process lock, held while an embedded server starts or stops.

    :meth:`EmbeddedPostgres.revive` takes it too, so it never races another process
    starting the same cluster; whoever holds it delays a restart.
    """
    lock: AbstractContextManager[object] = postgres_server.PostgresServer._lock
    return lock


def _lock_pid(lock: Path) -> int:
    """The PID in a PostgreSQL lock file (first line), or 0 if it cannot be read."""
    try:
        return int(lock.read_text().split("\n", 1)[0].strip() or 0)
    except (OSError, ValueError):
        return 0


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: it only waits to be reaped)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1]
    except (OSError, IndexError):
        return True
    return state != "Z"


@asynccontextmanager
async def embedded_postgres(
    pgdata: Path, *, pgserver_log: Path | None = None
) -> AsyncIterator[EmbeddedPostgres]:
    """Start the embedded cluster in a worker thread, yield it (``.uri``), stop it on exit.

    With ``pgserver_log``, pgserver's messages (initdb's output, each command it runs, its
    clean-up at exit) go to that file for the rest of the process instead of to the
    daemon's log, which says where in one line.
    """
    if pgserver_log is not None:
        divert("pgserver", pgserver_log)
    server = EmbeddedPostgres(pgdata)
    await trio.to_thread.run_sync(server.start)
    event(
        log,
        "postgres.started",
        pgdata=pgdata,
        server_log=pgdata / "log",
        pgserver_log=pgserver_log,
    )
    try:
        yield server
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(server.stop)
