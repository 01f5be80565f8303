"""Notices: what one daemon changed, told to the others sharing its database.

Whoever commits a change that other daemons must act on publishes it under a topic (a
build's new status, a runner, a setting, a log's new lines): :meth:`Notices.publish`
never waits. One sender task sends everything published while its previous send was in
flight as one statement of notifications (``oore/store/cluster.py``), so a busy daemon
sends few large notices rather than one per change, and never inside the transaction of
the change itself.

Each daemon listens on a connection of its own. A notice from another daemon (a daemon's
own are skipped) is handed to the topic's subscribers by one delivery task, with the
items of every notice of that topic waiting at that time merged into one call, in the
order they were published.

Nothing is lost when a notice is: a daemon that died between its commit and its notice,
or a listening connection that was down for a while. Each subscription says how to catch
up (``resync``: called once the listener is listening, at start and after every
reconnect) and may ask for a fallback ``poll`` every ``poll_every`` seconds, which looks
at the database for what a lost notice would have said.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import trio

from oore.errors import ApiError
from oore.store import Store

log = logging.getLogger(__name__)

# PostgreSQL refuses a payload of 8,000 bytes or more; items are packed below this.
MAX_PAYLOAD = 7000
SEP = "\x1f"  # between the header fields and between items (never in an id or a name)


@dataclass(frozen=True)
class Subscription:
    """How a topic's subscriber hears of other daemons' changes, and catches up."""

    noticed: Callable[[list[str]], Awaitable[None]]
    resync: Callable[[], Awaitable[None]] | None = None
    poll: Callable[[], Awaitable[None]] | None = None
    poll_every: float = 1.0


def encode(sender: str, topic: str, items: Iterable[str]) -> list[str]:
    """The payloads that carry ``items`` of ``topic``, each under ``MAX_PAYLOAD`` bytes."""
    head = f"{sender}{SEP}{topic}"
    payloads: list[str] = []
    parts = [head]
    size = len(head.encode())
    for item in items:
        if SEP in item:
            raise ValueError(f"a notice item may not hold the separator: {item!r}")
        length = len(item.encode()) + 1
        if len(parts) > 1 and size + length > MAX_PAYLOAD:
            payloads.append(SEP.join(parts))
            parts, size = [head], len(head.encode())
        parts.append(item)
        size += length
    if len(parts) > 1:
        payloads.append(SEP.join(parts))
    return payloads


def decode(payload: str) -> tuple[str, str, list[str]] | None:
    """(sender, topic, items) of a payload; None for one that is not ours."""
    fields = payload.split(SEP)
    if len(fields) < 3:
        return None
    return fields[0], fields[1], fields[2:]


class Notices:
    """Publish changes to the other daemons; hand theirs to this daemon's subscribers."""

    def __init__(self, store: Store, *, sender: str | None = None) -> None:
        self._store = store
        self.sender = sender or secrets.token_hex(6)
        self._own = self.sender + SEP
        self._topics: dict[str, list[Subscription]] = {}
        self._outbox: dict[str, dict[str, None]] = {}
        self._send = trio.Event()
        self._inbox: dict[str, dict[str, None]] = {}
        self._resync_due = False
        self._deliver = trio.Event()
        self._listener = store.cluster.listener(self._received)
        self.sent = 0  # notification payloads sent
        self.send_failures = 0
        self.received = 0  # payloads received from other daemons
        self.resyncs = 0

    @property
    def listening(self) -> bool:
        """True while the listening connection is up."""
        return self._listener.listening

    def subscribe(self, topic: str, subscription: Subscription) -> None:
        """Hear of ``topic``'s changes made by other daemons (subscribe before ``run``)."""
        self._topics.setdefault(topic, []).append(subscription)

    def publish(self, topic: str, items: Iterable[str]) -> None:
        """Tell the other daemons of committed changes; never waits. An item published
        again before it was sent is sent once, at its first place."""
        box = self._outbox.setdefault(topic, {})
        before = len(box)
        box.update(dict.fromkeys(items))
        if len(box) > before:
            self._send.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send, listen and deliver until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sender)
            nursery.start_soon(self._deliverer)
            for subscriptions in self._topics.values():
                for subscription in subscriptions:
                    if subscription.poll is not None:
                        nursery.start_soon(self._poller, subscription)
            await nursery.start(self._listener.run, self._listening)
            task_status.started()

    # -- sending ----------------------------------------------------------------------------

    async def _sender(self) -> None:
        while True:
            await self._send.wait()
            self._send = trio.Event()
            outbox, self._outbox = self._outbox, {}
            payloads = [
                payload
                for topic, items in outbox.items()
                for payload in encode(self.sender, topic, items)
            ]
            if not payloads:
                continue
            try:
                await self._store.cluster.notify(payloads)
            except ApiError as exc:
                # The others catch up by their fallback poll, or when they resync.
                self.send_failures += 1
                log.debug("notices not sent: %s", exc.message)
            else:
                self.sent += len(payloads)

    # -- receiving --------------------------------------------------------------------------

    def _received(self, payload: str) -> None:
        if payload.startswith(self._own):
            return  # this daemon's own, heard back: not split at all
        decoded = decode(payload)
        if decoded is None:
            return
        sender, topic, items = decoded
        if sender == self.sender or topic not in self._topics:
            return
        self.received += 1
        self._inbox.setdefault(topic, {}).update(dict.fromkeys(items))
        self._deliver.set()

    async def _listening(self) -> None:
        """The listener is (again) in place: every subscriber catches up."""
        self._resync_due = True
        self._deliver.set()

    async def _deliverer(self) -> None:
        while True:
            await self._deliver.wait()
            self._deliver = trio.Event()
            if self._resync_due:
                self._resync_due = False
                self._inbox.clear()  # what they said is in what the resync reads
                self.resyncs += 1
                await self._resync_all()
                continue
            inbox, self._inbox = self._inbox, {}
            for topic, items in inbox.items():
                for subscription in self._topics.get(topic, ()):
                    try:
                        await subscription.noticed(list(items))
                    except ApiError as exc:
                        log.warning("notices of %s not applied (%s); catching up", topic, exc)
                        self._resync_due = True
                        self._deliver.set()
                    except Exception:
                        # A defect in a subscriber must not stop the others hearing: it is
                        # logged with its traceback, and everyone catches up.
                        log.exception("notices of %s not applied; catching up", topic)
                        self._resync_due = True
                        self._deliver.set()

    async def _resync_all(self) -> None:
        for topic, subscriptions in self._topics.items():
            for subscription in subscriptions:
                if subscription.resync is None:
                    continue
                try:
                    await subscription.resync()
                except ApiError as exc:
                    log.warning("catching up on %s failed: %s; trying again", topic, exc)
                    self._resync_due = True
                    self._deliver.set()
                    await trio.sleep(1.0)
                    return
                except Exception:
                    log.exception("catching up on %s failed", topic)

    async def _poller(self, subscription: Subscription) -> None:
        assert subscription.poll is not None
        while True:
            await trio.sleep(subscription.poll_every)
            try:
                await subscription.poll()
            except ApiError as exc:
                log.debug("fallback poll failed: %s", exc.message)
            except Exception:
                log.exception("fallback poll failed")
