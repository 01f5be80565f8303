"""Supervision: start children in order, restart them one for one, stop them in reverse.

A :class:`Supervisor` runs children described by :class:`ChildSpec` values. Each child is
an async callable started with ``await nursery.start(...)`` that reports a long-lived
handle (an :class:`~oore.actors.base.ActorRef`, a nested :class:`Supervisor`) through
``task_status.started(handle)``. The supervisor is the only place that catches a child's
exception. It restarts the child according to its :class:`Restart` policy, within a restart
budget of ``max_restarts`` per ``period`` seconds of ``trio.current_time()``; past the
budget it escalates: it cancels its other children in reverse order and raises
:class:`SupervisorEscalation` to its own parent, which may restart it in turn.

    dispatcher = DispatcherRef("dispatcher", capacity=1024)
    root = Supervisor("root", [actor_spec(dispatcher, lambda ref: Dispatcher(ref, store))])
    async with trio.open_nursery() as nursery:
        await nursery.start(root.run)          # children started in order
        runner = await root.start_child(actor_spec(RunnerRef(...), ..., restart=TRANSIENT))
        ...
        root.stop()                            # reverse order, each within its grace

A child that crashed because something it depends on is unreachable is not charged to
the budget: an outage is not the child's fault, and escalating would take the daemon down
with it. The kernel knows no particular error: an exception says it is an outage with a
true ``outage`` attribute, itself, as a cause or inside a group (the store's
``StoreUnavailable`` does). Such a child is restarted after a delay that doubles from
``OUTAGE_BACKOFF_INITIAL`` to ``OUTAGE_BACKOFF_MAX`` seconds while the crashes go on, and
its fresh incarnation rebuilds its state from the database once that answers again.

A child runs with the context variables its supervisor had when it began to run, not
those of whoever started the child: a child started while serving a request outlives it,
so the request's id (or any other per-request variable) must not follow its log lines.

Cancellation is never swallowed: when the supervisor's scope is cancelled, its children are
cancelled with it and none is restarted.
"""

from __future__ import annotations

import contextvars
import enum
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar, cast, overload

import trio

from oore.actors.base import Actor, ActorRef, ActorStatistics

logger = logging.getLogger(__name__)

DEFAULT_GRACE = 5.0
OUTAGE_BACKOFF_INITIAL = 0.25  # seconds
OUTAGE_BACKOFF_MAX = 4.0


class Restart(enum.Enum):
    """When a supervisor restarts a child that ended."""

    PERMANENT = "permanent"  # always, whether it raised or returned
    TRANSIENT = "transient"  # only if it raised
    TEMPORARY = "temporary"  # never


class SupervisorError(Exception):
    """Base of the errors raised by a supervisor."""


class SupervisorEscalation(SupervisorError):
    """Raised by :meth:`Supervisor.run` when a child could not be kept running.

    Either the restart budget was exceeded or a static child failed to start. The child's
    last error is ``__cause__``. The other children were cancelled, in reverse order, before
    this was raised; static children's mailboxes stay open, so a parent that restarts this
    supervisor resumes them with their queued messages.
    """

    def __init__(self, supervisor: str, child: str, reason: str) -> None:
        super().__init__(f"supervisor {supervisor!r} gave up: child {child!r} {reason}")
        self.supervisor = supervisor
        self.child = child


class SupervisorNotRunning(SupervisorError):
    """:meth:`Supervisor.start_child` was called while the supervisor is not running."""

    def __init__(self, supervisor: str) -> None:
        super().__init__(f"supervisor {supervisor!r} is not running")
        self.supervisor = supervisor


@dataclass(frozen=True)
class ChildStatistics:
    """One child as its supervisor sees it; ``details`` comes from the child's handle."""

    id: str
    restart: Restart
    restarts: int
    running: bool
    details: ActorStatistics | SupervisorStatistics | None


@dataclass(frozen=True)
class SupervisorStatistics:
    """A supervisor's counters and a snapshot of its children, keyed by child id."""

    name: str
    running: bool
    restarts: int
    escalations: int
    children: Mapping[str, ChildStatistics]

    def actors(self, prefix: str = "") -> Iterator[tuple[str, ActorStatistics]]:
        """Every actor below this supervisor, with ``parent/child`` paths, for /metrics."""
        for child in self.children.values():
            path = f"{prefix}{child.id}"
            if isinstance(child.details, ActorStatistics):
                yield path, child.details
            elif isinstance(child.details, SupervisorStatistics):
                yield from child.details.actors(f"{path}/")


