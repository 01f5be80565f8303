"""The scheduling runtime: the dispatcher, the build and runner actors, the hot-path commits.

This is where the actors meet the store. It starts a BuildActor for every build bound to
a runner and a RunnerActor for every runner that calls in, finds them again by id, and
turns a lost runner into requeued builds. Every build and runner change committed here
(claims, transitions, heartbeats that change a runner's status, a lost runner) is told
to the event hub (``events``) once committed.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import trio

from oore.actors import ActorError, GroupCommitter, Registry, Supervisor, SupervisorNotRunning
from oore.actors.build import (
    BuildActorDeps,
    BuildHandle,
    BuildTimeouts,
    build_actor_spec,
)
from oore.actors.dispatcher import Dispatcher
from oore.actors.runner import RunnerHandle, runner_actor_spec
from oore.actors.supervisor import supervisor_spec
from oore.domain.builds import (
    Build,
    BuildStatus,
    QueuedBuild,
    Transition,
    WaitingReason,
    waiting_reason,
)
from oore.domain.runners import RunnerStatus
from oore.errors import ApiError
from oore.eventlog import event
from oore.live.events import EventsHandle
from oore.services.clock import WallClock
from oore.services.metrics import ServiceMetrics
from oore.store import Store
from oore.store.builds import ClaimRow
from oore.store.runners import Heartbeat

log = logging.getLogger(__name__)

CLAIM_BATCH = 256
HEARTBEAT_BATCH = 1000
WAITING_LOGGED = 10_000  # build ids remembered as already logged waiting


@dataclass(frozen=True)
class SchedulingConfig:
    """Timings of leases and timeouts, in seconds."""

    runner_lease: float = 120.0
    assign_timeout: float = 300.0
    build_timeout: float = 3600.0


class BuildRecords:
    """The store's builds for the build actors and services: every committed transition
    is told to the event hub."""

    def __init__(self, store: Store, events: EventsHandle) -> None:
        self._store = store
        self._events = events

    async def get(self, build_id: str) -> Build | None:
        return await self._store.builds.get(build_id)

    async def transition(self, t: Transition) -> Build:
        build = await self._store.builds.transition(t)
        self._events.build_changed(build)
        if t.expected.active and not build.status.active and build.last_runner_id:
            self._events.runner_changed(build.last_runner_id)  # its current builds changed
        return build


class Scheduling:
    """Owns the scheduling actors; services reach them through it."""

    def __init__(
        self,
        store: Store,
        clock: WallClock,
        config: SchedulingConfig,
        metrics: ServiceMetrics,
        events: EventsHandle | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.config = config
        self.metrics = metrics
        self.events = EventsHandle() if events is None else events
        self.build_records = BuildRecords(store, self.events)
        self._runner_status: dict[str, RunnerStatus] = {}  # as last committed here
        self.dispatcher = Dispatcher(self._load_dispatcher)
        self.claims: GroupCommitter[ClaimRow] = GroupCommitter(
            "claims", self._commit_claims, max_batch=CLAIM_BATCH, capacity=8192
        )
        self.heartbeats: GroupCommitter[Heartbeat] = GroupCommitter(
            "heartbeats",
            self._commit_heartbeats,
            max_batch=HEARTBEAT_BATCH,
            capacity=16384,
        )
        self.waiting = WaitingBuilds(store, clock, config.runner_lease)
        self._long_polls: set[trio.CancelScope] = set()
        self._ending = False
        self.build_actors: Registry[str, BuildHandle] = Registry("builds")
        self.runner_actors: Registry[str, RunnerHandle] = Registry("runners")
        self.builds_supervisor = Supervisor("builds", max_restarts=100, period=10.0)
        self.runners_supervisor = Supervisor("runners", max_restarts=100, period=10.0)
        self._deps = BuildActorDeps(
            records=self.build_records,
            dispatcher=self.dispatcher,
            wall_now=clock.now,
            timeouts=BuildTimeouts(config.assign_timeout, config.build_timeout),
            on_end=self._build_ended,
        )

    @contextmanager
    def long_poll(self) -> Iterator[trio.CancelScope]:
        """The scope of a long-poll wait, cut short when the daemon begins to stop.

        Stopping answers parked claims (no job) and job-state polls (current status) at
        once, so shutdown does not sit out its grace period on idle runners.
        """
        scope = trio.CancelScope()
        if self._ending:
            scope.cancel()
        self._long_polls.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._long_polls.discard(scope)

    @property
    def ending(self) -> bool:
        """True once the daemon has begun to stop."""
        return self._ending

    def end_long_polls(self) -> None:
        """The daemon is stopping: every long-poll, open or to come, answers now."""
        self._ending = True
        for scope in list(self._long_polls):
            scope.cancel()

    def supervisor(self) -> Supervisor:
        """The subtree to put under the root supervisor, in start order."""
        return Supervisor(
            "scheduling",
            [
                self.claims.spec(),
                self.heartbeats.spec(),
                self.dispatcher.spec(),
                supervisor_spec(self.builds_supervisor),
                supervisor_spec(self.runners_supervisor),
            ],
            max_restarts=5,
            period=10.0,
        )

    async def _commit_claims(self, claims: list[ClaimRow]) -> None:
        await self.store.builds.commit_claims(claims)
        for claim in claims:
            if claim.build is not None:
                self.events.build_changed(claim.build)
                self.events.runner_changed(claim.runner_id)  # its current builds changed

    async def _commit_heartbeats(self, beats: list[Heartbeat]) -> None:
        await self.store.runners.commit_heartbeats(beats)
        for beat in beats:
            self.runner_status(beat.runner_id, beat.status)

    def runner_status(self, runner_id: str, status: RunnerStatus) -> None:
        """A runner's status as just committed: its change is an event."""
        if self._runner_status.get(runner_id) is not status:
            self._runner_status[runner_id] = status
            self.events.runner_changed(runner_id)

    def runner_deleted(self, runner_id: str) -> None:
        self._runner_status.pop(runner_id, None)
        self.events.runner_changed(runner_id, deleted=True)

    async def _load_dispatcher(self) -> tuple[list[QueuedBuild], dict[str, int]]:
        return await self.store.builds.queued(), await self.store.builds.active_counts()

    async def recover(self) -> None:
        """Give every build bound to a runner its actor, and its runner a fresh lease."""
        for build in await self.store.builds.active():
            await self.build_actor(build)
            if build.runner_id is not None:
                await self.runner_seen(build.runner_id)

    async def resume_after_outages(self) -> None:
        """Each time the database comes back from an outage, resume from what it holds.

        Runs until cancelled. While the database was away, answers were lost and actors
        may have stopped; the database is the judge of what happened: every queued build
        is offered to the dispatcher again (it ignores those it already indexes; a build
        offered twice is committed once, by the claim's compare-and-set), every build
        bound to a runner gets its actor back, and its runner a fresh lease, since it
        could not call in while the database was away. If the database goes away again
        meanwhile, the next recovery starts over.
        """
        db = self.store.db
        seen = db.recoveries
        while True:
            seen = await db.wait_recovered(seen)
            try:
                queued = await self.store.builds.queued()
                await self.dispatcher.enqueue(queued)
                await self.recover()
            except (ApiError, ActorError) as exc:
                log.warning("resuming after the database outage failed: %s", exc)
            else:
                log.info("resumed after the database outage: %d builds queued", len(queued))

    async def build_actor(self, build: Build) -> BuildHandle | None:
        """The actor of a build bound to a runner, started if needed; None for other builds."""
        handle = self.build_actors.get(build.id)
        if handle is not None and not handle.stopping:
            return handle
        if not build.status.active or handle is not None:
            return None
        handle = BuildHandle(build.id)
        self.build_actors.register(build.id, handle)
        spec = build_actor_spec(
            handle,
            self._deps,
            build,
            on_exit=lambda: self.build_actors.unregister(build.id, handle),
        )
        try:
            await self.builds_supervisor.start_child(spec)
        except (SupervisorNotRunning, ValueError):
            self.build_actors.unregister(build.id, handle)
            return None
        return handle

    async def runner_seen(self, runner_id: str) -> None:
        """Renew the runner's lease, starting its actor on its first call."""
        handle = self.runner_actors.get(runner_id)
        if handle is None:
            handle = RunnerHandle(runner_id)
            self.runner_actors.register(runner_id, handle)
            spec = runner_actor_spec(
                handle,
                lease=self.config.runner_lease,
                on_lost=self._runner_lost,
                on_exit=lambda: self.runner_actors.unregister(runner_id, handle),
            )
            try:
                await self.runners_supervisor.start_child(spec)
            except (SupervisorNotRunning, ValueError):
                self.runner_actors.unregister(runner_id, handle)
                return
        handle.seen()

    async def _runner_lost(self, runner_id: str) -> None:
        """No call from the runner within its lease: requeue its builds, mark it offline."""
        now = self.clock.now()
        event(
            log,
            "runner.lost",
            level=logging.WARNING,
            runner_id=runner_id,
            lease_s=self.config.runner_lease,
        )
        for build in await self.store.builds.active(runner_id=runner_id):
            handle = await self.build_actor(build)
            if handle is not None:
                with trio.move_on_after(10):
                    await handle.runner_lost(runner_id)
        await self.store.runners.mark_offline(runner_id, now)
        self.runner_status(runner_id, RunnerStatus.OFFLINE)

    async def _build_ended(self, build: Build) -> None:
        """A build left assigned/running (hook for notifications and log streams)."""
        self.metrics.build_finished(build)


