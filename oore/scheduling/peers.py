"""Scheduling among daemons sharing one database: what it tells them, and what it does
with what they tell it.

Every build and runner change committed here is told to the event hub (:class:`Told`);
the same call publishes it to the other daemons as a notice (a build as ``id:status``,
a runner as ``id:changed`` or ``id:deleted``), sent after the commit with the other
changes of that moment. :class:`Peers` applies the notices of the others:

* a build queued elsewhere joins this daemon's dispatcher, so a runner parked here is
  offered it at once (the claim itself is decided by the database);
* a build that left the queue elsewhere (claimed, canceled) leaves the dispatcher;
* a build this daemon holds the state machine of (its runner calls here) is brought up
  to date: a cancel through another daemon answers the runner's job-state poll here;
* the event hub hears of both, for the browsers watching through this daemon;
* a runner changed elsewhere is forgotten by the caches of this daemon.

If notices were lost (the listening connection was down, or a daemon died between its
commit and its notice), :meth:`Peers.resync` reads the queue and the builds held here
again; :meth:`Peers.poll` does a cheap version of it every second: the queue while runners
are parked here, the status of the builds whose job-state polls wait here.
"""

from __future__ import annotations

from collections.abc import Callable

from oore.cluster import Notices, Subscription
from oore.domain.builds import Build, BuildStatus, QueuedBuild
from oore.scheduling.facade import Scheduling
from oore.scheduling.ports import Events

BUILDS = "build"
RUNNERS = "runner"
POLL_EVERY = 1.0  # seconds between fallback polls
POLL_QUEUED = 1000  # queued builds read by one fallback poll


class Told:
    """The scheduling's :class:`~oore.scheduling.ports.Events`: this daemon's event hub,
    and the other daemons."""

    def __init__(self, local: Events, notices: Notices) -> None:
        self._local = local
        self._notices = notices

    def build_changed(self, build: Build) -> None:
        self._local.build_changed(build)
        self._notices.publish(BUILDS, (f"{build.id}:{build.status.value}",))

    def runner_changed(self, runner_id: str, *, deleted: bool = False) -> None:
        self._local.runner_changed(runner_id, deleted=deleted)
        self._notices.publish(RUNNERS, (f"{runner_id}:{'deleted' if deleted else 'changed'}",))


class Peers:
    """Applies other daemons' build and runner notices to this daemon's scheduling."""

    def __init__(
        self,
        scheduling: Scheduling,
        local: Events,
        *,
        hub_listening: Callable[[], bool],
        forget_runner: Callable[[str], None],
    ) -> None:
        self._scheduling = scheduling
        self._local = local
        self._hub_listening = hub_listening
        self._forget_runner = forget_runner
        self.applied = 0  # build notices applied

    def subscribe(self, notices: Notices) -> None:
        notices.subscribe(
            BUILDS,
            Subscription(
                self.builds_noticed, resync=self.resync, poll=self.poll, poll_every=POLL_EVERY
            ),
        )
        notices.subscribe(RUNNERS, Subscription(self.runners_noticed))

    async def builds_noticed(self, items: list[str]) -> None:
        scheduling = self._scheduling
        latest: dict[str, str] = {}
        for item in items:
            build_id, _, status = item.partition(":")
            latest.pop(build_id, None)  # keep the latest, at its place
            latest[build_id] = status
        listening = self._hub_listening()
        wanted = []
        for build_id, status in latest.items():
            if status != BuildStatus.QUEUED.value:
                scheduling.dispatcher.remove(build_id)
            queued = status == BuildStatus.QUEUED.value
            if queued or listening or scheduling.builds.tracks(build_id):
                wanted.append(build_id)
        if not wanted:
            return
        builds = {build.id: build for build in await scheduling.store.builds.many(wanted)}
        for build_id in wanted:  # in the order they changed
            build = builds.get(build_id)
            if build is not None:
                await self._apply(build)

    async def _apply(self, build: Build) -> None:
        self.applied += 1
        if build.status is BuildStatus.QUEUED:
            self._scheduling.dispatcher.enqueue([_queued(build)])
        else:
            self._scheduling.dispatcher.remove(build.id)
        await self._scheduling.builds.refresh(build)
        self._local.build_changed(build)

    async def runners_noticed(self, items: list[str]) -> None:
        for item in items:
            runner_id, _, what = item.partition(":")
            deleted = what == "deleted"
            self._scheduling.runner_noticed(runner_id, deleted=deleted)
            self._forget_runner(runner_id)
            self._local.runner_changed(runner_id, deleted=deleted)

    async def resync(self) -> None:
        """Notices may have been lost: read the queue and the builds held here again."""
        scheduling = self._scheduling
        since = scheduling.dispatcher.generation
        queued = await scheduling.store.builds.queued()
        scheduling.dispatcher.sync(queued, since)
        await self._refresh(scheduling.builds.tracked())

    async def poll(self) -> None:
        """The fallback for a lost notice, cheap enough to run every second."""
        scheduling = self._scheduling
        if scheduling.dispatcher.depth()[1]:  # runners parked here
            scheduling.dispatcher.enqueue(await scheduling.store.builds.queued(POLL_QUEUED))
        await self._refresh(scheduling.builds.watched())

    async def _refresh(self, build_ids: list[str]) -> None:
        if not build_ids:
            return
        builds = self._scheduling.builds
        statuses = await self._scheduling.store.builds.statuses(build_ids)
        changed = [
            build_id
            for build_id in build_ids
            if statuses.get(build_id) is not builds.status_of(build_id)
        ]
        if changed:
            for build in await self._scheduling.store.builds.many(changed):
                await self._apply(build)


def _queued(build: Build) -> QueuedBuild:
    return QueuedBuild(build.id, frozenset(build.required_labels), build.queued_at)
