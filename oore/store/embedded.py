"""Embedded PostgreSQL (the ``pgserver`` package), kept in the data directory.

The server listens only on a Unix socket. It is started by whoever opens it and stopped
with ``pg_ctl stop`` by the daemon that started it. If a previous daemon was killed and
left the server running, the next one adopts it (its data is intact: PostgreSQL is
crash-safe) and stops it in turn on a clean exit.
"""

from __future__ import annotations

import logging
import subprocess
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

with warnings.catch_warnings():
    # pgserver asks platformdirs for a runtime directory at import; without
    # XDG_RUNTIME_DIR it falls back to /tmp and warns. The fallback is fine for us.
    warnings.simplefilter("ignore")
    from pgserver import postgres_server

    # pgserver keeps the path of its bundled binaries in a private module.
    from pgserver._commands import POSTGRES_BIN_PATH

from oore.errors import StoreError

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A pgserver-managed PostgreSQL cluster in ``pgdata``."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
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
        return str(self._server.get_uri())

    @property
    def pid(self) -> int | None:
        return None if self._server is None else self._server.get_pid()

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


@asynccontextmanager
async def embedded_postgres(pgdata: Path) -> AsyncIterator[str]:
    """Start the embedded cluster in a worker thread, yield its URI, stop it on exit."""
    server = EmbeddedPostgres(pgdata)
    uri = await trio.to_thread.run_sync(server.start)
    try:
        yield uri
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(server.stop)
