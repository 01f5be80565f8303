"""Actors: a long-lived mailbox handle and short-lived incarnations that serve it.

An actor kind is a subclass of :class:`Actor` parameterised by a closed union of frozen
dataclass messages. Its mailbox lives in an :class:`ActorRef`, which outlives any one
incarnation: when an incarnation crashes and its supervisor starts a fresh one, the
messages queued meanwhile are still there and the counters keep counting.

    @dataclass(frozen=True)
    class Add:
        n: int

    @dataclass(frozen=True)
    class Total:
        reply: Reply[int]           # a request: its reply slot is the first field

    CounterMsg = Add | Total

    class Counter(Actor[CounterMsg]):
        def __init__(self, ref: ActorRef[CounterMsg]) -> None:
            super().__init__(ref)
            self.total = 0

        async def handle(self, msg: CounterMsg) -> None:
            match msg:
                case Add(n):
                    self.total += n
                case Total(reply):
                    reply.send(self.total)
                case _:
                    assert_never(msg)

    ref = ActorRef[CounterMsg]("counter", capacity=64)
    await nursery.start(Counter(ref).run)
    await ref.tell(Add(2))
    with trio.fail_after(1):
        assert await ref.ask(Total) == 2

Errors a caller can see::

    ActorError
     ├── MailboxFull     try_tell/try_ask found the mailbox full; nothing was sent
     ├── ActorStopped    the mailbox is closed, or the actor ended before answering
     └── ActorCrashed    the actor raised while it held the request (cause chained)
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, cast

import trio

M = TypeVar("M")
R = TypeVar("R")
P = ParamSpec("P")


class ActorError(Exception):
    """Base of the errors raised to callers of an actor's handle."""

    def __init__(self, actor: str, message: str) -> None:
        super().__init__(f"actor {actor!r}: {message}")
        self.actor = actor


class MailboxFull(ActorError):
    """``try_tell``/``try_ask`` found the mailbox full; the message was not sent."""

    def __init__(self, actor: str) -> None:
        super().__init__(actor, "mailbox full")


class ActorStopped(ActorError):
    """The mailbox is closed, or the actor ended without answering this request."""

    def __init__(self, actor: str) -> None:
        super().__init__(actor, "stopped")


class ActorCrashed(ActorError):
    """The actor raised while it held this request; the original error is ``__cause__``."""

    def __init__(self, actor: str) -> None:
        super().__init__(actor, "crashed while handling the request")


def _ending_error(actor: str, exc: BaseException | None) -> ActorError:
    """The error an unanswered asker gets when an incarnation ends with ``exc`` (or normally)."""
    if isinstance(exc, Exception):
        crashed = ActorCrashed(actor)
        crashed.__cause__ = exc
        return crashed
    return ActorStopped(actor)


class Reply(Generic[R]):
    """The one-shot answer slot of a request, carried as a field of the request message.

    :meth:`ActorRef.ask` creates it and waits on it; the actor resolves it exactly once,
    with :meth:`send` or :meth:`fail`, either while handling the message or later (a parked
    request, such as a long-poll claim). Resolving twice raises ``RuntimeError``.

    If the incarnation that took the message ends while the reply is unresolved, the asker
    gets :class:`ActorCrashed` (the actor raised) or :class:`ActorStopped` (it ended or was
    cancelled), so an asker never hangs on a dead actor; its own deadline bounds the rest.
    """

    __slots__ = ("_abandoned", "_delivered", "_error", "_event", "_holder", "_value")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._value: R | None = None
        self._error: Exception | None = None
        self._abandoned = False
        self._delivered = False
        self._holder: set[Reply[Any]] | None = None

    @property
    def done(self) -> bool:
        """True once :meth:`send` or :meth:`fail` was called."""
        return self._event.is_set()

    @property
    def abandoned(self) -> bool:
        """True once the asker stopped waiting (its deadline passed or it was cancelled).

        An actor that parks requests should drop abandoned ones rather than answer them.
        """
        return self._abandoned

    def send(self, value: R) -> bool:
        """Answer ``value``; returns False if the asker had already stopped waiting.

        A False return means the answer went nowhere: an actor that handed out something
        (a claimed build) should take it back.
        """
        self._settle()
        self._value = value
        return not self._abandoned

    def fail(self, error: Exception) -> bool:
        """Make the asker's ``ask`` raise ``error``; returns like :meth:`send`."""
        self._settle()
        self._error = error
        return not self._abandoned

    def _settle(self) -> None:
        """Mark resolved and stop being held by an incarnation."""
        if self._event.is_set():
            raise RuntimeError("reply already sent")
        self._event.set()
        if self._holder is not None:
            self._holder.discard(self)
            self._holder = None

    async def wait(self) -> R:
        """Wait for the answer of a request the caller enqueued itself (see ``_put``).

        Raises what the actor passed to :meth:`fail`. On cancellation the reply is marked
        abandoned, unless the answer had already arrived: see :meth:`undelivered`.
        """
        return await self._wait()

    def undelivered(self) -> R | None:
        """A value that was sent but never reached the asker (it was cancelled meanwhile).

        A caller that hands out resources through replies checks this after a cancellation
        and gives the value back; None if nothing is owed.
        """
        if self._event.is_set() and not self._delivered and self._error is None:
            return self._value
        return None

    async def _wait(self) -> R:
        """Wait for the answer; on cancellation, mark the reply abandoned."""
        try:
            await self._event.wait()
        finally:
            if not self._event.is_set():
                self._abandoned = True
                if self._holder is not None:  # nobody to fail it for any more
                    self._holder.discard(self)
                    self._holder = None
        self._delivered = True
        if self._error is not None:
            raise self._error
        return cast("R", self._value)


@dataclass(frozen=True, slots=True)
class _Envelope(Generic[M]):
    """A message in the mailbox, with its reply slot (asks only) and enqueue time."""

    msg: M
    reply: Reply[Any] | None
    sent_at: float


@dataclass(frozen=True)
class ActorStatistics:
    """A snapshot of one actor's mailbox and counters, cumulative across restarts.

    ``processed`` counts messages taken from the mailbox (including one whose handling
    crashed); ``restarts`` counts incarnations after the first; ``lag`` is how long the most
    recently taken message waited between ``tell``/``ask`` and being taken, in seconds.
    """

    name: str
    mailbox_depth: int
    mailbox_capacity: int
    blocked_senders: int
    processed: int
    restarts: int
    lag: float
    running: bool
    stopping: bool


