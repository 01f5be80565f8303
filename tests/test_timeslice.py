"""Short CPU slices, asked of the real kernel for threads and processes of our own."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from oore.timeslice import SHORT_SLICE_NS, request_slice, runs_command, slice_of
from tests.conftest import in_a_thread, kernel_takes_short_slices

needs_short_slices = pytest.mark.skipif(
    not kernel_takes_short_slices(), reason="the kernel has no slices per task (Linux < 6.12)"
)


def _command_of(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as comm:
        return comm.read().strip()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A ``sleep`` of our own, once its name is ``sleep`` (the kernel names a process late
    in its ``exec``, after ``Popen`` has returned)."""
    proc = subprocess.Popen(["sleep", "30"])
    try:
        deadline = time.monotonic() + 10
        while _command_of(proc.pid) != "sleep" and time.monotonic() < deadline:
            time.sleep(0.01)
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


@needs_short_slices
def test_a_thread_runs_in_short_slices_and_so_does_each_thread_it_starts() -> None:
    def ask_then_start() -> tuple[bool, int | None, int | None]:
        granted = request_slice()
        started = in_a_thread(lambda: slice_of(threading.get_native_id()))
        return granted, slice_of(), started

    assert in_a_thread(ask_then_start) == (True, SHORT_SLICE_NS, SHORT_SLICE_NS)
    assert slice_of() != SHORT_SLICE_NS  # the test's own thread is as it was


@needs_short_slices
def test_another_process_of_ours_keeps_its_niceness(sleeper: subprocess.Popen[bytes]) -> None:
    os.setpriority(os.PRIO_PROCESS, sleeper.pid, 7)
    before = slice_of(sleeper.pid)
    assert before is not None and before != SHORT_SLICE_NS
    assert request_slice(sleeper.pid)
    assert slice_of(sleeper.pid) == SHORT_SLICE_NS
    assert os.getpriority(os.PRIO_PROCESS, sleeper.pid) == 7


def test_no_task_no_slice() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait(timeout=10)  # reaped: its pid names no process now
    assert not request_slice(proc.pid)
    assert slice_of(proc.pid) is None


def test_a_process_is_known_by_its_command(sleeper: subprocess.Popen[bytes]) -> None:
    assert runs_command(sleeper.pid, "sleep")
    assert not runs_command(sleeper.pid, "postgres")
    assert not runs_command(2**22 + 1, "sleep")  # beyond any pid
