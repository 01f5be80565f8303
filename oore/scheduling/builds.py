"""The state machines of the builds bound to a runner (assigned or running), with no task
or actor of their own.

Runner reports, user cancels, lost runners and the assignment and build timeouts of one
build are applied one at a time (a lock per build, held in a dict while the build is
bound to a runner and dropped when it leaves), each as a compare-and-set in the store.
Job-state long-polls wait on the build's watcher list and are answered the moment its
status changes, which is how a runner learns of a cancel at once instead of on its next
poll. Deadlines live in one heap (:mod:`oore.scheduling.deadlines`).

Queued builds are the dispatcher's until a claim commits. When a build leaves
``assigned``/``running`` the dispatcher is told (release, and enqueue if it went back to
the queue), every watcher is answered and the build's entry is dropped. After a restart
the entries are rebuilt from the store (``track``), so a crash loses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio

from oore.actors import Reply
from oore.domain.builds import (
    MAX_ATTEMPTS,
    Build,
    BuildEvent,
    BuildStatus,
    QueuedBuild,
    StepResult,
    Transition,
    concurrent_modification,
)
from oore.errors import Conflict, Forbidden
from oore.eventlog import event
from oore.scheduling.deadlines import Deadlines
from oore.scheduling.dispatcher import Dispatcher
from oore.scheduling.job import Job
from oore.scheduling.ports import Clock, Events, Metrics
from oore.store import Store

log = logging.getLogger(__name__)

# Where a build's snapshot keeps its file's timeout in seconds (set at trigger).
FILE_TIMEOUT_KEY = "timeout_seconds"


@dataclass(frozen=True)
class BuildTimeouts:
    """Seconds a build may stay assigned without starting, and may run."""

    assigned: float = 300.0
    running: float = 3600.0


@dataclass(eq=False)
class _Bound:
    """A build bound to a runner: its last known row, its lock, its parked watchers."""

    build: Build
    lock: trio.Lock = field(default_factory=trio.Lock)
    watchers: list[Reply[Build]] = field(default_factory=list)
    ended: bool = False
    job: Job | None = None  # as this daemon handed it to the runner, when it did


def not_yours() -> Forbidden:
    return Forbidden("runner_mismatch", "This build is not assigned to this runner")


class BuildRecords:
    """The store's build transitions, each told to the event hub once committed."""

    def __init__(self, store: Store, events: Events) -> None:
        self._store = store
        self._events = events

    async def transition(self, t: Transition) -> Build:
        return self._told(t, await self._store.builds.transition(t))

    async def transition_with_events(self, t: Transition) -> tuple[Build, list[BuildEvent]]:
        """:meth:`transition`, and the build's events with the new one, in one call."""
        build, events = await self._store.builds.transition_with_events(t)
        return self._told(t, build), events

    def _told(self, t: Transition, build: Build) -> Build:
        self._events.build_changed(build)
        if t.expected.active and not build.status.active and build.last_runner_id:
            self._events.runner_changed(build.last_runner_id)  # its current builds changed
        return build