class WaitingBuilds:
    """Why queued builds wait: no online runner could take them (``waiting_reason``).

    Asked when builds are queued and shown; each build waiting is logged once (the ids
    logged are remembered, a bounded number of them).
    """

    def __init__(self, store: Store, clock: WallClock, runner_lease: float) -> None:
        self._store = store
        self._clock = clock
        self._lease = int(runner_lease)
        self._logged: OrderedDict[str, None] = OrderedDict()

    async def explain(self, builds: Sequence[Build]) -> list[Build]:
        """The builds, the queued ones with their waiting reason (one database call, and
        none when no build is queued)."""
        needs = {
            frozenset(build.required_labels)
            for build in builds
            if build.status is BuildStatus.QUEUED
        }
        if not needs:
            return list(builds)
        since = self._clock.now() - self._lease
        held = await self._store.runners.online_holding(since, list(needs | {frozenset()}))
        explained = []
        for build in builds:
            if build.status is BuildStatus.QUEUED:
                reason = waiting_reason(
                    build.required_labels,
                    anyone_online=held[frozenset()],
                    labels_held=held[frozenset(build.required_labels)],
                )
                build = replace(build, waiting=reason)
                if build.waiting is not None:
                    self._log_once(build, build.waiting)
            explained.append(build)
        return explained

    def _log_once(self, build: Build, reason: WaitingReason) -> None:
        if build.id in self._logged:
            return
        self._logged[build.id] = None
        if len(self._logged) > WAITING_LOGGED:
            self._logged.popitem(last=False)
        event(
            log,
            "build.waiting",
            build.log_fields(),
            reason=reason.code,
            message=reason.message,
            level=logging.WARNING,
        )


async def start_scheduling(
    store: Store,
    clock: WallClock,
    config: SchedulingConfig,
    parent: Supervisor,
    metrics: ServiceMetrics,
    *,
    events: EventsHandle | None = None,
) -> Scheduling:
    """Start the scheduling subtree under ``parent`` (which stops it) and recover state;
    committed changes are told to ``events``."""
    scheduling = Scheduling(store, clock, config, metrics, events)
    recovered = await store.builds.recover_scheduled(clock.now())
    if recovered:
        log.info("moved %d scheduled builds back to the queue", recovered)
    await parent.start_child(supervisor_spec(scheduling.supervisor()))
    await scheduling.recover()
    return scheduling
