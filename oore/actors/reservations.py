"""ReservationTimer: fails artifact upload reservations that outlive their time (§6.5).

The timer knows when the oldest pending reservation falls due: the store tells it at
start, and each new reservation tells it its own due time, which only matters when the
timer knows of nothing earlier. When the deadline passes it calls ``sweep``, which fails
what is due (and deletes its objects) and answers when the next pending reservation falls
due. With nothing pending there is no deadline and no query: the database is asked only
when something is due.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import assert_never

import trio

from oore.actors.base import Actor, ActorRef, ActorStopped, MailboxFull, Reply
from oore.actors.supervisor import ChildSpec, Restart, actor_spec

# Seconds until the next pending reservation falls due, or None when none is pending.
NextDueFn = Callable[[], Awaitable[float | None]]


@dataclass(frozen=True)
class Reserved:
    """A reservation was made; it falls due ``after`` seconds from now."""

    after: float


@dataclass(frozen=True)
class NextSweep:
    """Seconds (trio clock) until the next sweep; ``inf`` when nothing is pending."""

    reply: Reply[float]


ReservationMsg = Reserved | NextSweep


class ReservationTimerHandle(ActorRef[ReservationMsg]):
    """The handle of the reservation timer."""

    def __init__(self, *, capacity: int = 256) -> None:
        super().__init__("artifact-reservations", capacity=capacity)

    def reserved(self, after: float) -> None:
        """Tell the timer about a reservation without waiting.

        A full mailbox holds earlier reservations, which fall due no later than this one,
        and the sweep that handles them finds this one in the store: dropping it is safe.
        """
        with contextlib.suppress(MailboxFull, ActorStopped):
            self.try_tell(Reserved(after))

    async def next_sweep(self) -> float:
        """Seconds until the next sweep (``inf`` when nothing is pending)."""
        return await self.ask(NextSweep)


def reservation_timer_spec(
    handle: ReservationTimerHandle, *, first_due: NextDueFn, sweep: NextDueFn
) -> ChildSpec[ReservationTimerHandle]:
    """A permanent child: ``first_due`` at start, ``sweep`` whenever something falls due."""
    return actor_spec(
        handle, lambda ref: _ReservationTimer(ref, first_due, sweep), restart=Restart.PERMANENT
    )


class _ReservationTimer(Actor[ReservationMsg]):
    def __init__(
        self, ref: ActorRef[ReservationMsg], first_due: NextDueFn, sweep: NextDueFn
    ) -> None:
        super().__init__(ref)
        self._first_due = first_due
        self._sweep = sweep

    def _due_in(self, after: float | None) -> float:
        return math.inf if after is None else trio.current_time() + max(0.0, after)

    async def on_start(self) -> None:
        self.deadline = self._due_in(await self._first_due())

    async def handle(self, msg: ReservationMsg) -> None:
        match msg:
            case Reserved(after):
                self.deadline = min(self.deadline, self._due_in(after))
            case NextSweep(reply):
                reply.send(self.deadline - trio.current_time())
            case _:
                assert_never(msg)

    async def on_deadline(self) -> None:
        self.deadline = self._due_in(await self._sweep())
