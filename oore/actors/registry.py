"""Registries: find a live actor's handle by id.

Build one registry per actor kind in the app factory and pass it to whoever needs it; there
is no global one. A dynamic actor is registered before it is started (so a concurrent
lookup never starts a second one) and unregistered by its spec's ``on_exit``::

    runners: Registry[RunnerId, RunnerRef] = Registry("runners")

    ref = runners.get(runner_id)
    if ref is None:
        ref = RunnerRef(f"runner:{runner_id}", capacity=64)
        runners.register(runner_id, ref)
        await supervisor.start_child(actor_spec(
            ref, lambda ref: RunnerActor(ref, store), restart=Restart.TRANSIENT,
            on_exit=lambda: runners.unregister(runner_id, ref),
        ))
    await ref.heartbeat(...)
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from typing import Protocol, TypeVar

from oore.actors.base import ActorStatistics


class HasStatistics(Protocol):
    """A handle that can report its actor's statistics."""

    def statistics(self) -> ActorStatistics:
        """A snapshot for /metrics."""


K = TypeVar("K", bound=Hashable)
H = TypeVar("H", bound=HasStatistics)


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
        return True

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
