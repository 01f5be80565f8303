"""BuildActor: one per build bound to a runner (assigned or running).

It owns the build's state machine while a runner holds it: runner reports, user cancels,
lost runners, the assignment and build timeouts all go through its mailbox, so they are
applied one at a time, each as a compare-and-set in the store. Parked job polls
(``Watch``) are answered the moment the status changes, which is how a runner learns
of a cancel within milliseconds instead of on its next poll.

Queued builds have no actor: the dispatcher owns them until a claim commits.
When the build leaves ``assigned``/``running`` the actor tells the dispatcher (release,
and enqueue if it went back to the queue), answers every watcher and stops itself.
A restarted incarnation reloads the build from the store, so a crash loses nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, assert_never

import trio

from oore.actors.base import Actor, ActorRef, Reply
from oore.actors.dispatcher import Dispatcher
from oore.actors.supervisor import ChildSpec, Restart, actor_spec
from oore.domain.builds import (
    MAX_ATTEMPTS,
    Build,
    BuildStatus,
    QueuedBuild,
    StepResult,
    Transition,
    concurrent_modification,
)
from oore.errors import ApiError, Conflict, Forbidden
from oore.eventlog import event

log = logging.getLogger(__name__)


class BuildRecords(Protocol):
    """The store's part the actor needs."""

    async def get(self, build_id: str) -> Build | None: ...

    async def transition(self, t: Transition) -> Build: ...


# Where a build's snapshot keeps its file's timeout in seconds (set at trigger).
FILE_TIMEOUT_KEY = "timeout_seconds"


@dataclass(frozen=True)
class BuildTimeouts:
    """Seconds a build may stay assigned without starting, and may run."""

    assigned: float = 300.0
    running: float = 3600.0


@dataclass(frozen=True)
class Report:
    """The runner reports ``running``, ``succeeded`` or ``failed``; replies the new build.

    Fails with 403 ``runner_mismatch`` when the build is no longer bound to that runner,
    and 409 ``invalid_transition`` / ``concurrent_modification`` as the store decides.
    """

    reply: Reply[Build]
    runner_id: str
    status: BuildStatus
    exit_code: int | None
    error_message: str | None
    steps: tuple[StepResult, ...] | None


@dataclass(frozen=True)
class Cancel:
    """A user (``actor``) cancels the build; replies the canceled build."""

    reply: Reply[Build]
    actor: str
    reason: str


@dataclass(frozen=True)
class Watch:
    """Answer with the build once its status differs from ``seen`` (a long-poll)."""

    reply: Reply[Build]
    seen: BuildStatus


@dataclass(frozen=True)
class RunnerLost:
    """The runner holding the build stopped renewing its lease."""

    runner_id: str


BuildMsg = Report | Cancel | Watch | RunnerLost

WallNow = Callable[[], int]
OnEnd = Callable[[Build], Awaitable[None]]


class BuildHandle(ActorRef[BuildMsg]):
    """The handle of one BuildActor; methods raise ApiError as the transition decides."""

    def __init__(self, build_id: str, *, capacity: int = 64) -> None:
        super().__init__(f"build:{build_id}", capacity=capacity)
        self.build_id = build_id

    async def report(
        self,
        runner_id: str,
        status: BuildStatus,
        *,
        exit_code: int | None = None,
        error_message: str | None = None,
        steps: Sequence[StepResult] | None = None,
    ) -> Build:
        return await self.ask(
            Report,
            runner_id,
            status,
            exit_code,
            error_message,
            None if steps is None else tuple(steps),
        )

    async def cancel(self, *, actor: str, reason: str = "canceled by user") -> Build:
        return await self.ask(Cancel, actor, reason)

    async def watch(self, seen: BuildStatus) -> Build:
        """The build once its status is not ``seen``; the caller owns the deadline."""
        return await self.ask(Watch, seen)

    async def runner_lost(self, runner_id: str) -> None:
        await self.tell(RunnerLost(runner_id))


@dataclass(frozen=True)
class BuildActorDeps:
    """What every BuildActor shares."""

    records: BuildRecords
    dispatcher: Dispatcher
    wall_now: WallNow
    timeouts: BuildTimeouts
    on_end: OnEnd


def build_actor_spec(
    handle: BuildHandle,
    deps: BuildActorDeps,
    initial: Build | None,
    on_exit: Callable[[], object],
) -> ChildSpec[BuildHandle]:
    """A transient child: restarted after a crash (reloading from the store), not after it ends."""
    first = [initial]

    def factory(ref: BuildHandle) -> Actor[BuildMsg]:
        known, first[0] = first[0], None  # only the first incarnation may trust ``initial``
        return _BuildActor(ref, deps, known)

    return actor_spec(handle, factory, restart=Restart.TRANSIENT, grace=5.0, on_exit=on_exit)


