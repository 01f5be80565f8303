"""The live events stream: who may open one, how many, and the bytes of each.

A stream is authorized like any user call (session or API token, header or cookie),
admitted within the configured limits (503 ``stream_capacity`` when the server holds as
many as it allows, 429 ``stream_limit`` past the per-user cap, both before the stream
starts), then subscribed to the event hub (``oore/live/events.py``) with its audience:
the builds of the projects the user may read (all of them for owners and admins) and
runner changes if the user may read runners. See ``oore/domain/events.py`` for the events.

Every ``check_every`` seconds the stream re-checks its credential and audience: a
session that ended ends the stream with ``event: done`` ``authorization_ended``; an
audience that changed (a membership, a role) is applied, with a ``resync`` so the client
reloads what it may see now. A change that may take access away (the grant epoch of
``oore/services/grants.py`` moved on) has the stream re-check before it writes another
event, not only at the next interval. After ``stream_seconds`` the stream ends and the
client reconnects (no replay: it reloads its lists on ``ready``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, replace

import trio

from oore.domain.builds import Build
from oore.domain.events import PING, READY, RESYNC, Audience
from oore.domain.logs import done_event
from oore.domain.rbac import Action, Resource, allowed
from oore.domain.runners import Runner
from oore.domain.users import Session
from oore.errors import ServiceUnavailable, TooManyRequests
from oore.live.events import EventsHandle, Subscriber
from oore.live.fanout import GrantEpoch
from oore.scheduling import Scheduling
from oore.services.access import Access
from oore.services.identity import Identity


@dataclass(frozen=True)
class EventsConfig:
    """Limits of the live events streams."""

    viewers_per_user: int = 32
    viewers_total: int = 2_000
    viewer_buffer_bytes: int = 256 * 1024
    keep_alive: float = 15.0
    check_every: float = 10.0
    stream_seconds: float = 300.0
    # At most one write per stream in this many seconds: a burst of changes (a fleet
    # picking up a queue) goes out as one write to each stream, not one per change.
    coalesce: float = 0.1


class HubRecords:
    """What the hub reads (its ``EventRecords``): the store, and why queued builds wait."""

    def __init__(self, scheduling: Scheduling) -> None:
        self._store = scheduling.store
        self._waiting = scheduling.waiting

    async def complete(self, build: Build) -> Build:
        now = await self._store.builds.get(build.id)
        if now is not None:
            context = dict(now.context)
            if _runner_of(now) != _runner_of(build):
                context.pop("runner_name", None)  # it moved on meanwhile: not this runner's
            build = replace(build, context=context)
        [build] = await self._waiting.explain([build])
        return build

    async def runner(self, runner_id: str) -> Runner | None:
        return await self._store.runners.get(runner_id)


def _runner_of(build: Build) -> str | None:
    return build.runner_id or build.last_runner_id


class Events:
    """Opens live event streams on the hub."""

    def __init__(
        self,
        hub: EventsHandle,
        scheduling: Scheduling,
        identity: Identity,
        access: Access,
        config: EventsConfig,
        grants: GrantEpoch | None = None,
    ) -> None:
        self.hub = hub
        self.config = config
        self._grants = grants or GrantEpoch()
        self._scheduling = scheduling
        self._identity = identity
        self._access = access
        self._per_user: Counter[str] = Counter()
        self._open = 0
        self.resyncs = 0  # times a stream skipped changes and told its client to reload

    @property
    def open_streams(self) -> int:
        return self._open

    async def audience(self, session: Session) -> Audience:
        """What the session may be sent: its readable projects' builds, runners or not."""
        return Audience(
            await self._access.readable_projects(session),
            allowed(session.user.role, Resource.RUNNERS, Action.READ),
        )

    async def open_stream(self, authorization: str | None) -> EventStream:
        """Authorize, admit and subscribe a stream, then its SSE bytes.

        Every refusal (401, 429 ``stream_limit``, 503 ``stream_capacity``) is raised
        here, before the response starts.
        """
        checked = self._grants.value  # a change from here on is checked again
        session = await self._identity.authenticate(authorization)
        audience = await self.audience(session)
        user_id = session.user.id
        self._admit(user_id)
        subscriber = Subscriber(audience, self.config.viewer_buffer_bytes)
        self.hub.subscribe(subscriber)
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.hub.unsubscribe(subscriber)
                self._leave(user_id)

        return EventStream(self._events(subscriber, session, release, checked), release)

    def _admit(self, user_id: str) -> None:
        if self._open >= self.config.viewers_total:
            raise ServiceUnavailable(
                "stream_capacity", "The server has as many open event streams as it allows"
            )
        if self._per_user[user_id] >= self.config.viewers_per_user:
            raise TooManyRequests("stream_limit", "Too many open event streams for this user")
        self._open += 1
        self._per_user[user_id] += 1

    def _leave(self, user_id: str) -> None:
        self._open -= 1
        self._per_user[user_id] -= 1
        if self._per_user[user_id] <= 0:
            del self._per_user[user_id]

    async def _recheck(self, session: Session) -> Session | None:
        """The session if its credential still holds, for the same user."""
        now = await self._identity.recheck(session.token_hash, via_api_token=session.via_api_token)
        return now if now is not None and now.user.id == session.user.id else None

    async def _events(
        self,
        subscriber: Subscriber,
        session: Session,
        release: Callable[[], None],
        checked: int,
    ) -> AsyncGenerator[bytes, None]:
        config = self.config
        grants = self._grants
        try:
            yield READY
            started = trio.current_time()
            ends = started + config.stream_seconds
            next_check = started + config.check_every
            quiet_since = started
            while True:
                if subscriber.missed:
                    subscriber.resync()
                    self.resyncs += 1
                    yield RESYNC
                    quiet_since = trio.current_time()
                    continue
                now = trio.current_time()
                if checked != grants.value:  # re-checked before another event is written
                    checked, next_check = grants.value, now
                if subscriber.queue and now < next_check:
                    if (hold := quiet_since + config.coalesce - now) > 0:
                        with self._scheduling.long_poll():
                            await trio.sleep(hold)  # let the rest of a burst join this write
                        if self._scheduling.ending:
                            return
                        continue
                    yield b"".join(subscriber.take())  # several events, one write
                    quiet_since = trio.current_time()
                    continue
                if now >= ends:
                    return  # the client reconnects and reloads on ``ready``
                if now >= next_check:
                    held = await self._recheck(session)
                    if held is None:
                        yield done_event("authorization_ended")
                        return
                    session = held
                    audience = await self.audience(session)
                    if audience != subscriber.audience:
                        subscriber.audience = audience
                        subscriber.overflow()  # what the client may see changed: reload
                    next_check = trio.current_time() + config.check_every
                    continue
                if now - quiet_since >= config.keep_alive:
                    yield PING
                    quiet_since = now
                    continue
                wake_at = min(ends, next_check, quiet_since + config.keep_alive)
                with self._scheduling.long_poll(), trio.move_on_at(wake_at):
                    await subscriber.wait()
                if self._scheduling.ending:
                    return  # the daemon is stopping; the client reconnects
        finally:
            release()


class EventStream:
    """An admitted stream's bytes; closing it releases its place even if it was never
    read (a response that failed before its body was sent)."""

    def __init__(self, events: AsyncGenerator[bytes, None], release: Callable[[], None]) -> None:
        self._events = events
        self._release = release

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> bytes:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        try:
            await self._events.aclose()
        finally:
            self._release()
