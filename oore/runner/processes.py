"""Process groups: every runner subprocess leads its own group, ended as a whole.

Ending a group is SIGTERM to every member, a grace period, then SIGKILL; the leader (our
child) is always reaped. Members that outlive their leader are orphans of the group and
end with it, so a step cannot leave processes behind.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import trio

POLL_INTERVAL = 0.05
REAP_TIMEOUT = 5.0
_PROC = Path("/proc")


def signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to the group; False when no member is left."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:  # macOS: a group of zombies only
        return False
    return True


def group_alive(pgid: int, leader: trio.Process | None = None) -> bool:
    """Whether the group has a member that is not a zombie; reaps ``leader`` if it ended."""
    if leader is not None:
        leader.poll()
    if not signal_group(pgid, 0):
        return False
    if not _PROC.is_dir():
        return True
    # On Linux, zombies (orphans an init that does not reap leaves behind) still count as
    # members for kill(2); they hold no resources and are not ours, so they do not count.
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


async def end_group(leader: trio.Process, grace: float) -> None:
    """SIGTERM the leader's group, wait up to ``grace`` seconds, SIGKILL, reap the leader.

    Returns once the leader is reaped and no member is left alive, at once when the group
    is already empty. Bounded: at most ``grace`` plus :data:`REAP_TIMEOUT` seconds.
    Callers that must finish it under cancellation shield it.
    """
    pgid = leader.pid
    if group_alive(pgid, leader):
        signal_group(pgid, signal.SIGTERM)
        with trio.move_on_after(grace):
            # Nothing signals "the group is empty" (members are not our children): poll.
            while group_alive(pgid, leader):  # noqa: ASYNC110
                await trio.sleep(POLL_INTERVAL)
        if group_alive(pgid, leader):
            signal_group(pgid, signal.SIGKILL)
    with trio.move_on_after(REAP_TIMEOUT):
        await leader.wait()
        # SIGKILL is delivered at once but a member takes a moment to die; the step is
        # over only when none is left.
        while group_alive(pgid):  # noqa: ASYNC110
            await trio.sleep(POLL_INTERVAL)


def exit_status(returncode: int) -> int:
    """A shell-style exit status: a death by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode
