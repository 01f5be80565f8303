"""End-to-end: the real ``oored`` process on a free loopback port."""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import httpx
import pytest

START_TIMEOUT = 30.0
_LISTENING = re.compile(r"oored listening on (http://\S+)")


class Daemon:
    """One ``oored`` process; output is collected so failures can show it."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._partial = b""
        self.url = ""
        self.output: list[str] = []

    def start(self, *extra: str, wait: bool = True) -> Daemon:
        self.output = []
        self._partial = b""
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
        if wait:
            self.url = self.wait_for(_LISTENING, START_TIMEOUT)[1]
        return self

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """Read output until a line matches; fail with the output if the process ends."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                while b"\n" in self._partial:
                    raw, self._partial = self._partial.split(b"\n", 1)
                    line = raw.decode(errors="replace") + "\n"
                    self.output.append(line)
                    match = pattern.search(line)
                    if match:
                        return match
                if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self._partial += chunk
        raise AssertionError(f"oored did not print {pattern.pattern!r}:\n{self.text()}")

    def text(self) -> str:
        return "".join(self.output)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0)

    def stop(self, sig: int | None = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the process (unless ``sig`` is None), wait for it, keep its output."""
        assert self.proc is not None
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.output.append((self._partial + (out or b"")).decode(errors="replace"))
        self._partial = b""
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
    pid_file = data_dir / "pg" / "postmaster.pid"
    if not pid_file.exists():
        return None
    return int(pid_file.read_text().split("\n", 1)[0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def daemon_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OORED_", "OORE_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class DaemonFactory(Protocol):
    def __call__(self, data_dir: Path | None = None) -> Daemon: ...


@pytest.fixture
def make_daemon(tmp_path: Path, daemon_env: dict[str, str]) -> Iterator[DaemonFactory]:
    """Daemons started by a test are stopped by it, and so is any embedded PostgreSQL left."""
    started: list[Daemon] = []

    def make(data_dir: Path | None = None) -> Daemon:
        daemon = Daemon(data_dir or tmp_path / "data", daemon_env)
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()
        pid = _postgres_pid(daemon.data_dir)
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGTERM)


postgres_pid = _postgres_pid
alive = _alive
