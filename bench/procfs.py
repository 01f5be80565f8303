"""What /proc says about the server: CPU seconds, resident memory, and its embedded
PostgreSQL's processes (``pg_ctl`` detaches the postmaster, so it is no child of the
daemon: it is found through ``postmaster.pid`` in the daemon's ``--data-dir``)."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    # the fields after "(comm)", which may itself hold spaces and parentheses
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of ``pid`` so far."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_kb(pid: int) -> int:
    """``VmRSS`` of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def _data_dir(daemon_pid: int) -> Path | None:
    argv = Path(f"/proc/{daemon_pid}/cmdline").read_bytes().split(b"\0")
    for flag, value in itertools.pairwise(argv):
        if flag == b"--data-dir":
            return Path(os.fsdecode(value))
    return None


def postmaster_pid(daemon_pid: int) -> int | None:
    """The embedded PostgreSQL's postmaster, or None when the daemon uses an external
    database (``OORED_DATABASE_URL``) or none can be found."""
    data = _data_dir(daemon_pid)
    if data is None:
        return None
    for pidfile in data.glob("**/postmaster.pid"):
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return None


def children(parent: int) -> list[int]:
    """The live processes whose parent is ``parent``, by pid."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat(int(entry.name))[1]) == parent:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
    return sorted(found)


def tree_rss_kb(parent: int) -> int:
    """``VmRSS`` of ``parent`` and of its live children, in KiB."""
    total = rss_kb(parent)
    for child in children(parent):
        try:
            total += rss_kb(child)
        except (OSError, RuntimeError):
            continue  # gone meanwhile, or a zombie
    return total


def tree_cpu_seconds(parent: int) -> float:
    """CPU seconds of ``parent``, of its live children and of its children that have
    ended (``cutime``/``cstime``), so the difference of two readings covers the
    children that came and went between them."""
    fields = _stat(parent)
    total = sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICKS
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                child = _stat(int(entry.name))
                if int(child[1]) == parent:
                    total += (int(child[11]) + int(child[12])) / TICKS
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
    return total


def wait_idle(pid: int, below: float = 0.05, step: float = 0.5, limit: float = 30.0) -> float:
    """Wait until ``pid`` uses under ``below`` cores over ``step`` seconds (at most
    ``limit`` seconds); answers how long it took."""
    began = time.monotonic()
    while time.monotonic() - began < limit:
        before = cpu_seconds(pid)
        time.sleep(step)
        if (cpu_seconds(pid) - before) / step < below:
            break
    return time.monotonic() - began


@dataclass(frozen=True)
class WindowUsage:
    """What the daemon (and its embedded PostgreSQL, when it has one) used over a window."""

    daemon_cores: float
    postgres_cores: float | None  # None with an external database
    daemon_rss_kb: int  # at the window's end


def measure_window(
    daemon_pid: int, window: float, stop: float, show: Callable[[str, float], None]
) -> WindowUsage:
    """Wait until ``window`` (wall clock), then measure the CPU of the daemon and of its
    embedded PostgreSQL's processes until ``stop``; ``show(phase, seconds_left)`` is called
    about once a second, with phase ``"starting"`` and then ``"measuring"``."""
    postmaster = postmaster_pid(daemon_pid)
    _sleep_until(window, lambda left: show("starting", left))
    daemon_before = cpu_seconds(daemon_pid)
    pg_before = tree_cpu_seconds(postmaster) if postmaster else 0.0
    began = time.monotonic()
    _sleep_until(stop, lambda left: show("measuring", left))
    took = time.monotonic() - began
    return WindowUsage(
        daemon_cores=(cpu_seconds(daemon_pid) - daemon_before) / took,
        postgres_cores=((tree_cpu_seconds(postmaster) - pg_before) / took if postmaster else None),
        daemon_rss_kb=rss_kb(daemon_pid),
    )


def _sleep_until(until: float, show: Callable[[float], None]) -> None:
    while time.time() < until:
        show(max(0.0, until - time.time()))
        time.sleep(min(1.0, max(0.0, until - time.time())))


class CpuWindow:
    """The CPU of named processes over a window, in cores. ``readings`` maps each name to
    what reads its CPU seconds so far; a process gone before the window ends counts what
    it used until its last reading."""

    def __init__(self, readings: Mapping[str, Callable[[], float]]) -> None:
        self._readings = dict(readings)
        self._before: dict[str, float] = {}
        self._began = time.monotonic()

    def start(self) -> None:
        self._before = {name: self._read(name, 0.0) for name in self._readings}
        self._began = time.monotonic()

    def cores(self) -> dict[str, float]:
        """``<name>_cpu_cores`` for each process, from :meth:`start` until now."""
        took = time.monotonic() - self._began
        return {
            f"{name}_cpu_cores": (self._read(name, before) - before) / took
            for name, before in self._before.items()
        }

    def _read(self, name: str, otherwise: float) -> float:
        try:
            return self._readings[name]()
        except (OSError, IndexError, ValueError):
            return otherwise


def measure_cores(
    meter: CpuWindow, window: float, stop: float, show: Callable[[str, float], None]
) -> dict[str, float]:
    """:func:`measure_window` for the processes of ``meter``: wait until ``window`` (wall
    clock), then answer their cores until ``stop``."""
    _sleep_until(window, lambda left: show("starting", left))
    meter.start()
    _sleep_until(stop, lambda left: show("measuring", left))
    return meter.cores()