class _BuildActor(Actor[BuildMsg]):
    def __init__(self, handle: BuildHandle, deps: BuildActorDeps, initial: Build | None) -> None:
        super().__init__(handle)
        self._handle = handle
        self._deps = deps
        self._build: Build | None = initial
        self._watchers: list[Watch] = []

    @property
    def build(self) -> Build:
        assert self._build is not None
        return self._build

    async def on_start(self) -> None:
        if self._build is None:
            self._build = await self._deps.records.get(self._handle.build_id)
        if self._build is None or not self._build.status.active:
            self._handle.stop()
            return
        self._arm()

    async def handle(self, msg: BuildMsg) -> None:
        if self._build is None or not self._build.status.active:
            _refuse(msg, self._build)
            return
        match msg:
            case Report(reply, runner_id, status, exit_code, error_message, steps):
                await self._answer(
                    reply, self._report(runner_id, status, exit_code, error_message, steps)
                )
            case Cancel(reply, actor, reason):
                await self._answer(reply, self._move(BuildStatus.CANCELED, actor, reason))
            case Watch(reply, seen):
                if self.build.status is not seen or not self.build.status.active:
                    reply.send(self.build)
                else:
                    self._watchers.append(msg)
            case RunnerLost(runner_id):
                if self.build.status.active and self.build.runner_id == runner_id:
                    await self._lost()
            case _:
                assert_never(msg)

    async def on_deadline(self) -> None:
        build = self.build
        if build.status is BuildStatus.RUNNING:
            await self._try_move(BuildStatus.TIMED_OUT, "system", "build timeout exceeded")
        elif build.status is BuildStatus.ASSIGNED:
            await self._try_move(
                BuildStatus.QUEUED,
                "system",
                "lease timeout: runner never started it",
                requeue=True,
            )

    async def on_stop(self) -> None:
        self._flush_watchers()

    async def _answer(self, reply: Reply[Build], work: Awaitable[Build]) -> None:
        try:
            build = await work
        except ApiError as exc:
            reply.fail(exc)
        else:
            reply.send(build)

    async def _report(
        self,
        runner_id: str,
        status: BuildStatus,
        exit_code: int | None,
        error_message: str | None,
        steps: tuple[StepResult, ...] | None,
    ) -> Build:
        if self.build.runner_id != runner_id or not self.build.status.active:
            raise Forbidden("runner_mismatch", "This build is not assigned to this runner")
        if status is self.build.status:
            # A retried report whose first answer was lost (the daemon restarted after
            # committing it): already true, so acknowledge it instead of oored's 409.
            return self.build
        return await self._move(
            status,
            f"runner:{runner_id}",
            error_message or "status update from runner",
            exit_code=exit_code,
            steps=steps,
            runner_id=runner_id,
        )

    async def _lost(self) -> None:
        build = self.build
        if build.attempt >= MAX_ATTEMPTS:
            await self._try_move(
                BuildStatus.FAILED,
                "system",
                f"runner lost {build.attempt} times (lease expired); giving up",
            )
        else:
            await self._try_move(
                BuildStatus.QUEUED,
                "system",
                f"runner lost (lease expired); requeued for attempt {build.attempt + 1}",
                requeue=True,
            )

    async def _try_move(
        self, target: BuildStatus, actor: str, reason: str, *, requeue: bool = False
    ) -> None:
        """A system-driven move; losing the race to another writer is fine."""
        try:
            await self._move(target, actor, reason, requeue=requeue)
        except Conflict:
            await self._reload()

    async def _move(
        self,
        target: BuildStatus,
        actor: str,
        reason: str,
        *,
        exit_code: int | None = None,
        steps: Sequence[StepResult] | None = None,
        requeue: bool = False,
        runner_id: str | None = None,
    ) -> Build:
        before = self.build
        transition = Transition(
            build_id=before.id,
            expected=before.status,
            target=target,
            actor=actor,
            reason=reason,
            now=self._deps.wall_now(),
            exit_code=exit_code,
            steps=steps,
            requeue=requeue,
            runner_id=runner_id,
        )
        try:
            after = await self._deps.records.transition(transition)
        except Conflict as exc:
            if exc.code == "concurrent_modification":
                await self._reload()
            raise
        await self._changed(before, after)
        return after

    async def _reload(self) -> None:
        before = self.build
        after = await self._deps.records.get(before.id)
        if after is None:
            self._handle.stop()
            self._flush_watchers()
            return
        if after.status is not before.status:
            await self._changed(before, after)

    async def _changed(self, before: Build, after: Build) -> None:
        self._build = after
        self._flush_watchers()
        if after.status.active:
            self._arm()
            return
        self.deadline = math.inf
        log_ended(after, before.runner_id)
        if before.runner_id is not None:
            await self._deps.dispatcher.release(before.runner_id, before.id)
        if after.status is BuildStatus.QUEUED:
            await self._deps.dispatcher.enqueue(
                [QueuedBuild(after.id, frozenset(after.required_labels), after.queued_at)]
            )
        await self._deps.on_end(after)
        self._handle.stop()

    def _flush_watchers(self) -> None:
        watchers, self._watchers = self._watchers, []
        for watch in watchers:
            if not watch.reply.done and self._build is not None:
                watch.reply.send(self._build)

    def _arm(self) -> None:
        """Set the wake-up for the current state's timeout (wall clock → trio clock)."""
        build = self.build
        timeouts = self._deps.timeouts
        if build.status is BuildStatus.RUNNING:
            ends = (build.started_at or build.updated_at) + _running_bound(build, timeouts)
        else:
            ends = build.updated_at + timeouts.assigned
        self.deadline = trio.current_time() + max(0.0, ends - self._deps.wall_now())


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


def _refuse(msg: BuildMsg, build: Build | None) -> None:
    """The build is no longer bound to a runner: callers re-read it from the store."""
    match msg:
        case Report(reply):
            reply.fail(Forbidden("runner_mismatch", "This build is not assigned to this runner"))
        case Cancel(reply):
            reply.fail(concurrent_modification())
        case Watch(reply):
            if build is None:
                reply.fail(
                    Forbidden("runner_mismatch", "This build is not assigned to this runner")
                )
            else:
                reply.send(build)
        case RunnerLost():
            pass
        case _:
            assert_never(msg)
