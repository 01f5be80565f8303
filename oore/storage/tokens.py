"""Short-lived URL tokens kept in memory (contract §0.2: local upload and download tokens).

At most ``capacity`` live tokens; issuing one more evicts the oldest. Tokens are kept
only as their SHA-256, like every other credential.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from oore.domain.tokens import hash_token, looks_like_token, new_token

V = TypeVar("V")

DEFAULT_CAPACITY = 4096


@dataclass(frozen=True)
class Issued:
    token: str
    expires_at: int


class TokenTable(Generic[V]):
    """Tokens that map to a value until they expire (wall-clock seconds)."""

    def __init__(self, now: Callable[[], int], *, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._now = now
        self._capacity = capacity
        self._entries: OrderedDict[str, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def issue(self, value: V, ttl: int) -> Issued:
        """A new token for ``value`` valid for ``ttl`` seconds."""
        token = new_token()
        expires_at = self._now() + ttl
        self._entries[hash_token(token)] = (value, expires_at)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
        return Issued(token, expires_at)

    def peek(self, token: str) -> V | None:
        """The value of a live token (it stays usable), or None."""
        return self._lookup(token, consume=False)

    def take(self, token: str) -> V | None:
        """The value of a live token, which is used up by this call; None if unknown."""
        return self._lookup(token, consume=True)

    def revoke_where(self, doomed: Callable[[V], bool]) -> int:
        """Drop every token whose value ``doomed`` picks, at once; how many there were."""
        keys = [key for key, (value, _) in self._entries.items() if doomed(value)]
        for key in keys:
            del self._entries[key]
        return len(keys)

    def _lookup(self, token: str, *, consume: bool) -> V | None:
        if not looks_like_token(token):
            return None
        key = hash_token(token)
        entry = self._entries.pop(key, None) if consume else self._entries.get(key)
        if entry is None:
            return None
        value, expires_at = entry
        if expires_at <= self._now():
            self._entries.pop(key, None)
            return None
        return value
