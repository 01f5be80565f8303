"""The one door into the runner hot path: services authorize, then call :class:`Scheduling`.

A claim reads: route or channel frame → service (authentication, input checks) →
:meth:`Scheduling.claim` → dispatcher (in memory) → claim batch (one transaction) →
answer. A build queued while an eligible runner is parked is assigned to it in the
trigger's own transaction (:meth:`Scheduling.queue`). Every build and runner change
committed here is told to the event hub once committed.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import trio

from oore.actors import GroupCommitter
from oore.domain.builds import (
    Build,
    BuildEvent,
    BuildStatus,
    QueuedBuild,
    StepResult,
    Transition,
    check_transition,
    concurrent_modification,
)
from oore.domain.crypto import SecretBox
from oore.domain.runners import Runner, RunnerStatus
from oore.domain.tokens import hash_token, new_token
from oore.errors import ApiError, Conflict, NotFound, Unauthorized
from oore.eventlog import event
from oore.scheduling.builds import BuildMachines, BuildRecords, BuildTimeouts, log_ended
from oore.scheduling.claims import Claims
from oore.scheduling.deadlines import Deadlines
from oore.scheduling.dispatcher import Dispatcher, Parked, RunnerSlot
from oore.scheduling.job import Job, clear_variables
from oore.scheduling.leases import FLUSH_EVERY, Leases
from oore.scheduling.ports import Clock, Events, Metrics
from oore.scheduling.waiting import WaitingBuilds
from oore.store import Store
from oore.store.builds import ClaimOutcome, ClaimTo, NewBuild, PickRow
from oore.store.runners import Heartbeat

log = logging.getLogger(__name__)

CLAIM_COMMIT_DEADLINE = 30.0
CANCEL_ATTEMPTS = 5
HEARTBEAT_BATCH = 1000


@dataclass(frozen=True)
class SchedulingConfig:
    """Timings of leases and timeouts, in seconds."""

    runner_lease: float = 120.0
    assign_timeout: float = 300.0
    build_timeout: float = 3600.0
    last_seen_every: float = FLUSH_EVERY  # how often ``last_seen`` times are written


class LongPoll:
    """A long-poll's cancel scope, known to :meth:`Scheduling.end_long_polls` while entered.

    A class rather than a generator context manager: one is held by every parked claim
    and every open runner channel, for as long as they wait.
    """

    __slots__ = ("_polls", "scope")

    def __init__(self, polls: set[trio.CancelScope], scope: trio.CancelScope) -> None:
        self._polls = polls
        self.scope = scope

    def __enter__(self) -> trio.CancelScope:
        self._polls.add(self.scope)
        try:
            return self.scope.__enter__()
        except BaseException:
            self._polls.discard(self.scope)
            raise

    def __exit__(
        self,
        etype: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._polls.discard(self.scope)
        return self.scope.__exit__(etype, exc, tb)


class Scheduling:
    """The runner hot path: claims, reports, cancels, job-state polls, heartbeats, leases.

    Built once per daemon (:func:`oore.scheduling.tree.start_scheduling` starts its tasks).
    Methods raise :class:`~oore.errors.ApiError` subclasses as the runner protocol says.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        config: SchedulingConfig,
        metrics: Metrics,
        events: Events,
        secrets: SecretBox | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.config = config
        self.metrics = metrics
        self.events = events
        self._secrets = secrets
        self.dispatcher = Dispatcher()
        self.claims = Claims(store)
        self.heartbeats: GroupCommitter[Heartbeat] = GroupCommitter(
            "heartbeats", self._commit_heartbeats, max_batch=HEARTBEAT_BATCH, capacity=16384
        )
        self.deadlines = Deadlines(self._due)
        self.leases = Leases(
            store,
            clock,
            self._runner_lost,
            lease=config.runner_lease,
            flush_every=config.last_seen_every,
        )
        self.records = BuildRecords(store, events)
        self.builds = BuildMachines(
            store,
            self.records,
            self.dispatcher,
            self.deadlines,
            clock,
            metrics,
            BuildTimeouts(config.assign_timeout, config.build_timeout),
        )
        self.waiting = WaitingBuilds(
            store, clock, config.runner_lease, lambda: self.dispatcher.macos_paused
        )
        self._runner_status: dict[str, RunnerStatus] = {}  # as last committed here
        self._runner_caps: dict[str, Any] = {}  # capabilities as last committed here
        self._long_polls: set[trio.CancelScope] = set()
        self._ending = False
        self.pause_changes = 0  # moves on with every change of the runner pause applied

    # -- stopping ------------------------------------------------------------------------

    def long_poll(self, deadline: float = math.inf) -> LongPoll:
        """The scope of a long-poll wait (ending at ``deadline``), cut short when the daemon
        begins to stop.

        Stopping answers parked claims (no job) and job-state polls (current status) at
        once, so shutdown does not sit out its grace period on idle runners.
        """
        scope = trio.CancelScope(deadline=deadline)
        if self._ending:
            scope.cancel()
        return LongPoll(self._long_polls, scope)

    @property
    def ending(self) -> bool:
        """True once the daemon has begun to stop."""
        return self._ending

    def end_long_polls(self) -> None:
        """The daemon is stopping: every long-poll, open or to come, answers now."""
        self._ending = True
        for scope in list(self._long_polls):
            scope.cancel()

    # -- runners -------------------------------------------------------------------------

    async def runner_seen(self, runner_id: str) -> None:
        """The runner called: renew its lease (and note when it was last seen)."""
        self.leases.seen(runner_id)

    async def heartbeat(self, runner_id: str, status: RunnerStatus, capabilities: Any) -> None:
        """A heartbeat: renews the lease; a changed status or capabilities are committed
        before this returns, an unchanged one is only noted (``last_seen``, in batches)."""
        self.leases.seen(runner_id)
        caps = capabilities if isinstance(capabilities, dict) and capabilities else None
        if self._runner_status.get(runner_id) is status and (
            caps is None or self._runner_caps.get(runner_id) == caps
        ):
            return
        await self.heartbeats.submit_one(Heartbeat(runner_id, status, caps, self.clock.now()))
        if caps is not None:
            self._runner_caps[runner_id] = caps

    async def _commit_heartbeats(self, beats: list[Heartbeat]) -> None:
        await self.store.runners.commit_heartbeats(beats)
        for beat in beats:
            self.runner_status(beat.runner_id, beat.status)

    def runner_status(self, runner_id: str, status: RunnerStatus) -> None:
        """A runner's status as just committed: its change is an event."""
        if self._runner_status.get(runner_id) is not status:
            self._runner_status[runner_id] = status
            self.events.runner_changed(runner_id)

    def runner_noticed(self, runner_id: str, *, deleted: bool) -> None:
        """Another daemon changed the runner: what this one remembers of it may be stale."""
        self._runner_status.pop(runner_id, None)
        self._runner_caps.pop(runner_id, None)
        if deleted:
            self.leases.forget(runner_id)

    def runner_deleted(self, runner_id: str) -> None:
        self.runner_noticed(runner_id, deleted=True)
        self.events.runner_changed(runner_id, deleted=True)

    async def _runner_lost(self, runner_id: str) -> None:
        """No call from the runner within its lease: requeue its builds, mark it offline.

        Unless the database says it was heard from within its lease: it moved to another
        daemon sharing the database, which keeps its lease now.
        """
        seen = await self.store.runners.last_seen(runner_id)
        if seen is not None and seen > self.clock.now() - self.config.runner_lease + 1:
            return
        event(
            log,
            "runner.lost",
            level=logging.WARNING,
            runner_id=runner_id,
            lease_s=self.config.runner_lease,
        )
        await self.builds.runner_lost(runner_id)
        await self.store.runners.mark_offline(runner_id, self.clock.now())
        self.runner_status(runner_id, RunnerStatus.OFFLINE)

    # -- claims --------------------------------------------------------------------------

    @property
    def direct_macos_paused(self) -> bool:
        """The instance's runner pause as this daemon applies it (in memory)."""
        return self.dispatcher.macos_paused

    def pause_direct_macos(self, paused: bool) -> None:
        """Apply the instance's ``direct_macos_runner_paused``: while on, claims of direct
        macOS runners wait with no build; turned off, the waiting ones are served at once."""
        if paused != self.dispatcher.macos_paused:
            self.pause_changes += 1
            event(log, "runners.direct_macos_pause", paused=paused)
        self.dispatcher.pause_macos(paused)

    def depth(self) -> tuple[int, int]:
        """(queued builds in the dispatcher, parked claims)."""
        return self.dispatcher.depth()

    async def claim(self, runner: Runner, wait: float) -> Job | None:
        """The oldest eligible build, committed to ``runner`` before this returns; None
        after ``wait`` seconds without one (or when the daemon begins to stop).

        Raises 401 ``invalid_token`` when the runner was deleted meanwhile. Cancelled
        after its claim was committed, the build goes back to the queue.
        """
        deadline = trio.current_time() + wait
        if runner.draining or runner.status is RunnerStatus.DRAINING:
            with self.long_poll():
                await trio.sleep_until(deadline)
            return None
        slot = RunnerSlot(
            runner.id,
            frozenset(runner.labels),
            runner.max_concurrent,
            runner.name,
            direct_macos=runner.direct_macos,
        )
        while True:
            build = self.dispatcher.take(slot)
            if build is None:
                if trio.current_time() >= deadline or self._ending:
                    await trio.lowlevel.checkpoint()
                    return None
                parked = self.dispatcher.park(slot)
                await self._wait(parked, deadline)
                if parked.job is not None:
                    return await self._handed(parked.job)
                if parked.error is not None:
                    raise parked.error
                if parked.offer is None:
                    if parked.retry:
                        continue
                    return None
                build = parked.offer
            job = await self._commit(slot, build)
            if job is not None:
                return job

    async def _wait(self, parked: Parked, deadline: float) -> None:
        """Until the parked claim is served or its deadline passes (then it leaves)."""
        try:
            with self.long_poll(deadline):
                await parked.event.wait()
        except BaseException:  # the claimant went away: nothing it was given is lost
            self.dispatcher.leave(parked)
            with trio.CancelScope(shield=True), trio.move_on_after(CLAIM_COMMIT_DEADLINE):
                await self._settle_parked(parked)
            raise
        if parked.event.is_set():
            return
        if parked.reserved:  # a trigger is committing a build to it: hear how it went
            with trio.CancelScope(shield=True), trio.move_on_after(CLAIM_COMMIT_DEADLINE):
                await parked.event.wait()
        else:
            self.dispatcher.leave(parked)

    async def _settle_parked(self, parked: Parked) -> None:
        if parked.reserved and not parked.event.is_set():
            await parked.event.wait()
        if parked.job is not None:
            with contextlib.suppress(ApiError):
                await self.builds.undeliver(parked.job.build)
        elif parked.offer is not None:
            self.dispatcher.give_back(parked.slot.id, parked.offer)

    async def _commit(self, slot: RunnerSlot, queued: QueuedBuild) -> Job | None:
        """Commit a claim for the runner the dispatcher offered ``queued`` to. The database
        picks the build: the oldest eligible one that no other claim holds, usually the
        one offered (another daemon may have claimed that one, or queued an older one).
        None when it had none left (what this daemon's index offered was claimed
        elsewhere); 401 if the runner was deleted meanwhile."""
        now = self.clock.now()
        signing = new_token()
        signing_hash = hash_token(signing)
        lease = now + int(self.config.runner_lease)
        row = PickRow(slot.id, slot.labels, signing_hash, lease, now)
        since = self.dispatcher.generation
        try:
            # Shielded, with a deadline of its own (one scope: this runs for every claim).
            deadline = trio.current_time() + CLAIM_COMMIT_DEADLINE
            with trio.CancelScope(shield=True, deadline=deadline) as committing:
                outcome = await self.claims.commit(row)
            if committing.cancelled_caught:
                raise trio.TooSlowError
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(CLAIM_COMMIT_DEADLINE):
                await self._settle_failed_commit(slot.id, queued, signing_hash)
            raise
        if outcome.build is None:
            if outcome.runner_gone:
                self.dispatcher.give_back(slot.id, queued)
                raise Unauthorized("invalid_token", "This runner was deleted")
            self.dispatcher.none_for(slot, since)
            self.dispatcher.release(slot.id)
            return None
        if outcome.build.id != queued.id:
            self.dispatcher.picked_instead(queued, outcome.build.id)
        return await self._handed(await self._claimed(slot, outcome, signing, lease, now))

    async def _claimed(
        self, slot: RunnerSlot, outcome: ClaimOutcome, signing: str, lease: int, now: int
    ) -> Job:
        """A committed claim: take charge of the build, renew the runner's lease."""
        build = outcome.build
        assert build is not None
        self.builds.track(build)
        # A long-poll may outlast the lease it started with; the lease of the build just
        # handed over runs from now.
        self.leases.seen(slot.id)
        self.metrics.build_claimed(build)
        self.events.build_changed(build)
        self.events.runner_changed(slot.id)  # its current builds changed
        try:
            variables = clear_variables(outcome.variables, self._secrets)
        except ApiError:
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(CLAIM_COMMIT_DEADLINE),
                contextlib.suppress(ApiError),
            ):
                await self.builds.undeliver(build)
            raise
        event(
            log,
            "build.claimed",
            build.log_fields(),
            runner_id=slot.id,
            runner=slot.name,
            queued_s=now - build.queued_at,
            attempt=build.attempt,
        )
        job = Job(
            build,
            signing,
            lease,
            variables,
            outcome.android_signing,
            outcome.ios_signing,
            outcome.sealed_passwords,
        )
        self.builds.handed(job)
        return job

    async def _handed(self, job: Job) -> Job:
        """The job, unless the claimant was cancelled meanwhile: then it goes back."""
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(CLAIM_COMMIT_DEADLINE),
                contextlib.suppress(ApiError),
            ):
                await self.builds.undeliver(job.build)
            raise
        return job

    async def _settle_failed_commit(
        self, runner_id: str, queued: QueuedBuild, signing_hash: str
    ) -> None:
        """The claim's commit failed, or its outcome is unknown (deadline): ask the database.

        Committed after all (a build holds the claim's signing token): the runner will not
        hear of it, so requeue it. Otherwise the offer goes back to the front of the queue.
        """
        try:
            current = await self.store.builds.claimed_with(runner_id, signing_hash)
        except ApiError:
            current = None
        if current is not None and current.status is BuildStatus.ASSIGNED:
            try:
                await self.builds.undeliver(current)
            except ApiError:
                pass
            else:
                if current.id != queued.id:
                    self.dispatcher.put_back(queued)
                return
        self.dispatcher.give_back(runner_id, queued)

    # -- the queue -----------------------------------------------------------------------

    async def queue(self, new: NewBuild) -> Build | None:
        """Insert a queued build (None if its project is gone). When an eligible runner is
        parked, the build is assigned to it in the same transaction and the runner is
        answered at that commit; otherwise the build waits in the dispatcher."""
        parked = self.dispatcher.reserve(frozenset(new.required_labels))
        if parked is None:
            build = await self.store.builds.create(new)
            if build is not None:
                self._queued(build)
            return build
        slot = parked.slot
        signing = new_token()
        lease = new.now + int(self.config.runner_lease)
        try:
            created = await self.store.builds.create_claimed(
                new, ClaimTo(slot.id, hash_token(signing), lease)
            )
        except BaseException:
            self._unreserve(parked)
            raise
        if created is None:
            self._unreserve(parked)
            return None
        build, outcome = created
        if outcome.build is None:  # the runner was deleted meanwhile
            self.dispatcher.release(slot.id)
            parked.error = Unauthorized("invalid_token", "This runner was deleted")
            parked.event.set()
            self._queued(build)
            return build
        try:
            parked.job = await self._claimed(slot, outcome, signing, lease, new.now)
        except ApiError as exc:
            parked.error = exc
        parked.event.set()
        return outcome.build

    def _unreserve(self, parked: Parked) -> None:
        self.dispatcher.release(parked.slot.id)
        parked.retry = True
        parked.event.set()

    def _queued(self, build: Build) -> None:
        self.events.build_changed(build)
        self.dispatcher.enqueue(
            [QueuedBuild(build.id, frozenset(build.required_labels), build.queued_at)]
        )

    # -- builds bound to a runner ----------------------------------------------------------

    def held(self, build_id: str, runner_id: str) -> Build | None:
        """The build as this daemon last knew it, if bound here to ``runner_id``."""
        return self.builds.held(build_id, runner_id)

    def job_of(self, build_id: str, runner_id: str) -> Job | None:
        """The job this daemon handed to ``runner_id`` for the attempt it holds, if it did."""
        return self.builds.job_of(build_id, runner_id)

    async def report(
        self,
        runner_id: str,
        build: Build,
        status: BuildStatus,
        *,
        exit_code: int | None = None,
        error_message: str | None = None,
        steps: Sequence[StepResult] | None = None,
    ) -> tuple[Build, list[BuildEvent]]:
        """The runner reports ``running``, ``succeeded`` or ``failed``; the build as
        committed and its events with the new one. 403 ``runner_mismatch`` once it is not
        bound to that runner, 409 ``invalid_transition`` / ``concurrent_modification`` as
        the store decides."""
        return await self.builds.report(
            runner_id,
            build,
            status,
            exit_code=exit_code,
            error_message=error_message,
            steps=steps,
        )

    async def job_state(self, build: Build, wait: float) -> Build:
        """The build, once its status differs from ``build.status`` or after ``wait``
        seconds (or at once when the daemon begins to stop)."""
        if wait <= 0 or not build.status.active:
            return build
        with self.long_poll():
            return await self.builds.watch(build, wait)
        return build

    async def cancel(self, build: Build, *, actor: str, reason: str) -> Build:
        """Cancel from queued/scheduled/assigned/running (409 from a terminal state); a
        runner watching the build hears of it at once."""
        for _ in range(CANCEL_ATTEMPTS):
            check_transition(build.status, BuildStatus.CANCELED)
            try:
                if build.status.active:
                    return await self.builds.cancel(build, actor=actor, reason=reason)
                canceled = await self.records.transition(
                    Transition(
                        build.id,
                        build.status,
                        BuildStatus.CANCELED,
                        actor,
                        reason,
                        self.clock.now(),
                    )
                )
                self.metrics.build_finished(canceled)
                self.dispatcher.remove(build.id)
                log_ended(canceled, None)
                return canceled
            except Conflict as exc:
                if exc.code != "concurrent_modification":
                    raise
            fresh = await self.store.builds.get(build.id)
            if fresh is None:
                raise NotFound("not_found", "Build not found")
            build = fresh
        raise concurrent_modification()

    async def _due(self, build_id: str) -> None:
        await self.builds.due(build_id)

    # -- maintenance (on the leader of the daemons sharing the database) --------------------

    async def sweep(self) -> None:
        """What no other daemon may be left to do: runners whose lease ran out wherever they
        were connected (their daemon died, or they did), and builds past a timeout that no
        daemon's deadline caught (their daemon died). Each is judged by the database."""
        now = self.clock.now()
        for runner_id in await self.store.runners.overdue(now - int(self.config.runner_lease)):
            expires = self.leases.expires_in(runner_id)
            if expires is None or expires <= 0:
                await self._runner_lost(runner_id)
        for build in await self.store.builds.overdue(
            now, self.config.assign_timeout, self.config.build_timeout
        ):
            self.builds.track(build)  # its deadline has passed: it falls due at once

    # -- recovery ------------------------------------------------------------------------

    async def recover(self) -> None:
        """Take charge of every build bound to a runner, and give its runner a fresh lease."""
        for build in await self.store.builds.active():
            self.builds.track(build)
            if build.runner_id is not None:
                self.leases.seen(build.runner_id)

    async def resume_after_outages(self) -> None:
        """Each time the database comes back from an outage, resume from what it holds.

        Runs until cancelled. While the database was away, answers were lost; the
        database is the judge of what happened: every queued build is offered to the
        dispatcher again (it ignores those it already indexes; a build offered twice is
        committed once, by the claim's compare-and-set), every build bound to a runner is
        taken charge of, and its runner gets a fresh lease, since it could not call in
        while the database was away. If the database goes away again meanwhile, the next
        recovery starts over.
        """
        db = self.store.db
        seen = db.recoveries
        while True:
            seen = await db.wait_recovered(seen)
            try:
                queued = await self.store.builds.queued()
                self.dispatcher.enqueue(queued)
                await self.recover()
            except ApiError as exc:
                log.warning("resuming after the database outage failed: %s", exc)
            else:
                log.info("resumed after the database outage: %d builds queued", len(queued))
