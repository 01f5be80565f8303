"""EventHub: one actor that fans build and runner changes out to the open event streams.

Whoever commits a change tells the hub's handle (``build_changed``, ``runner_changed``);
telling never waits and costs nothing while no stream is open. The actor takes the
changes in the order they were told, reads what an event needs that the change does not
carry (a build's project and pipeline names, a runner's current row), encodes the event
once and offers the same bytes to every subscriber whose audience may see it.

Offering never waits either. A subscriber's buffer is bounded in bytes: one that would
overflow drops what it holds and is marked ``missed``, and its stream sends ``resync`` so
the client reloads its lists. A full mailbox (the hub is behind) marks every subscriber
so, as does a restarted incarnation (changes told to a crashed one may be lost). So a
slow client or a busy hub costs bounded memory and never slows whoever commits builds.

The subscriber set lives on the handle, which outlives a crash.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Protocol, assert_never

import trio

from oore.actors import Actor, ActorRef, ActorStopped, ChildSpec, MailboxFull, Restart, actor_spec
from oore.domain.builds import Build
from oore.domain.events import (
    Audience,
    build_event,
    runner_deleted_event,
    runner_event,
)
from oore.domain.runners import Runner

MAILBOX = 4096


class EventRecords(Protocol):
    """What the hub reads to complete an event."""

    async def complete(self, build: Build) -> Build:
        """The build as its detail showed it at that change (names of its project,
        pipeline and runner; why it waits, when queued)."""
        ...

    async def runner(self, runner_id: str) -> Runner | None: ...


@dataclass(eq=False)
class Subscriber:
    """One open stream: its audience (set by its own task) and a byte-bounded buffer."""

    audience: Audience
    limit: int
    queue: deque[bytes] = field(default_factory=deque)
    queued_bytes: int = 0
    missed: bool = False
    _wake: trio.Event = field(default_factory=trio.Event)

    def offer(self, data: bytes) -> None:
        """Queue an event without waiting; past the limit, drop all and mark ``missed``."""
        if self.missed:
            return  # the client reloads its lists after the resync: this is in them
        if self.queued_bytes + len(data) > self.limit:
            self.overflow()
            return
        self.queue.append(data)
        self.queued_bytes += len(data)
        self._wake.set()

    def overflow(self) -> None:
        self.missed = True
        self.queue.clear()
        self.queued_bytes = 0
        self._wake.set()

    def take(self) -> list[bytes]:
        """Everything queued, oldest first."""
        taken = list(self.queue)
        self.queue.clear()
        self.queued_bytes = 0
        return taken

    def resync(self) -> None:
        """The stream is about to send ``resync``: events from now on are queued again."""
        self.missed = False
        self.queue.clear()
        self.queued_bytes = 0

    async def wait(self) -> None:
        """Until something is queued or missed (the caller bounds the wait)."""
        if self.queue or self.missed:
            return
        self._wake = trio.Event()
        await self._wake.wait()


@dataclass(frozen=True)
class BuildChanged:
    """A build was created or changed status; ``build`` is its row as committed."""

    build: Build


@dataclass(frozen=True)
class RunnerChanged:
    """A runner was registered, changed or (``deleted``) removed."""

    runner_id: str
    deleted: bool = False


EventMsg = BuildChanged | RunnerChanged


class EventsHandle(ActorRef[EventMsg]):
    """The hub's handle: publishers tell it changes, streams subscribe to it."""

    def __init__(self, *, capacity: int = MAILBOX) -> None:
        super().__init__("events", capacity=capacity)
        # Kept here, not in the actor, so that a restarted incarnation still knows them.
        self.subscribers: set[Subscriber] = set()
        self.skipped = 0  # changes not fanned out because the mailbox was full

    def build_changed(self, build: Build) -> None:
        """A build was created or changed status (told after the change committed)."""
        self._publish(BuildChanged(build))

    def runner_changed(self, runner_id: str, *, deleted: bool = False) -> None:
        """A runner was registered, changed or deleted (told after the change committed)."""
        self._publish(RunnerChanged(runner_id, deleted))

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.add(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def _publish(self, msg: EventMsg) -> None:
        if not self.subscribers:
            return
        try:
            self.try_tell(msg)
        except MailboxFull:
            self.skipped += 1
            for subscriber in self.subscribers:
                subscriber.overflow()
        except ActorStopped:
            pass  # the daemon is stopping; so are the streams


def event_hub_spec(handle: EventsHandle, records: EventRecords) -> ChildSpec[EventsHandle]:
    """A permanent child: a crash restarts it and every subscriber resyncs."""
    return actor_spec(handle, lambda ref: _EventHub(ref, records), restart=Restart.PERMANENT)


class _EventHub(Actor[EventMsg]):
    def __init__(self, handle: EventsHandle, records: EventRecords) -> None:
        super().__init__(handle)
        self._handle = handle
        self._records = records

    async def on_start(self) -> None:
        # Changes told to a crashed incarnation may never have been offered.
        for subscriber in self._handle.subscribers:
            subscriber.overflow()

    async def handle(self, msg: EventMsg) -> None:
        match msg:
            case BuildChanged(build):
                await self._build(build)
            case RunnerChanged(runner_id, deleted):
                await self._runner(runner_id, deleted)
            case _:
                assert_never(msg)

    async def _build(self, build: Build) -> None:
        project = build.project_id
        audience = [s for s in self._handle.subscribers if s.audience.sees_project(project)]
        if not audience:
            return
        build = await self._records.complete(build)
        data = build_event(build.to_json(redact=True, with_context=True))
        for subscriber in audience:
            subscriber.offer(data)

    async def _runner(self, runner_id: str, deleted: bool) -> None:
        audience = [s for s in self._handle.subscribers if s.audience.runners]
        if not audience:
            return
        if deleted:
            data = runner_deleted_event(runner_id)
        else:
            runner = await self._records.runner(runner_id)
            if runner is None:
                return  # deleted meanwhile: its own event says so
            data = runner_event(runner.to_json())
        for subscriber in audience:
            subscriber.offer(data)