class BuildMachines:
    """Every assigned or running build's state machine, by build id."""

    def __init__(
        self,
        store: Store,
        records: BuildRecords,
        dispatcher: Dispatcher,
        deadlines: Deadlines,
        clock: Clock,
        metrics: Metrics,
        timeouts: BuildTimeouts,
    ) -> None:
        self._store = store
        self._records = records
        self._dispatcher = dispatcher
        self._deadlines = deadlines
        self._clock = clock
        self._metrics = metrics
        self._timeouts = timeouts
        self._bound: dict[str, _Bound] = {}

    def __len__(self) -> int:
        return len(self._bound)

    def watching(self, build_id: str) -> int:
        """How many job-state polls wait on the build."""
        bound = self._bound.get(build_id)
        return 0 if bound is None else sum(not w.abandoned for w in bound.watchers)

    def track(self, build: Build) -> None:
        """Take charge of a build bound to a runner (claimed, or found at start)."""
        if build.status.active and build.id not in self._bound:
            bound = _Bound(build)
            self._bound[build.id] = bound
            self._arm(bound)

    def tracks(self, build_id: str) -> bool:
        return build_id in self._bound

    def watched(self) -> list[str]:
        """The builds a job-state poll waits on."""
        return [build_id for build_id, bound in self._bound.items() if bound.watchers]

    def tracked(self) -> list[str]:
        return list(self._bound)

    def status_of(self, build_id: str) -> BuildStatus | None:
        """The status of a tracked build as last known here."""
        bound = self._bound.get(build_id)
        return None if bound is None else bound.build.status

    async def refresh(self, build: Build) -> None:
        """Another daemon committed a change of ``build`` (as read since): apply it here,
        as if this daemon had committed it (watchers answered, deadlines moved, the
        dispatcher told when it left its runner)."""
        bound = self._bound.get(build.id)
        if bound is None:
            return
        async with bound.lock:
            before = bound.build
            if bound.ended or _same_state(build, before):
                return
            # ``build`` was read before the lock was taken: a change committed here since
            # (a runner's report) would be undone by it. Read it again now that no change
            # here can come in between.
            fresh = await self._store.builds.get(build.id)
            if fresh is None or _same_state(fresh, before):
                return
            build = fresh
            if build.status.active and build.runner_id != before.runner_id:
                # Requeued and claimed again meanwhile: it left its runner, then came back.
                self._end(bound, before, None)
                if before.runner_id is not None:
                    self._dispatcher.release(before.runner_id)
                self.track(build)
                return
            self._changed(bound, before, build)

    def _of(self, build: Build) -> _Bound | None:
        """The entry of ``build``, taken charge of if the store says it is bound."""
        self.track(build)
        return self._bound.get(build.id)

    # -- the calls --------------------------------------------------------------------------

    async def report(
        self,
        runner_id: str,
        build: Build,
        status: BuildStatus,
        *,
        exit_code: int | None,
        error_message: str | None,
        steps: Sequence[StepResult] | None,
    ) -> tuple[Build, list[BuildEvent]]:
        """The runner's report, committed, and the build's events with it; 403
        ``runner_mismatch`` once the build is not bound to it, 409 as the store decides."""
        bound = self._of(build)
        if bound is None:
            raise not_yours()
        async with bound.lock:
            current = bound.build
            if bound.ended or current.runner_id != runner_id or not current.status.active:
                raise not_yours()
            if status is current.status:
                # A retried report whose first answer was lost (the daemon restarted after
                # committing it): already true, so acknowledge it instead of oored's 409.
                return current, await self._store.builds.events(current.id)
            after, events = await self._move(
                bound,
                status,
                f"runner:{runner_id}",
                error_message or "status update from runner",
                exit_code=exit_code,
                steps=steps,
                runner_id=runner_id,
                events=True,
            )
            assert events is not None
            return after, events

    def held(self, build_id: str, runner_id: str) -> Build | None:
        """The build as last known here, if it is bound to ``runner_id`` (no read)."""
        bound = self._held(build_id, runner_id)
        return None if bound is None else bound.build

    def handed(self, job: Job) -> None:
        """Keep the job handed to the build's runner with the build, while it is bound."""
        bound = self._bound.get(job.build.id)
        if bound is not None and not bound.ended:
            bound.job = job

    def job_of(self, build_id: str, runner_id: str) -> Job | None:
        """The job this daemon handed to ``runner_id`` for the attempt it holds, if any."""
        bound = self._held(build_id, runner_id)
        if bound is None or bound.job is None or bound.job.build.attempt != bound.build.attempt:
            return None
        return bound.job

    def _held(self, build_id: str, runner_id: str) -> _Bound | None:
        bound = self._bound.get(build_id)
        if bound is None or bound.ended or bound.build.runner_id != runner_id:
            return None
        return bound

    async def cancel(self, build: Build, *, actor: str, reason: str) -> Build:
        """Cancel a bound build; 409 ``concurrent_modification`` if it left meanwhile."""
        bound = self._of(build)
        if bound is None:
            raise concurrent_modification()
        async with bound.lock:
            if bound.ended:
                raise concurrent_modification()
            canceled, _ = await self._move(bound, BuildStatus.CANCELED, actor, reason)
            return canceled

    async def watch(self, build: Build, wait: float) -> Build:
        """The build once its status is not ``build.status``, or as it is after ``wait``."""
        if build.id not in self._bound:  # perhaps ended since the caller read it
            build = await self._store.builds.get(build.id) or build
        bound = self._of(build)
        if bound is None:
            return build
        if bound.ended or bound.build.status is not build.status:
            return bound.build
        reply: Reply[Build] = Reply()
        bound.watchers = [w for w in bound.watchers if not w.abandoned]
        bound.watchers.append(reply)
        with trio.move_on_after(wait):
            return await reply.wait()
        return bound.build

    async def runner_lost(self, runner_id: str) -> None:
        """No call from the runner within its lease: requeue (or fail) its builds."""
        held = {b.id: b for b in await self._store.builds.active(runner_id=runner_id)}
        held.update({k: v.build for k, v in self._bound.items() if v.build.runner_id == runner_id})
        for build in held.values():
            bound = self._of(build)
            if bound is None:
                continue
            async with bound.lock:
                if not bound.ended and bound.build.runner_id == runner_id:
                    await self._lost(bound)

    async def undeliver(self, build: Build) -> None:
        """The runner never heard of its claim: the build goes back to the queue."""
        bound = self._of(build)
        if bound is None:
            return
        async with bound.lock:
            if not bound.ended and bound.build.status is BuildStatus.ASSIGNED:
                await self._try_move(
                    bound, BuildStatus.QUEUED, "claim answer not delivered", requeue=True
                )

    async def due(self, build_id: str) -> None:
        """The build's deadline passed: requeue it (never started) or time it out."""
        bound = self._bound.get(build_id)
        if bound is None:
            return
        async with bound.lock:
            if bound.ended or self._deadlines.armed(build_id) is not None:
                return  # ended, or re-armed meanwhile
            if bound.build.status is BuildStatus.RUNNING:
                await self._try_move(bound, BuildStatus.TIMED_OUT, "build timeout exceeded")
            elif bound.build.status is BuildStatus.ASSIGNED:
                await self._try_move(
                    bound,
                    BuildStatus.QUEUED,
                    "lease timeout: runner never started it",
                    requeue=True,
                )

    # -- inside ------------------------------------------------------------------------

    async def _lost(self, bound: _Bound) -> None:
        build = bound.build
        if build.attempt >= MAX_ATTEMPTS:
            await self._try_move(
                bound,
                BuildStatus.FAILED,
                f"runner lost {build.attempt} times (lease expired); giving up",
            )
        else:
            await self._try_move(
                bound,
                BuildStatus.QUEUED,
                f"runner lost (lease expired); requeued for attempt {build.attempt + 1}",
                requeue=True,
            )

    async def _try_move(
        self, bound: _Bound, target: BuildStatus, reason: str, *, requeue: bool = False
    ) -> None:
        """A system-driven move; losing the race to another writer is fine."""
        try:
            await self._move(bound, target, "system", reason, requeue=requeue)
        except Conflict:
            await self._reload(bound)

    async def _move(
        self,
        bound: _Bound,
        target: BuildStatus,
        actor: str,
        reason: str,
        *,
        exit_code: int | None = None,
        steps: Sequence[StepResult] | None = None,
        requeue: bool = False,
        runner_id: str | None = None,
        events: bool = False,
    ) -> tuple[Build, list[BuildEvent] | None]:
        """Commit the move; the build as committed and, with ``events``, its events with
        the new one (read in the same transaction)."""
        before = bound.build
        transition = Transition(
            build_id=before.id,
            expected=before.status,
            target=target,
            actor=actor,
            reason=reason,
            now=self._clock.now(),
            exit_code=exit_code,
            steps=steps,
            requeue=requeue,
            runner_id=runner_id,
        )
        history: list[BuildEvent] | None = None
        try:
            if events:
                after, history = await self._records.transition_with_events(transition)
            else:
                after = await self._records.transition(transition)
        except Conflict as exc:
            if exc.code == "concurrent_modification":
                await self._reload(bound)
            raise
        self._changed(bound, before, after)
        return after, history

    async def _reload(self, bound: _Bound) -> None:
        before = bound.build
        after = await self._store.builds.get(before.id)
        if after is None:
            self._end(bound, before, None)
        elif after.status is not before.status:
            self._changed(bound, before, after)

    def _changed(self, bound: _Bound, before: Build, after: Build) -> None:
        bound.build = after
        if after.status.active:
            self._flush(bound)
            self._arm(bound)
        else:
            self._end(bound, before, after)

    def _end(self, bound: _Bound, before: Build, after: Build | None) -> None:
        """The build left its runner: drop its entry, tell the dispatcher and watchers."""
        bound.ended = True
        if self._bound.get(before.id) is bound:
            del self._bound[before.id]
        self._deadlines.disarm(before.id)
        self._flush(bound)
        if after is None:
            return
        log_ended(after, before.runner_id)
        if before.runner_id is not None:
            self._dispatcher.release(before.runner_id)
        if after.status is BuildStatus.QUEUED:
            self._dispatcher.enqueue(
                [QueuedBuild(after.id, frozenset(after.required_labels), after.queued_at)]
            )
        self._metrics.build_finished(after)

    def _flush(self, bound: _Bound) -> None:
        watchers, bound.watchers = bound.watchers, []
        for reply in watchers:
            if not reply.done and not reply.abandoned:
                reply.send(bound.build)

    def _arm(self, bound: _Bound) -> None:
        """Arm the current state's timeout (wall clock → trio clock)."""
        build = bound.build
        if build.status is BuildStatus.RUNNING:
            ends = (build.started_at or build.updated_at) + _running_bound(build, self._timeouts)
        else:
            ends = build.updated_at + self._timeouts.assigned
        at = trio.current_time() + max(0.0, ends - self._clock.now())
        self._deadlines.arm(build.id, at)


def log_ended(build: Build, runner_id: str | None) -> None:
    """``build.finished`` (with how long it ran) or ``build.requeued``, once per change."""
    if build.status is BuildStatus.QUEUED:
        event(log, "build.requeued", build.log_fields(), runner_id=runner_id, attempt=build.attempt)
        return
    ran = None
    if build.started_at is not None and build.finished_at is not None:
        ran = build.finished_at - build.started_at
    event(
        log,
        "build.finished",
        build.log_fields(),
        status=build.status.value,
        duration_s=ran,
        runner_id=runner_id,
        attempt=build.attempt,
    )


def _running_bound(build: Build, timeouts: BuildTimeouts) -> float:
    """The server's bound, or the build's own (its file's ``timeout``) when shorter."""
    own = build.config_snapshot.get(FILE_TIMEOUT_KEY)
    if type(own) is int and own > 0:
        return min(timeouts.running, float(own))
    return timeouts.running


def _same_state(build: Build, held: Build) -> bool:
    """Whether ``build`` says what ``held`` says of its status, runner and attempt."""
    return (build.status, build.runner_id, build.attempt) == (
        held.status,
        held.runner_id,
        held.attempt,
    )
