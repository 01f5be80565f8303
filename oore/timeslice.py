"""Short CPU time slices for the processes a runner waits on.

Why: on a machine whose few CPUs are shared by everything, a runner's claim or append
waits on several wake-ups in turn (the runners' worker, its database driver's thread, the
PostgreSQL server process, and back). Each wake-up waits until the task on that CPU has
used its slice (Linux's default is a few milliseconds, scaled by the number of CPUs).
Since Linux 6.12 a normal task may ask for a shorter slice with ``sched_setattr``'s
``sched_runtime`` (at least 0.1 ms); a task woken with a shorter slice than the running
one's may preempt it at once, so its wake-ups wait less. It costs the task nothing else: it
keeps its share of the CPU, only in smaller pieces.

Best effort: on another system, an older kernel (which ignores the field) or where the
kernel refuses (another user's process without the privilege to change it), nothing
changes and the daemon runs as before.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys

log = logging.getLogger(__name__)

# The slice the runners' worker and its database sessions ask for: the kernel's minimum.
SHORT_SLICE_NS = 100_000

# sched_setattr and sched_getattr by architecture (Linux's generic table for arm64).
_SYSCALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}


class _SchedAttr(ctypes.Structure):
    """``struct sched_attr`` (Linux 4.13 and later: 56 bytes)."""

    _fields_ = [
        ("size", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32),
        ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64),
        ("sched_period", ctypes.c_uint64),
        ("sched_util_min", ctypes.c_uint32),
        ("sched_util_max", ctypes.c_uint32),
    ]


_SCHED_OTHER = 0


def _syscall(which: int, *args: object) -> bool:
    """Make system call ``which`` (0: sched_setattr, 1: sched_getattr); False where there
    is none to make or it failed."""
    calls = _SYSCALLS.get(platform.machine()) if sys.platform.startswith("linux") else None
    if calls is None:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(calls[which], *args) != 0:
        log.debug("sched system call %d failed: %s", which, os.strerror(ctypes.get_errno()))
        return False
    return True


def request_slice(pid: int = 0, slice_ns: int = SHORT_SLICE_NS) -> bool:
    """Ask the kernel to run task ``pid`` (0: the calling thread) in slices of ``slice_ns``.

    Threads and processes the task starts afterwards take the same slice. The task keeps
    its niceness; a task with another policy than the normal one is left as it is.
    Returns whether the task now runs in such slices (an older kernel takes the request
    and ignores it).
    """
    current = _get_attr(pid)
    if current is None or current.sched_policy != _SCHED_OTHER:
        return False
    attr = _SchedAttr(
        size=ctypes.sizeof(_SchedAttr),
        sched_policy=_SCHED_OTHER,
        sched_nice=current.sched_nice,
        sched_runtime=slice_ns,
    )
    return _syscall(0, pid, ctypes.byref(attr), 0) and slice_of(pid) == slice_ns


def slice_of(pid: int = 0) -> int | None:
    """The slice task ``pid`` runs in, in nanoseconds, if the kernel tells (6.12 and later;
    an older kernel reports 0)."""
    attr = _get_attr(pid)
    return None if attr is None else int(attr.sched_runtime)


def _get_attr(pid: int) -> _SchedAttr | None:
    attr = _SchedAttr()
    if not _syscall(1, pid, ctypes.byref(attr), ctypes.sizeof(_SchedAttr), 0):
        return None
    return attr


def runs_command(pid: int, command: str) -> bool:
    """Whether local process ``pid`` is running ``command`` (by its name in ``/proc``)."""
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as comm:
            return comm.read().strip() == command
    except OSError:
        return False
