"""DueTimes: one actor that runs a callback for each item when it falls due.

An item is a key with a due time (``trio.current_time()``). :meth:`DueTimes.add` puts a
key in, or moves it if it is there already; :meth:`DueTimes.cancel` takes it out. Both
tell the actor without waiting. When a key falls due the actor calls ``on_due(key)``,
which answers the seconds until that key falls due again, or None to drop it. Keys fall
due in the order of their due times (ties in the order they were added), one at a time.
With nothing due the actor sleeps: no polling.

    expiry = DueTimes[str]("artifact-reservations")
    await supervisor.start_child(expiry.spec(on_due=sweep, load=pending))
    expiry.add("sweep", 1800.0, keep_earlier=True)   # at the latest in 30 minutes

The items live in the incarnation, and their truth lives in a source the caller owns
(the database): at every start, and so after every restart, the actor asks ``load()``
for the items the source knows. A callback that raises crashes the incarnation like any
actor's handler (a request held meanwhile fails with ``ActorCrashed``); its supervisor
restarts it, and the fresh incarnation reloads the items. An item added and not known to
the source is lost in a crash, so callers add what the source already holds, and a lost
``add`` (a full mailbox) is harmless when the source knows the item.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar, assert_never

import trio

from oore.actors.base import Actor, ActorError, ActorRef, Reply
from oore.actors.supervisor import DEFAULT_GRACE, ChildSpec, Restart, actor_spec

K = TypeVar("K", bound=Hashable)

# What to run when a key falls due: seconds until it falls due again, or None.
OnDue = Callable[[K], Awaitable[float | None]]
# The items the source knows, as (key, seconds from now until due).
Load = Callable[[], Awaitable[Iterable[tuple[K, float]]]]


@dataclass(frozen=True)
class Add(Generic[K]):
    """Make ``key`` fall due at ``at``; with ``keep_earlier``, not later than it would."""

    key: K
    at: float
    keep_earlier: bool


@dataclass(frozen=True)
class Cancel(Generic[K]):
    key: K


@dataclass(frozen=True)
class Fire(Generic[K]):
    """Run ``key``'s callback now, due or not; answered once it returned."""

    reply: Reply[None]
    key: K


@dataclass(frozen=True)
class DueIn(Generic[K]):
    """Seconds until ``key`` falls due (negative: overdue), None when it is not held."""

    reply: Reply[float | None]
    key: K


DueMsg = Add[K] | Cancel[K] | Fire[K] | DueIn[K]


class DueTimes(ActorRef[DueMsg[K]], Generic[K]):
    """The handle of a due-time worker over keys of type ``K``."""

    def __init__(self, name: str, *, capacity: int = 256) -> None:
        super().__init__(name, capacity=capacity)

    def add(self, key: K, after: float, *, keep_earlier: bool = False) -> bool:
        """Make ``key`` fall due ``after`` seconds from now (at once if not positive).

        A key already held is moved, unless ``keep_earlier`` and it falls due sooner
        already. Never waits: False when the message could not be told (a full mailbox,
        a stopped worker), which only matters for an item the source does not know.
        """
        return self._tell(Add(key, trio.current_time() + after, keep_earlier))

    def cancel(self, key: K) -> bool:
        """Take ``key`` out; never waits (False when it could not be told, like add)."""
        return self._tell(Cancel(key))

    async def fire(self, key: K) -> None:
        """Run ``key``'s callback now and return once it returned.

        Its answer reschedules the key as when it falls due. Raises ``ActorCrashed`` if
        the callback raised and ``ActorStopped`` when the worker is gone; the caller owns
        the deadline.
        """
        await self.ask(Fire, key)

    async def due_in(self, key: K) -> float | None:
        """Seconds until ``key`` falls due, None when it is not held."""
        return await self.ask(DueIn, key)

    def spec(
        self,
        *,
        on_due: OnDue[K],
        load: Load[K],
        restart: Restart = Restart.PERMANENT,
        grace: float = DEFAULT_GRACE,
    ) -> ChildSpec[DueTimes[K]]:
        """A child spec: ``load()`` at every start, ``on_due(key)`` when a key falls due."""
        return actor_spec(
            self, lambda ref: _Worker(ref, on_due, load), restart=restart, grace=grace
        )

    def _tell(self, msg: DueMsg[K]) -> bool:
        try:
            self.try_tell(msg)
        except ActorError:
            return False
        return True


class _Worker(Actor[DueMsg[K]]):
    """One incarnation: a heap of (due time, order, key), stale entries skipped."""

    def __init__(self, ref: DueTimes[K], on_due: OnDue[K], load: Load[K]) -> None:
        super().__init__(ref)
        self._on_due = on_due
        self._load = load
        self._due: dict[K, tuple[float, int]] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._order = 0  # of the next put: ties fall due in the order they were put

    async def on_start(self) -> None:
        now = trio.current_time()
        for key, after in await self._load():
            self._put(key, now + after)
        self._arm()

    async def handle(self, msg: DueMsg[K]) -> None:
        match msg:
            case Add(key, at, keep_earlier):
                held = self._due.get(key)
                if held is None or not keep_earlier or at < held[0]:
                    self._put(key, at)
            case Cancel(key):
                self._due.pop(key, None)
            case Fire(reply, key):
                self._due.pop(key, None)
                await self._run(key)
                reply.send(None)
            case DueIn(reply, key):
                held = self._due.get(key)
                reply.send(None if held is None else held[0] - trio.current_time())
            case _:
                assert_never(msg)
        self._arm()

    async def on_deadline(self) -> None:
        """Run the callbacks of every key due now, earliest first.

        A key a callback puts back due at once waits for the next turn, so messages
        queued meanwhile are handled in between.
        """
        now, put_before = trio.current_time(), self._order
        while self._heap and self._heap[0][0] <= now and self._heap[0][1] < put_before:
            at, order, key = heapq.heappop(self._heap)
            if self._due.get(key) != (at, order):
                continue  # moved or cancelled since
            del self._due[key]
            await self._run(key)
        self._arm()

    async def _run(self, key: K) -> None:
        after = await self._on_due(key)
        if after is not None:
            self._put(key, trio.current_time() + max(0.0, after))

    def _put(self, key: K, at: float) -> None:
        order = self._order
        self._order += 1
        self._due[key] = (at, order)
        heapq.heappush(self._heap, (at, order, key))

    def _arm(self) -> None:
        """Wake at the earliest live due time; drop stale entries from the heap's top."""
        heap = self._heap
        while heap and self._due.get(heap[0][2]) != heap[0][:2]:
            heapq.heappop(heap)
        self.deadline = heap[0][0] if heap else math.inf
        if len(heap) > 64 and len(heap) > 4 * len(self._due):
            self._heap = [(at, order, key) for key, (at, order) in self._due.items()]
            heapq.heapify(self._heap)
