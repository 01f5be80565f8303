"""WebhookWorker: the durable queue of webhook deliveries, worked off the request path (§9.3).

Deliveries live in the database before the worker hears of them, so the worker's mailbox
only says "look now". At start it drains every due delivery (nothing received before a
restart is lost); a wake-up drains again; and after each drain it sleeps until the store's
next due time (a retry 30 s on, a lease that runs out), or until woken. ``drain`` does the
work and answers the seconds until the next due delivery, or None when none waits.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import assert_never

import trio

from oore.actors.base import Actor, ActorRef, MailboxFull, Reply
from oore.actors.supervisor import ChildSpec, Restart, actor_spec

# Process what is due; seconds until the next delivery falls due, or None.
DrainFn = Callable[[], Awaitable[float | None]]


@dataclass(frozen=True)
class Wake:
    """A delivery was stored: drain the queue."""


@dataclass(frozen=True)
class Drained:
    """Drain now and answer once done (for callers that must see the outcome)."""

    reply: Reply[None]


WebhookMsg = Wake | Drained


class WebhookWorkerHandle(ActorRef[WebhookMsg]):
    """The handle of the webhook worker."""

    def __init__(self, *, capacity: int = 256) -> None:
        super().__init__("webhooks", capacity=capacity)

    def wake(self) -> None:
        """Tell the worker a delivery is waiting, without waiting.

        Raises :class:`ActorStopped` when the worker is gone. A full mailbox already holds
        a wake-up whose drain finds this delivery in the store: dropping it is safe.
        """
        with contextlib.suppress(MailboxFull):
            self.try_tell(Wake())

    async def drain(self) -> None:
        """Process every due delivery; returns once they are handled.

        Raises :class:`ActorStopped` when the worker is gone. The caller owns the deadline.
        """
        await self.ask(Drained)

    @property
    def available(self) -> bool:
        """False once the worker's mailbox is closed for good."""
        return not self.stopping


def webhook_worker_spec(
    handle: WebhookWorkerHandle, *, drain: DrainFn
) -> ChildSpec[WebhookWorkerHandle]:
    """A permanent child that calls ``drain`` at start, when woken and when work falls due."""
    return actor_spec(handle, lambda ref: _WebhookWorker(ref, drain), restart=Restart.PERMANENT)


class _WebhookWorker(Actor[WebhookMsg]):
    def __init__(self, ref: ActorRef[WebhookMsg], drain: DrainFn) -> None:
        super().__init__(ref)
        self._drain = drain

    async def _pass(self) -> None:
        after = await self._drain()
        self.deadline = math.inf if after is None else trio.current_time() + max(0.0, after)

    async def on_start(self) -> None:
        self.deadline = trio.current_time()  # drain at once, after reporting started

    async def handle(self, msg: WebhookMsg) -> None:
        match msg:
            case Wake():
                await self._pass()
            case Drained(reply):
                await self._pass()
                reply.send(None)
            case _:
                assert_never(msg)

    async def on_deadline(self) -> None:
        await self._pass()