class Supervised(Protocol):
    """What a supervisor needs from a child's handle."""

    def stop(self) -> None:
        """Ask the child to finish and end by itself; must not block."""

    @property
    def stopping(self) -> bool:
        """True once asked to stop; an exit is then final whatever the policy."""

    def statistics(self) -> ActorStatistics | SupervisorStatistics:
        """A snapshot for /metrics."""


H = TypeVar("H", bound=Supervised)
H_co = TypeVar("H_co", bound=Supervised, covariant=True)
RefT = TypeVar("RefT", bound=ActorRef[Any])


class StartFn(Protocol[H_co]):
    """An async callable for ``nursery.start``: runs one incarnation, reports its handle."""

    def __call__(self, *, task_status: trio.TaskStatus[H_co]) -> Awaitable[object]: ...


@dataclass(frozen=True, kw_only=True)
class ChildSpec(Generic[H]):
    """How to start one child, when to restart it and how long it may take to stop.

    ``start`` runs one incarnation and reports the child's handle with
    ``task_status.started(handle)``; the handle should outlive incarnations (an ActorRef).
    ``grace`` bounds a graceful stop: after ``handle.stop()`` the child has that many
    seconds to end before it is cancelled. ``on_exit`` runs once when the child is finished
    for good (not when it is restarted, nor when an escalation or a cancellation ends it,
    since a restarted parent resumes it); :func:`actor_spec` uses it to fail queued asks.
    """

    id: str
    start: StartFn[H]
    restart: Restart = Restart.PERMANENT
    grace: float = DEFAULT_GRACE
    on_exit: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.grace < math.inf:
            raise ValueError(f"child {self.id!r}: grace must be finite and >= 0")


def actor_spec(
    ref: RefT,
    factory: Callable[[RefT], Actor[Any]],
    *,
    id: str | None = None,
    restart: Restart = Restart.PERMANENT,
    grace: float = DEFAULT_GRACE,
    on_exit: Callable[[], object] | None = None,
) -> ChildSpec[RefT]:
    """A spec that runs ``factory(ref)`` for each incarnation of the actor behind ``ref``.

    The child's id defaults to ``ref.name``. Stopping it closes the mailbox (the actor
    drains it); once it is finished, ``ref.close()`` fails any ask still queued, then
    ``on_exit`` runs (e.g. to unregister it).
    """

    async def start(*, task_status: trio.TaskStatus[RefT] = trio.TASK_STATUS_IGNORED) -> None:
        actor = factory(ref)
        if actor.ref is not ref:
            raise ValueError(f"factory for {ref.name!r} built an actor bound to another ref")
        # The actor reports exactly ``ref``, so the status may be narrowed to its type.
        await actor.run(task_status=cast("trio.TaskStatus[ActorRef[Any]]", task_status))

    def finish() -> None:
        ref.close()
        if on_exit is not None:
            on_exit()

    return ChildSpec(
        id=ref.name if id is None else id,
        start=start,
        restart=restart,
        grace=grace,
        on_exit=finish,
    )


def supervisor_spec(
    supervisor: Supervisor,
    *,
    id: str | None = None,
    restart: Restart = Restart.PERMANENT,
    grace: float | None = None,
    on_exit: Callable[[], None] | None = None,
) -> ChildSpec[Supervisor]:
    """A spec that nests ``supervisor`` under another one; restarts re-run the same object.

    ``grace`` defaults to the sum of its static children's graces.
    """

    def finish() -> None:
        supervisor._finish_static()
        if on_exit is not None:
            on_exit()

    if grace is None:
        grace = sum(spec.grace for spec in supervisor._specs) or DEFAULT_GRACE
    return ChildSpec(
        id=supervisor.name if id is None else id,
        start=supervisor.run,
        restart=restart,
        grace=grace,
        on_exit=finish,
    )


class _Child:
    """A supervisor's record of one child, across its incarnations."""

    def __init__(self, spec: ChildSpec[Any], *, dynamic: bool, restarts: int) -> None:
        self.spec = spec
        self.dynamic = dynamic
        self.restarts = restarts
        self.scope = trio.CancelScope()
        self.done = trio.Event()
        self.handle: Supervised | None = None
        self.started = False  # the first incarnation reported its handle
        self.running = False
        self.stopping = False  # asked to stop: never restart
        self.final = False  # finished for good: run on_exit
        self.outage_delay = OUTAGE_BACKOFF_INITIAL  # before a restart after an outage crash


