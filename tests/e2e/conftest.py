"""End-to-end: the real ``oored`` process on a free loopback port."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import httpx
import pytest

from oore.datadir import PGDATA_DIR
from oore.store.embedded import EmbeddedPostgres
from tests.conftest import scratch_dir

START_TIMEOUT = 30.0
# The daemon's output ends when it exits, unless a child it left behind holds the pipe.
READER_JOIN_TIMEOUT = 10.0
_LISTENING = re.compile(r"oored listening on (http://\S+)")


class Daemon:
    """One ``oored`` process; its output is read as it comes (a thread drains the pipe, so
    a talkative daemon never blocks on a full pipe) and kept so failures can show it.

    ``cluster``: an initialised PostgreSQL cluster copied into the data directory before
    the first start when it has none (and no external database is named), so the daemon
    skips initdb, which takes seconds; None for a first start that runs initdb itself."""

    def __init__(self, data_dir: Path, env: dict[str, str], cluster: Path | None) -> None:
        self.data_dir = data_dir
        self.env = env
        self.cluster = cluster
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.output: list[str] = []
        self._seen = 0
        self._ended = True
        self._arrived = threading.Condition()
        self._reader: threading.Thread | None = None

    def start(self, *extra: str, wait: bool = True) -> Daemon:
        pgdata = self.data_dir / PGDATA_DIR
        external = "OORED_DATABASE_URL" in self.env
        if self.cluster is not None and not external and not pgdata.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            # -a keeps the owner: run as root, pgserver runs PostgreSQL as another user
            subprocess.run(["cp", "-a", str(self.cluster), str(pgdata)], check=True)
        self.output = []
        self._seen = 0
        self._ended = False
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "oore.daemon",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                str(self.data_dir),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        if wait:
            self.url = self.wait_for(_LISTENING, START_TIMEOUT)[1]
        return self

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for raw in iter(proc.stdout.readline, b""):
                with self._arrived:
                    self.output.append(raw.decode(errors="replace"))
                    self._arrived.notify_all()
        with self._arrived:
            self._ended = True
            self._arrived.notify_all()

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """Wait for a line not looked at yet to match; fail with the output if the
        process ends or the time is up first."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                while self._seen < len(self.output):
                    line = self.output[self._seen]
                    self._seen += 1
                    match = pattern.search(line)
                    if match:
                        return match
                remaining = deadline - time.monotonic()
                if self._ended or remaining <= 0:
                    break
                self._arrived.wait(remaining)
        raise AssertionError(f"oored did not print {pattern.pattern!r}:\n{self.text()}")

    def text(self) -> str:
        with self._arrived:
            return "".join(self.output)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0)

    def stop(self, sig: int | None = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the process (unless ``sig`` is None), wait for it, keep its output."""
        assert self.proc is not None
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=READER_JOIN_TIMEOUT)
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def free_port() -> int:
    """A loopback port free right now, for a daemon that must come back on the same one."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _postgres_pid(data_dir: Path) -> int | None:
    pid_file = data_dir / PGDATA_DIR / "postmaster.pid"
    if not pid_file.exists():
        return None
    return int(pid_file.read_text().split("\n", 1)[0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _clean_env() -> dict[str, str]:
    """This process's environment without oored's or oore's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OORED_", "OORE_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def daemon_env() -> dict[str, str]:
    return _clean_env()


class DaemonFactory(Protocol):
    def __call__(self, data_dir: Path | None = None) -> Daemon: ...


@pytest.fixture(scope="session")
def initialised_cluster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty PostgreSQL cluster made as the daemon makes its own, then stopped."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("cluster") / PGDATA_DIR)
    server.start()
    server.stop()
    return server.pgdata


@contextmanager
def _daemons(env: dict[str, str], cluster: Path) -> Iterator[DaemonFactory]:
    """Makes daemons; on exit each still running is killed, and so is any embedded
    PostgreSQL left. A daemon's data directory is by default one of its own where the
    test server keeps its files (in memory where there is room), removed on exit."""
    started: list[Daemon] = []
    scratch: list[Path] = []

    def make(data_dir: Path | None = None) -> Daemon:
        if data_dir is None:
            if not scratch:
                scratch.append(scratch_dir("oore-e2e-"))
                scratch[0].chmod(0o755)  # run as root, PostgreSQL runs as a user of its own
            data_dir = scratch[0] / "data"
        daemon = Daemon(data_dir, env, cluster)
        started.append(daemon)
        return daemon

    try:
        yield make
    finally:
        for daemon in started:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.kill()
            pid = _postgres_pid(daemon.data_dir)
            if pid is not None and _alive(pid):
                os.kill(pid, signal.SIGTERM)
                _wait_gone(pid)
        for root in scratch:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_daemon(daemon_env: dict[str, str], initialised_cluster: Path) -> Iterator[DaemonFactory]:
    """Daemons started by a test are stopped by it, and so is any embedded PostgreSQL left."""
    with _daemons(daemon_env, initialised_cluster) as make:
        yield make


@pytest.fixture(scope="module")
def shared_daemon(initialised_cluster: Path) -> Iterator[Daemon]:
    """One daemon with the default settings for the tests of a module that only send it
    requests on connections of their own and change nothing it keeps (no sign-in, no
    setting): starting a daemon each would be most of their time. Stopped cleanly after
    the module's last test."""
    with _daemons(_clean_env(), initialised_cluster) as make:
        daemon = make().start()
        yield daemon
        assert daemon.stop() == 0, daemon.text()


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Until ``pid`` has exited (at most ``timeout`` seconds): a PostgreSQL told to stop
    still writes its files for a moment."""
    deadline = time.monotonic() + timeout
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def _running(pid: int) -> bool:
    """Alive and not a zombie (one that nobody reaps has exited all the same)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return _alive(pid)
    return state != "Z"


postgres_pid = _postgres_pid
alive = _alive
