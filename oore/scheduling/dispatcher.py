"""The dispatcher: queued builds indexed by required labels, and parked claims.

A plain in-memory index, changed only by synchronous calls (trio runs one task at a time,
so every call is atomic): no task and no mailbox. It decides which runner should get which
build; the claim is then committed as a compare-and-set on ``queued`` (in a claim batch,
or in the trigger's own transaction), so the database stays the judge of who holds a build
and the index only has to be a good guess. A build whose claim lost (canceled meanwhile)
is simply not committed; a claim that could not be committed gives its build back.

Invariants:
* a build is offered to at most one claim at a time (a duplicate "queued" notice can
  break this; the store's compare-and-set then lets only one of the claims commit);
* ``held[runner]`` counts the builds a runner holds or was offered, never above its
  ``max_concurrent`` at the time of the offer;
* a parked claim gets the oldest eligible build the moment one is queued, in park order
  (the longest-waiting eligible runner first);
* while ``macos_paused`` is set (the instance's ``direct_macos_runner_paused``), a
  direct macOS runner is offered nothing: its claims wait parked, and are served the
  moment the pause is lifted.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import trio

from oore.domain.builds import QueuedBuild
from oore.errors import ApiError
from oore.scheduling.job import Job


@dataclass(frozen=True)
class RunnerSlot:
    """What the dispatcher needs of a claiming runner."""

    id: str
    labels: frozenset[str]
    max_concurrent: int
    name: str = ""  # for log lines
    direct_macos: bool = False  # held back while the instance's runner pause is on


class Signal:
    """A one-shot flag its claimant waits on: :class:`trio.Event` for one waiter at a time,
    without a set of waiters (every parked claim holds one for as long as it waits)."""

    __slots__ = ("_flag", "_waiter")

    def __init__(self) -> None:
        self._flag = False
        self._waiter: trio.lowlevel.Task | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        """Set the flag and wake the waiter, if any (idempotent)."""
        if self._flag:
            return
        self._flag = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            trio.lowlevel.reschedule(waiter)

    async def wait(self) -> None:
        """Until the flag is set (a checkpoint when it already is). Cancellable."""
        if self._flag:
            await trio.lowlevel.checkpoint()
            return
        if self._waiter is not None:
            raise trio.BusyResourceError("another task is waiting for this claim")
        self._waiter = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._waiter = None
        return trio.lowlevel.Abort.SUCCEEDED


class Parked:
    """A claim waiting for a build. Exactly one of these ends it: an ``offer`` from the
    queue (the claimant commits it), a ``job`` committed for it by a trigger (it was
    ``reserved`` first), an ``error``, or ``retry`` (look again); ``event`` is then set.
    ``gone`` once the claimant stopped waiting."""

    __slots__ = ("error", "event", "gone", "job", "offer", "reserved", "retry", "slot")

    def __init__(self, slot: RunnerSlot) -> None:
        self.slot = slot
        self.event = Signal()
        self.offer: QueuedBuild | None = None
        self.job: Job | None = None
        self.error: ApiError | None = None
        self.reserved = False
        self.retry = False
        self.gone = False

    @property
    def waiting(self) -> bool:
        return not (self.gone or self.reserved or self.event.is_set())


@dataclass(frozen=True)
class _Entry:
    build: QueuedBuild
    order: tuple[int, int]
    added: int  # the index's generation when it was added


class Dispatcher:
    """Queued builds by labels, held counts per runner, parked claims in park order."""

    def __init__(self) -> None:
        self._queues: dict[frozenset[str], deque[_Entry]] = {}
        self._live: dict[str, _Entry] = {}
        self._parked: deque[Parked] = deque()
        self._waiting = 0  # parked claims still waiting (the deque also holds left ones)
        self._holding: dict[str, int] = {}
        self._counter = itertools.count()
        self.generation = 0  # moves on with every build added to the index
        self.macos_paused = False

    def load(self, queued: Iterable[QueuedBuild], held: dict[str, int]) -> None:
        """Start over from the database: its queue (oldest first) and held counts."""
        self._queues.clear()
        self._live.clear()
        for build in queued:
            self._add(build, front=False)
        self._holding = dict(held)

    # -- claims ----------------------------------------------------------------------

    def pause_macos(self, paused: bool) -> None:
        """Hold direct macOS runners back (or let them go: their parked claims are served
        from the queue at once, longest-waiting first)."""
        if paused == self.macos_paused:
            return
        self.macos_paused = paused
        if not paused:
            for parked in list(self._parked):
                if parked.waiting and parked.slot.direct_macos:
                    self._serve_from_queue(parked)

    def take(self, runner: RunnerSlot) -> QueuedBuild | None:
        """The oldest eligible build, now held by ``runner``; None if none, it is full, or
        it is paused."""
        if self._holding.get(runner.id, 0) >= runner.max_concurrent or self._paused(runner):
            return None
        entry = self._pop_oldest(runner)
        if entry is None:
            return None
        self._hold(runner.id)
        return entry.build

    def park(self, runner: RunnerSlot) -> Parked:
        """Wait for a build: the returned claim's ``event`` is set when it is served."""
        parked = Parked(runner)
        self._parked.append(parked)
        self._waiting += 1
        if len(self._parked) > 2 * self._waiting + 64:
            self._parked = deque(p for p in self._parked if p.waiting)
        return parked

    def leave(self, parked: Parked) -> None:
        """The claimant stopped waiting (deadline, cancellation) before it was served."""
        if parked.waiting:
            parked.gone = True
            self._waiting -= 1

    def reserve(self, labels: frozenset[str]) -> Parked | None:
        """The longest-waiting parked claim that may take a build needing ``labels``, taken
        out of the queue and held for the caller, who commits a build to it and then sets
        its ``job`` (or ``error``/``retry``) and ``event``."""
        parked = self._first_eligible(labels)
        if parked is not None:
            parked.reserved = True
            self._waiting -= 1
            self._hold(parked.slot.id)
        return parked

    # -- the queue --------------------------------------------------------------------

    def enqueue(self, builds: Iterable[QueuedBuild]) -> None:
        """Builds now ``queued`` in the database: each goes to the longest-waiting eligible
        parked claim, or into the index (one already indexed is ignored)."""
        for build in builds:
            self._enqueue(build, front=False)

    def give_back(self, runner_id: str, build: QueuedBuild) -> None:
        """An offer that was not committed: queued again at its old place."""
        self.release(runner_id)
        self._enqueue(build, front=True)

    def remove(self, build_id: str) -> None:
        """A queued build left the queue without a claim here (canceled, failed, or
        claimed through another daemon)."""
        self._live.pop(build_id, None)

    def picked_instead(self, offered: QueuedBuild, picked_id: str) -> None:
        """The database gave the claim another build than the one offered (the oldest it
        had, which this index did not know of or had later): the offered build is
        queued again at its place, the picked one leaves the index."""
        self._live.pop(picked_id, None)
        self.put_back(offered)

    def put_back(self, offered: QueuedBuild) -> None:
        """An offer that was not what its claim got: queued again at its old place (the
        runner's hold went to the build it got)."""
        self._enqueue(offered, front=True)

    def none_for(self, runner: RunnerSlot, since: int) -> None:
        """The database had no queued build for ``runner``'s labels when asked at
        generation ``since``: every build indexed before then that it could take was
        claimed elsewhere (another daemon) and is dropped."""
        self._drop(since, lambda entry: entry.build.required_labels <= runner.labels)

    def sync(self, queued: Iterable[QueuedBuild], since: int) -> None:
        """Catch up with the database's queue as read from generation ``since`` on: what
        was indexed before and is not in it left the queue elsewhere; what is in it and
        not indexed joins (parked claims first)."""
        builds = list(queued)
        present = {build.id for build in builds}
        self._drop(since, lambda entry: entry.build.id not in present)
        self.enqueue(builds)

    def release(self, runner_id: str) -> None:
        """The runner's hold on a build ended (finished, requeued, or its claim lost)."""
        held = self._holding.get(runner_id, 0) - 1
        if held > 0:
            self._holding[runner_id] = held
        else:
            self._holding.pop(runner_id, None)
        self._serve_parked(runner_id)

    def depth(self) -> tuple[int, int]:
        """(queued builds, parked claims)."""
        return len(self._live), self._waiting

    # -- inside -------------------------------------------------------------------------

    def _hold(self, runner_id: str) -> None:
        self._holding[runner_id] = self._holding.get(runner_id, 0) + 1

    def _paused(self, runner: RunnerSlot) -> bool:
        return self.macos_paused and runner.direct_macos

    def _eligible(self, runner: RunnerSlot, required: frozenset[str]) -> bool:
        return (
            required <= runner.labels
            and self._holding.get(runner.id, 0) < runner.max_concurrent
            and not self._paused(runner)
        )

    def _first_eligible(self, labels: frozenset[str]) -> Parked | None:
        while self._parked and not self._parked[0].waiting:
            self._parked.popleft()
        for parked in self._parked:
            if parked.waiting and self._eligible(parked.slot, labels):
                return parked
        return None

    def _serve(self, parked: Parked, build: QueuedBuild) -> None:
        parked.offer = build
        self._waiting -= 1
        self._hold(parked.slot.id)
        parked.event.set()

    def _enqueue(self, build: QueuedBuild, *, front: bool) -> None:
        if build.id in self._live:
            return
        parked = self._first_eligible(build.required_labels)
        if parked is not None:
            self._serve(parked, build)
            return
        self._add(build, front=front)

    def _add(self, build: QueuedBuild, *, front: bool) -> None:
        if build.id in self._live:
            return
        self.generation += 1
        entry = _Entry(
            build, (build.queued_at, -1 if front else next(self._counter)), self.generation
        )
        queue = self._queues.setdefault(build.required_labels, deque())
        if front:
            queue.appendleft(entry)
        else:
            queue.append(entry)
        self._live[build.id] = entry

    def _drop(self, since: int, gone: Callable[[_Entry], bool]) -> None:
        """Drop the builds indexed at generation ``since`` or before that ``gone`` picks."""
        for build_id in [
            b for b, entry in self._live.items() if entry.added <= since and gone(entry)
        ]:
            del self._live[build_id]

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

    def _serve_parked(self, runner_id: str) -> None:
        """After a release, a parked claim of that runner may now take a queued build."""
        for parked in self._parked:
            if parked.slot.id != runner_id or not parked.waiting:
                continue
            if not self._serve_from_queue(parked):
                return

    def _serve_from_queue(self, parked: Parked) -> bool:
        """Serve a waiting parked claim the oldest build it may take; False if none."""
        slot = parked.slot
        if self._holding.get(slot.id, 0) >= slot.max_concurrent or self._paused(slot):
            return False
        entry = self._pop_oldest(slot)
        if entry is None:
            return False
        self._serve(parked, entry.build)
        return True
