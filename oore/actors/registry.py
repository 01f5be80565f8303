"""Registries: find a live child's handle by key, and start it when there is none.

Build one registry per kind of dynamic child in the app factory and pass it to whoever
needs it; there is no global one. :meth:`Registry.get_or_start` is the one way to get a
child by key: it returns the running child's handle, or makes a handle, registers it
before starting it (so a concurrent caller finds it and never starts a second one),
starts it under a supervisor and unregisters it when it ends::

    streams: Registry[str, LogStreamHandle] = Registry("logs")

    handle = await streams.get_or_start(
        build_id,
        supervisor,
        lambda: LogStreamHandle(build_id),
        lambda handle: actor_spec(handle, make_actor, restart=Restart.TRANSIENT),
    )
    await handle.append(...)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

import trio

from oore.actors.base import ActorStatistics
from oore.actors.supervisor import ChildSpec, Supervisor


class HasStatistics(Protocol):
    """A handle that can report its actor's statistics."""

    def statistics(self) -> ActorStatistics:
        """A snapshot for /metrics."""


class Stoppable(HasStatistics, Protocol):
    """A handle :meth:`Registry.get_or_start` can manage: it says when it is stopping."""

    @property
    def stopping(self) -> bool:
        """True once asked to stop: a new caller gets a fresh child instead."""

    def stop(self) -> None:
        """Ask the child to end; idempotent."""


K = TypeVar("K", bound=Hashable)
H = TypeVar("H", bound=HasStatistics)
S = TypeVar("S", bound=Stoppable)


class NotRegistered(KeyError):
    """No handle is registered under this key."""


class AlreadyRegistered(ValueError):
    """Another handle is already registered under this key."""


class Registry(Mapping[K, H]):
    """A read-only mapping of key to handle, plus :meth:`register`/:meth:`unregister`.

    Lookups never wait. Iteration sees a live view: take ``list(registry.items())`` before
    awaiting inside a loop.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._handles: dict[K, H] = {}
        self._vacated: dict[K, trio.Event] = {}  # set when the key's handle leaves

    @property
    def name(self) -> str:
        """The registry's name, used in errors and metrics."""
        return self._name

    def register(self, key: K, handle: H) -> None:
        """Register ``handle`` under ``key``; raises :class:`AlreadyRegistered` if taken."""
        if key in self._handles:
            raise AlreadyRegistered(f"{self._name}: {key!r} is already registered")
        self._handles[key] = handle

    def unregister(self, key: K, handle: H | None = None) -> bool:
        """Remove ``key``; with ``handle``, only if that very handle is registered.

        Returns whether something was removed. Passing the handle keeps a late ``on_exit``
        of an old actor from removing its successor.
        """
        current = self._handles.get(key)
        if current is None or (handle is not None and current is not handle):
            return False
        del self._handles[key]
        vacated = self._vacated.pop(key, None)
        if vacated is not None:
            vacated.set()
        return True

    async def get_or_start(
        self: Registry[K, S],
        key: K,
        supervisor: Supervisor,
        new: Callable[[], S],
        spec: Callable[[S], ChildSpec[Any]],
    ) -> S:
        """The handle of ``key``'s child, started under ``supervisor`` if there is none.

        A registered handle that is not stopping is returned at once, without waiting
        (it may still be starting: its mailbox takes messages meanwhile). Otherwise
        ``new()`` makes a handle, which is registered before ``spec(handle)`` is started,
        so concurrent callers for one key get one child. The child unregisters when it
        ends for good (the spec's own ``on_exit`` runs first).

        A stopping child is replaced: the caller waits until it has ended (its mailbox
        drained; the caller's deadline bounds the wait) and then starts a fresh one, so
        two children never run for one key.

        If the start fails, the handle is unregistered and stopped, and the error is
        raised: :class:`~oore.actors.supervisor.SupervisorNotRunning` while the
        supervisor is not running or stopping, ``ValueError`` if it still runs a child
        with the spec's id, or the child's own exception.
        """
        while (handle := self._handles.get(key)) is not None:
            if not handle.stopping:
                return handle
            vacated = self._vacated.get(key)
            if vacated is None:
                vacated = self._vacated[key] = trio.Event()
            await vacated.wait()
        handle = new()
        self.register(key, handle)
        child = spec(handle)
        first_exit = child.on_exit

        def on_exit() -> None:
            try:
                if first_exit is not None:
                    first_exit()
            finally:
                self.unregister(key, handle)

        try:
            await supervisor.start_child(dataclasses.replace(child, on_exit=on_exit))
        except BaseException:
            self.unregister(key, handle)
            handle.stop()
            raise
        return handle

    def __getitem__(self, key: K) -> H:
        try:
            return self._handles[key]
        except KeyError:
            raise NotRegistered(key) from None

    def __iter__(self) -> Iterator[K]:
        return iter(self._handles)

    def __len__(self) -> int:
        return len(self._handles)

    def statistics(self) -> dict[K, ActorStatistics]:
        """A snapshot of every registered actor's statistics."""
        return {key: handle.statistics() for key, handle in self._handles.items()}
