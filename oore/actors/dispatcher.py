"""The dispatcher: queued builds indexed by required labels, and parked long-poll claims.

It decides in memory which runner gets which build; the caller then commits the claim
(group commit, compare-and-set on ``queued``) before answering the runner. A claim that
lost the race (the build was canceled meanwhile) is released and the caller asks again,
so the database stays the judge and the index only has to be a good guess.

Invariants:
* a build is offered to at most one claim at a time (a duplicate "queued" notice can
  break this; the store's compare-and-set then lets only one of the claims commit);
* ``held[runner]`` counts the builds a runner holds or was offered, never above its
  ``max_concurrent`` at the time of the offer;
* a parked claim gets the oldest eligible build the moment one is queued, in park order
  (the longest-waiting eligible runner first).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, assert_never, cast

import trio

from oore.actors.base import Actor, ActorRef, ActorStopped, Reply
from oore.actors.supervisor import DEFAULT_GRACE, ChildSpec, Restart, actor_spec
from oore.domain.builds import QueuedBuild


@dataclass(frozen=True)
class RunnerSlot:
    """What the dispatcher needs of a claiming runner."""

    id: str
    labels: frozenset[str]
    max_concurrent: int


@dataclass(frozen=True)
class Offer:
    """A build offered to a runner; the caller must commit it or give it back."""

    build: QueuedBuild
    runner_id: str

    @property
    def build_id(self) -> str:
        return self.build.id


@dataclass(frozen=True)
class Claim:
    """Ask for a build; parks until ``until`` (trio time) when none is eligible now.

    The reply is an :class:`Offer`, or None once ``until`` passed with nothing eligible.
    """

    reply: Reply[Offer | None]
    runner: RunnerSlot
    until: float


@dataclass(frozen=True)
class Enqueue:
    """Builds that are now ``queued`` in the database (created, requeued or given back)."""

    builds: tuple[QueuedBuild, ...]


@dataclass(frozen=True)
class Remove:
    """A queued build left the queue without being claimed here (canceled, failed)."""

    build_id: str


@dataclass(frozen=True)
class Release:
    """The runner no longer holds the build: it ended, was requeued, or its claim lost."""

    runner_id: str
    build_id: str


@dataclass(frozen=True)
class GiveBack:
    """An offer that could not be committed: the build is queued again, at its old place."""

    offer: Offer


@dataclass(frozen=True)
class Depth:
    """How many builds are queued and how many claims are parked."""

    reply: Reply[tuple[int, int]]


DispatcherMsg = Claim | Enqueue | Remove | Release | GiveBack | Depth

CONTROL_DEADLINE = 10.0

LoadState = Callable[[], Awaitable[tuple[list[QueuedBuild], dict[str, int]]]]


@dataclass(frozen=True)
class _Entry:
    build: QueuedBuild
    order: tuple[int, int]


@dataclass
class _Parked:
    reply: Reply[Offer | None]
    runner: RunnerSlot
    until: float


class Dispatcher(ActorRef[DispatcherMsg]):
    """The dispatcher's handle; ``load`` reads the queue and the held counts at start."""

    def __init__(self, load: LoadState, *, capacity: int = 4096) -> None:
        super().__init__("dispatcher", capacity=capacity)
        self._load = load

    async def claim(self, runner: RunnerSlot, *, wait: float) -> Offer | None:
        """An offer for ``runner``, waiting up to ``wait`` seconds for one to appear.

        If the caller is cancelled at the moment an offer arrives, the offer is released
        (never lost). Raises :class:`~oore.actors.base.ActorError` if the dispatcher
        stopped or crashed while the claim was parked.
        """
        until = trio.current_time() + max(0.0, wait)
        reply: Reply[Offer | None] = Reply()
        await self._put(Claim(reply, runner, until), reply)
        try:
            return await reply.wait()
        except trio.Cancelled:
            offer = reply.undelivered()
            if offer is not None:
                await self.give_back(offer)
            raise

    async def enqueue(self, builds: Iterable[QueuedBuild]) -> None:
        """Builds now ``queued`` in the database; waits for mailbox room."""
        batch = tuple(builds)
        if batch:
            await self._control(Enqueue(batch))

    async def remove(self, build_id: str) -> None:
        """A queued build left the queue without a claim (canceled, failed)."""
        await self._control(Remove(build_id))

    async def release(self, runner_id: str, build_id: str) -> None:
        """The runner's hold on the build ended (finished, requeued, or its claim lost)."""
        await self._control(Release(runner_id, build_id))

    async def give_back(self, offer: Offer) -> None:
        """An offer that was not committed goes back to the queue, at its old place."""
        await self._control(GiveBack(offer))

    async def depth(self) -> tuple[int, int]:
        """(queued builds, parked claims)."""
        return await self.ask(Depth)

    async def _control(self, msg: DispatcherMsg) -> None:
        """Bookkeeping that must not be lost to a cancellation: sent shielded.

        A stopped dispatcher drops it; the next incarnation rebuilds from the store.
        """
        with trio.move_on_after(CONTROL_DEADLINE, shield=True), contextlib.suppress(ActorStopped):
            await self.tell(msg)

    async def run(
        self, *, task_status: trio.TaskStatus[Dispatcher] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await _DispatcherActor(self).run(task_status=cast("trio.TaskStatus[Any]", task_status))

    def spec(self, *, grace: float = DEFAULT_GRACE) -> ChildSpec[Dispatcher]:
        return actor_spec(self, _DispatcherActor, restart=Restart.PERMANENT, grace=grace)


class _DispatcherActor(Actor[DispatcherMsg]):
    def __init__(self, handle: Dispatcher) -> None:
        super().__init__(handle)
        self._handle = handle
        self._queues: dict[frozenset[str], deque[_Entry]] = {}
        self._live: dict[str, _Entry] = {}
        self._parked: deque[_Parked] = deque()
        self._holding: dict[str, int] = {}
        self._counter = itertools.count()

    async def on_start(self) -> None:
        queued, held = await self._handle._load()
        for build in queued:
            self._add(build, front=False)
        self._holding = dict(held)

    async def handle(self, msg: DispatcherMsg) -> None:
        match msg:
            case Claim(reply, runner, until):
                self._claim(reply, runner, until)
            case Enqueue(builds):
                for build in builds:
                    self._enqueue(build)
            case Remove(build_id):
                self._live.pop(build_id, None)
            case Release(runner_id, _):
                self._unhold(runner_id)
                self._serve_parked(runner_id)
            case GiveBack(offer):
                self._unhold(offer.runner_id)
                self._enqueue(offer.build, front=True)
                self._serve_parked(offer.runner_id)
            case Depth(reply):
                self._prune_parked()
                reply.send((len(self._live), len(self._parked)))
            case _:
                assert_never(msg)
        self._arm_deadline()

    async def on_deadline(self) -> None:
        now = trio.current_time()
        kept: deque[_Parked] = deque()
        for parked in self._parked:
            if parked.reply.abandoned:
                continue
            if parked.until <= now:
                parked.reply.send(None)
            else:
                kept.append(parked)
        self._parked = kept
        self._arm_deadline()

    async def on_stop(self) -> None:
        for parked in self._parked:
            if not parked.reply.done:
                parked.reply.send(None)
        self._parked.clear()

    # -- queue index ---------------------------------------------------------------

    def _add(self, build: QueuedBuild, *, front: bool) -> None:
        if build.id in self._live:
            return
        entry = _Entry(build, (build.queued_at, -1 if front else next(self._counter)))
        queue = self._queues.setdefault(build.required_labels, deque())
        if front:
            queue.appendleft(entry)
        else:
            queue.append(entry)
        self._live[build.id] = entry

    def _enqueue(self, build: QueuedBuild, *, front: bool = False) -> None:
        """Offer a newly queued build to the longest-waiting eligible claim, else index it."""
        known = self._live.get(build.id)
        if known is not None:
            return
        for parked in list(self._parked):
            if parked.reply.abandoned:
                self._parked.remove(parked)
                continue
            if self._eligible(parked.runner, build.required_labels):
                self._parked.remove(parked)
                if self._offer(parked.reply, parked.runner, build):
                    return
        self._add(build, front=front)

    def _eligible(self, runner: RunnerSlot, required: frozenset[str]) -> bool:
        return required <= runner.labels and self._holding.get(runner.id, 0) < runner.max_concurrent

    def _unhold(self, runner_id: str) -> None:
        held = self._holding.get(runner_id, 0) - 1
        if held > 0:
            self._holding[runner_id] = held
        else:
            self._holding.pop(runner_id, None)

    def _offer(self, reply: Reply[Offer | None], runner: RunnerSlot, build: QueuedBuild) -> bool:
        """Send the offer; False (and nothing held) if the claimant stopped waiting."""
        if reply.done or not reply.send(Offer(build, runner.id)):
            return False
        self._holding[runner.id] = self._holding.get(runner.id, 0) + 1
        return True

    def _pop_oldest(self, runner: RunnerSlot) -> _Entry | None:
        """Remove and return the oldest live build whose required labels the runner has."""
        best: _Entry | None = None
        best_queue: deque[_Entry] | None = None
        for labels, queue in self._queues.items():
            if not labels <= runner.labels:
                continue
            while queue and self._live.get(queue[0].build.id) is not queue[0]:
                queue.popleft()
            if queue and (best is None or queue[0].order < best.order):
                best, best_queue = queue[0], queue
        if best is None or best_queue is None:
            return None
        best_queue.popleft()
        del self._live[best.build.id]
        return best

    def _claim(self, reply: Reply[Offer | None], runner: RunnerSlot, until: float) -> None:
        if reply.abandoned:
            return
        if self._holding.get(runner.id, 0) < runner.max_concurrent:
            entry = self._pop_oldest(runner)
            if entry is not None:
                if not self._offer(reply, runner, entry.build):
                    self._put_back(entry)
                return
        if until <= trio.current_time():
            reply.send(None)
            return
        self._parked.append(_Parked(reply, runner, until))

    def _put_back(self, entry: _Entry) -> None:
        self._queues.setdefault(entry.build.required_labels, deque()).appendleft(entry)
        self._live[entry.build.id] = entry

    def _serve_parked(self, runner_id: str) -> None:
        """After a release, a parked claim of that runner may now take a queued build."""
        for parked in list(self._parked):
            if parked.runner.id != runner_id or parked.reply.abandoned:
                continue
            if self._holding.get(runner_id, 0) >= parked.runner.max_concurrent:
                return
            entry = self._pop_oldest(parked.runner)
            if entry is None:
                return
            self._parked.remove(parked)
            if not self._offer(parked.reply, parked.runner, entry.build):
                self._put_back(entry)

    def _prune_parked(self) -> None:
        self._parked = deque(p for p in self._parked if not p.reply.abandoned)

    def _arm_deadline(self) -> None:
        self.deadline = min((p.until for p in self._parked), default=math.inf)