class ActorRef(Generic[M]):
    """The long-lived handle of one actor: its bounded mailbox and its counters.

    Callers hold the ref (or a typed handle subclassing it, whose methods wrap
    :meth:`tell`/:meth:`ask`); incarnations of the actor come and go behind it. Messages
    are handled one at a time in the order they were enqueued.

    Closing the mailbox (:meth:`stop`) is the shutdown signal: the running incarnation
    handles what is already queued and then ends. There are no stop messages.
    """

    def __init__(self, name: str, *, capacity: int) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 0:
            raise ValueError(f"capacity must be a finite int >= 0, not {capacity!r}")
        self._name = name
        self._send, self._receive = trio.open_memory_channel[_Envelope[M]](capacity)
        self._stopping = False
        self._running = False
        self._incarnations = 0
        self._processed = 0
        self._lag = 0.0

    def __repr__(self) -> str:
        depth = self._receive.statistics().current_buffer_used
        return f"<{type(self).__name__} {self._name!r} mailbox {depth}>"

    @property
    def name(self) -> str:
        """The actor's name, used in errors, logs and statistics."""
        return self._name

    @property
    def stopping(self) -> bool:
        """True once the mailbox was closed; no new message will be accepted."""
        return self._stopping

    async def tell(self, msg: M) -> None:
        """Enqueue ``msg``, waiting while the mailbox is full (backpressure).

        Cancellation while waiting leaves nothing enqueued. Raises :class:`ActorStopped`
        if the mailbox is closed, including while waiting.
        """
        await self._put(msg, None)

    def try_tell(self, msg: M) -> None:
        """Enqueue ``msg`` without waiting.

        Raises :class:`MailboxFull` if the mailbox is full (nothing is enqueued; the HTTP
        layer answers 503) and :class:`ActorStopped` if it is closed.
        """
        self._put_nowait(msg, None)

    async def ask(
        self, make: Callable[Concatenate[Reply[R], P], M], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Send the request ``make(reply, *args, **kwargs)`` and wait for its answer.

        ``make`` is usually the request's message class, whose first field is the
        :class:`Reply`: ``await ref.ask(Get, key)`` builds ``Get(reply, key)`` and returns
        what the actor passes to ``reply.send``, typed by the ``Reply[...]`` annotation.
        Waits while the mailbox is full. The caller owns the deadline
        (``with trio.fail_after(...)``); on cancellation nothing is enqueued, or the reply
        is marked abandoned and the actor may still handle the request.

        Raises whatever the actor passed to ``reply.fail``, :class:`ActorCrashed` if it
        raised while holding the request, and :class:`ActorStopped` if the mailbox is
        closed or the actor ended without answering.
        """
        reply: Reply[R] = Reply()
        await self._put(make(reply, *args, **kwargs), reply)
        return await reply._wait()

    async def try_ask(
        self, make: Callable[Concatenate[Reply[R], P], M], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Like :meth:`ask`, but raise :class:`MailboxFull` instead of waiting for room."""
        reply: Reply[R] = Reply()
        self._put_nowait(make(reply, *args, **kwargs), reply)
        return await reply._wait()

    def stop(self) -> None:
        """Close the mailbox: the actor handles what is queued, then ends. Idempotent.

        Senders waiting for room get :class:`ActorStopped`. The ref cannot be reopened.
        """
        self._stopping = True
        self._send.close()

    def close(self) -> None:
        """Stop for good: close the mailbox and fail every queued ask with ActorStopped.

        Call it once no incarnation will run again (a supervisor does this when the child
        is finished); messages still queued are dropped.
        """
        self.stop()
        while True:
            try:
                envelope = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return
            if envelope.reply is not None and not envelope.reply.done:
                envelope.reply.fail(ActorStopped(self._name))

    def statistics(self) -> ActorStatistics:
        """A snapshot of the mailbox and the cumulative counters."""
        channel = self._receive.statistics()
        return ActorStatistics(
            name=self._name,
            mailbox_depth=channel.current_buffer_used,
            mailbox_capacity=int(channel.max_buffer_size),
            blocked_senders=channel.tasks_waiting_send,
            processed=self._processed,
            restarts=max(0, self._incarnations - 1),
            lag=self._lag,
            running=self._running,
            stopping=self._stopping,
        )

    async def _put(self, msg: M, reply: Reply[Any] | None) -> None:
        """Enqueue, waiting for room."""
        try:
            await self._send.send(_Envelope(msg, reply, trio.current_time()))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise ActorStopped(self._name) from None

    def _put_nowait(self, msg: M, reply: Reply[Any] | None) -> None:
        """Enqueue or refuse at once."""
        try:
            self._send.send_nowait(_Envelope(msg, reply, trio.current_time()))
        except trio.WouldBlock:
            raise MailboxFull(self._name) from None
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise ActorStopped(self._name) from None

    def _attach(self) -> None:
        """Begin an incarnation; two at once would race for the mailbox."""
        if self._running:
            raise RuntimeError(f"actor {self._name!r} already has a running incarnation")
        self._running = True
        self._incarnations += 1

    def _detach(self) -> None:
        """End the running incarnation."""
        self._running = False

    def _taken(self, envelope: _Envelope[M]) -> None:
        """Count a message taken from the mailbox."""
        self._processed += 1
        self._lag = trio.current_time() - envelope.sent_at


class Actor(abc.ABC, Generic[M]):
    """One incarnation of an actor: its in-memory state and its message handler.

    Subclasses implement :meth:`handle` with ``match msg: ... case _: assert_never(msg)``
    and may override :meth:`on_start` (rebuild state from the store before taking
    messages), :meth:`on_stop` (the mailbox was closed and drained) and
    :meth:`on_deadline` (set ``self.deadline`` to a ``trio.current_time()`` value to be
    woken when no message arrives before it; it is reset to ``inf`` before the call).

    A factory builds a fresh instance for every (re)start; only the :class:`ActorRef` and
    the store survive a crash. An actor must not ``await self.ref.tell(...)``: with a full
    mailbox it would wait for itself; use ``try_tell``.
    """

    def __init__(self, ref: ActorRef[M]) -> None:
        self._ref = ref
        self._held: set[Reply[Any]] = set()
        self.deadline: float = math.inf

    @property
    def ref(self) -> ActorRef[M]:
        """The actor's own handle, e.g. to ``stop()`` itself or tell itself a message."""
        return self._ref

    async def on_start(self) -> None:
        """Prepare state before the first message; runs before ``task_status.started``."""

    async def on_stop(self) -> None:
        """Run after the mailbox was closed and every queued message was handled."""

    async def on_deadline(self) -> None:
        """Run when ``self.deadline`` passed with no message to handle."""

    @abc.abstractmethod
    async def handle(self, msg: M) -> None:
        """Handle one message; raising crashes this incarnation."""

    def take_nowait(self) -> M | None:
        """Take the next queued message without waiting, or None if none is queued.

        For actors that work in batches (group commit): call it from :meth:`handle` to
        gather what queued up. Replies of taken messages are held like any other.
        """
        try:
            envelope = self._ref._receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return None
        return self._take(envelope)

    async def run(
        self, *, task_status: trio.TaskStatus[ActorRef[M]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve the mailbox until it is closed and drained; report the ref once started.

        Raises what :meth:`handle` (or a hook) raised; unanswered asks held by this
        incarnation then fail with :class:`ActorCrashed` (or :class:`ActorStopped` on
        cancellation or a normal end). Cancellation propagates unchanged.
        """
        self._ref._attach()
        try:
            await self.on_start()
            task_status.started(self._ref)
            await self._serve()
            await self.on_stop()
        except BaseException as exc:  # re-raised: held askers must learn why we ended
            self._release(exc)
            raise
        else:
            self._release(None)
        finally:
            self._ref._detach()

    async def _serve(self) -> None:
        """Handle messages one by one until the mailbox ends."""
        receive = self._ref._receive
        while True:
            if self.deadline == math.inf:
                try:
                    envelope = await receive.receive()
                except trio.EndOfChannel:
                    return
            else:
                maybe: _Envelope[M] | None = None
                with trio.move_on_at(self.deadline):
                    try:
                        maybe = await receive.receive()
                    except trio.EndOfChannel:
                        return
                if maybe is None:
                    self.deadline = math.inf
                    await self.on_deadline()
                    continue
                envelope = maybe
            await self.handle(self._take(envelope))

    def _take(self, envelope: _Envelope[M]) -> M:
        """Account for a taken message and hold its reply until it is answered."""
        self._ref._taken(envelope)
        reply = envelope.reply
        if reply is not None and not reply.done:
            reply._holder = self._held
            self._held.add(reply)
        return envelope.msg

    def _release(self, exc: BaseException | None) -> None:
        """Fail every reply this incarnation still holds."""
        held, self._held = self._held, set()
        for reply in held:
            reply._holder = None
            if not reply.done:
                reply.fail(_ending_error(self._ref.name, exc))