class _ChildStatus(trio.TaskStatus[Any]):
    """The task status handed to one incarnation; relays the first start to ``nursery.start``."""

    def __init__(self, child: _Child, outer: trio.TaskStatus[Any] | None) -> None:
        self._child = child
        self._outer = outer
        self._called = False

    @overload
    def started(self: _ChildStatus) -> None: ...

    @overload
    def started(self, value: Any) -> None: ...

    def started(self, value: Any = None) -> None:
        if self._called:
            raise RuntimeError("called 'started' twice on the same task status")
        self._called = True
        self._child.handle = value
        self._child.running = True
        self._child.started = True
        if self._outer is not None:
            self._outer.started(value)


class Supervisor:
    """Runs children one for one: ordered start, bounded restarts, reverse-ordered stop.

    The object is the supervisor's long-lived handle; :meth:`run` is one incarnation and
    may be run again after an escalation or a cancellation (a parent restarting it).
    Children come from the static ``children`` specs, started in order by :meth:`run`, and
    from :meth:`start_child` at run time.

    Restart decisions, for a child that ended on its own: a child whose handle is
    ``stopping`` is finished; otherwise ``PERMANENT`` restarts after a return or an
    exception, ``TRANSIENT`` only after an exception, ``TEMPORARY`` never. A child that
    ends because it, or the supervisor, is being cancelled is never restarted.
    """

    def __init__(
        self,
        name: str,
        children: Sequence[ChildSpec[Any]] = (),
        *,
        max_restarts: int = 3,
        period: float = 5.0,
    ) -> None:
        ids = [spec.id for spec in children]
        if len(set(ids)) != len(ids):
            raise ValueError(f"supervisor {name!r}: duplicate child ids in {ids}")
        if max_restarts < 0 or period <= 0:
            raise ValueError("max_restarts must be >= 0 and period > 0")
        self._name = name
        self._specs = tuple(children)
        self.max_restarts = max_restarts
        self.period = period
        self._children: dict[str, _Child] = {}
        self._finished: set[str] = set()  # static children that ended for good
        self._static_restarts: dict[str, int] = {}
        self._history: deque[float] = deque()
        self._nursery: trio.Nursery | None = None
        self._wake: trio.Event | None = None
        self._running = False
        self._closing = False
        self._stop_requested = False
        self._escalation: SupervisorEscalation | None = None
        self._restarts = 0
        self._escalations = 0
        self._context: contextvars.Context | None = None  # what children run with

    def __repr__(self) -> str:
        return f"<Supervisor {self._name!r} children {list(self._children)}>"

    @property
    def name(self) -> str:
        """The supervisor's name, used in errors, logs and statistics."""
        return self._name

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop_requested

    async def run(
        self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the static children in order, report ``self``, supervise until stopped.

        Each child's ``nursery.start`` completes before the next one starts. Returns once
        :meth:`stop` was called and every child ended (reverse order, each within its
        grace). Raises :class:`SupervisorEscalation` when a static child fails to start (then
        before reporting started) or the restart budget is exceeded. Cancellation cancels
        every child at once and propagates; nothing is restarted.
        """
        if self._running:
            raise RuntimeError(f"supervisor {self._name!r} is already running")
        self._running = True
        self._closing = False
        self._escalation = None
        self._context = contextvars.copy_context()
        self._history.clear()
        wake = self._wake = trio.Event()
        if self._stop_requested:
            wake.set()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self._start_static()
                if self._escalation is None:
                    task_status.started(self)
                await wake.wait()
                self._closing = True
                graceful = self._escalation is None
                for child in reversed(list(self._children.values())):
                    await self._stop(child, graceful=graceful)
        finally:
            self._running = False
            self._closing = True
            self._nursery = None
        if self._escalation is not None:
            raise self._escalation

    def stop(self) -> None:
        """Ask the supervisor to stop all children (reverse order) and return. Idempotent.

        Every child is finished for good: each gets ``handle.stop()`` and its grace, then is
        cancelled. The supervisor cannot be run again afterwards.
        """
        self._stop_requested = True
        if self._wake is not None:
            self._wake.set()

    async def start_child(self, spec: ChildSpec[H]) -> H:
        """Start a dynamic child and return its handle once it reported started.

        Dynamic children are finished (``on_exit``) when they end for good or when this
        run of the supervisor ends. Raises :class:`SupervisorNotRunning` while the
        supervisor is not running or shutting down, ``ValueError`` if a child with the
        same id is running, and the child's own exception if it fails before starting.
        """
        if self._nursery is None or self._closing:
            raise SupervisorNotRunning(self._name)
        if spec.id in self._children:
            raise ValueError(f"supervisor {self._name!r} already has a child {spec.id!r}")
        return cast(H, await self._start(spec, dynamic=True))

    async def stop_child(self, child_id: str) -> bool:
        """Stop a child for good: ``handle.stop()``, wait its grace, then cancel it.

        Returns once it ended; False if no such child was running. Waiting for the grace is
        shielded; the final wait after the cancel is not.
        """
        child = self._children.get(child_id)
        if child is None:
            return False
        await self._stop(child, graceful=True)
        return True

    def child(self, child_id: str) -> Supervised:
        """The handle the running child ``child_id`` reported; KeyError if there is none."""
        child = self._children[child_id]
        if child.handle is None:
            raise KeyError(child_id)
        return child.handle

    def statistics(self) -> SupervisorStatistics:
        """A snapshot of the supervisor and of every running child."""
        children = {
            child_id: ChildStatistics(
                id=child_id,
                restart=child.spec.restart,
                restarts=child.restarts,
                running=child.running,
                details=None if child.handle is None else child.handle.statistics(),
            )
            for child_id, child in self._children.items()
        }
        return SupervisorStatistics(
            name=self._name,
            running=self._running,
            restarts=self._restarts,
            escalations=self._escalations,
            children=MappingProxyType(children),
        )

    async def _start_static(self) -> None:
        """Start the static children in order; escalate if one fails to start."""
        assert self._wake is not None
        for spec in self._specs:
            if self._wake.is_set():
                return
            if spec.id in self._finished:
                continue
            try:
                await self._start(spec, dynamic=False)
            except Exception as exc:  # a static child that cannot start stops the supervisor
                self._escalate(spec.id, exc, "failed to start")
                return

    async def _start(self, spec: ChildSpec[Any], *, dynamic: bool) -> Supervised:
        """Register the child and wait for its first incarnation to report started."""
        assert self._nursery is not None
        restarts = 0 if dynamic else self._static_restarts.get(spec.id, 0)
        child = _Child(spec, dynamic=dynamic, restarts=restarts)
        self._children[spec.id] = child
        handle: Supervised = await self._nursery.start(self._supervise, child)
        return handle

    async def _supervise(self, child: _Child, *, task_status: trio.TaskStatus[Any]) -> None:
        """Run the child until it is finished, then forget it."""
        # A child may be started by a request but outlives it: it runs in our context.
        if self._context is not None:
            _adopt(self._context)
        try:
            with child.scope:
                await self._incarnations(child, task_status)
            if not child.started:  # our scope absorbed a stop that came before the start
                raise SupervisorError(f"child {child.spec.id!r} was stopped before it started")
        finally:
            self._release(child)

    async def _incarnations(self, child: _Child, task_status: trio.TaskStatus[Any]) -> None:
        """Start, await and restart the child; the only place its exceptions are caught."""
        spec = child.spec
        status = _ChildStatus(child, task_status)
        while True:
            crash: Exception | None = None
            try:
                await spec.start(task_status=status)
            except Exception as exc:
                crash = exc
            finally:
                child.running = False
            if not child.started:
                if crash is not None:
                    raise crash
                raise RuntimeError(f"child {spec.id!r} returned before it reported started")
            outage = _outage(crash)
            if outage:
                logger.info(
                    "supervisor %r: child %r stopped: the database is unavailable",
                    self._name,
                    spec.id,
                )
            else:
                child.outage_delay = OUTAGE_BACKOFF_INITIAL
                if crash is not None:
                    logger.error(
                        "supervisor %r: child %r crashed", self._name, spec.id, exc_info=crash
                    )
            # A pending cancellation (ours or our parent's) is delivered here, so an
            # incarnation that ended because of it is never restarted.
            await trio.lowlevel.checkpoint()
            if not self._may_restart(child, crash, charge=not outage):
                return
            if outage:
                await trio.sleep(child.outage_delay)
                child.outage_delay = min(child.outage_delay * 2, OUTAGE_BACKOFF_MAX)
                if not self._may_restart(child, crash, charge=False):
                    return
            child.restarts += 1
            self._restarts += 1
            if not child.dynamic:
                self._static_restarts[spec.id] = child.restarts
            logger.warning(
                "supervisor %r: restarting child %r (restart %d)",
                self._name,
                spec.id,
                child.restarts,
            )
            status = _ChildStatus(child, None)

    def _may_restart(self, child: _Child, crash: Exception | None, *, charge: bool = True) -> bool:
        """Apply the restart policy and (if ``charge``) the budget to a child that ended."""
        assert self._wake is not None
        if child.stopping or self._wake.is_set():
            return False
        if child.handle is not None and child.handle.stopping:
            child.final = True
            return False
        policy = child.spec.restart
        if policy is Restart.TEMPORARY or (policy is Restart.TRANSIENT and crash is None):
            child.final = True
            return False
        if charge and not self._within_budget():
            self._escalate(child.spec.id, crash, "exceeded the restart budget")
            return False
        return True

    def _within_budget(self) -> bool:
        """Record a restart if fewer than ``max_restarts`` happened in the last ``period``."""
        now = trio.current_time()
        while self._history and self._history[0] <= now - self.period:
            self._history.popleft()
        if len(self._history) >= self.max_restarts:
            return False
        self._history.append(now)
        return True

    def _escalate(self, child_id: str, cause: Exception | None, reason: str) -> None:
        """Remember why we give up (the first reason wins) and wake the run loop."""
        assert self._wake is not None
        if self._escalation is None:
            escalation = SupervisorEscalation(self._name, child_id, reason)
            escalation.__cause__ = cause
            self._escalation = escalation
            self._escalations += 1
            logger.error("supervisor %r: child %r %s; escalating", self._name, child_id, reason)
        self._wake.set()

    async def _stop(self, child: _Child, *, graceful: bool) -> None:
        """End a child: gracefully within its grace, then by cancellation."""
        child.stopping = True
        if graceful:
            child.final = True
            if child.handle is not None:
                child.handle.stop()
            with trio.move_on_after(child.spec.grace, shield=True):
                await child.done.wait()
        child.scope.cancel()
        await child.done.wait()

    def _release(self, child: _Child) -> None:
        """Forget an ended child; finish it if it will not be started again."""
        if self._children.get(child.spec.id) is child:
            del self._children[child.spec.id]
        child.running = False
        child.done.set()
        shutting_down = self._stop_requested and self._escalation is None
        if child.final or child.dynamic or shutting_down:
            if not child.dynamic:
                self._finished.add(child.spec.id)
            _call_on_exit(self._name, child.spec)

    def _finish_static(self) -> None:
        """Finish every static child not finished yet (this supervisor ended for good)."""
        for spec in self._specs:
            if spec.id not in self._finished:
                self._finished.add(spec.id)
                _call_on_exit(self._name, spec)


def _outage(crash: BaseException | None) -> bool:
    """Did the child end because something it depends on could not be reached?

    True when the exception, one of its causes or one inside a group has a true
    ``outage`` attribute.
    """
    seen: set[int] = set()
    while crash is not None and id(crash) not in seen:
        seen.add(id(crash))
        if getattr(crash, "outage", False) is True:
            return True
        if isinstance(crash, BaseExceptionGroup) and any(
            _outage(inner) for inner in crash.exceptions
        ):
            return True
        crash = crash.__cause__
    return False


def _adopt(context: contextvars.Context) -> None:
    """Make the current task's context variables those of ``context``.

    A variable ``context`` does not know is set back to its default, when it has one (a
    variable without a default cannot be unset, and keeps its value).
    """
    for var in contextvars.copy_context():
        if var in context:
            continue
        try:
            default = contextvars.Context().run(var.get)
        except LookupError:
            continue
        var.set(default)
    for var, value in context.items():
        var.set(value)


def _call_on_exit(supervisor: str, spec: ChildSpec[Any]) -> None:
    """Run a child's ``on_exit``; a failing callback is logged, not propagated."""
    if spec.on_exit is None:
        return
    try:
        spec.on_exit()
    except Exception:
        logger.exception("supervisor %r: on_exit of child %r failed", supervisor, spec.id)
