"""Short-lived URL tokens of local storage (contract §0.2: local upload and download tokens).

Local storage does not keep them itself: it is handed a :class:`UrlTokens` for each kind,
so that any daemon sharing the database (and the storage directory) honours a URL another
one issued. Tokens are kept only as their SHA-256, like every other credential.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from oore.storage.base import StoredObject

CAPACITY = 4096  # live tokens of one kind at most; issuing one more drops the oldest


@dataclass(frozen=True)
class Issued:
    token: str
    expires_at: int


class UrlTokens(Protocol):
    """Tokens that stand for an object until they expire (wall-clock seconds)."""

    async def issue(self, obj: StoredObject, ttl: int) -> Issued:
        """A new token for ``obj``, valid for ``ttl`` seconds."""
        ...

    async def peek(self, token: str) -> StoredObject | None:
        """The object of a live token (it stays usable), or None."""
        ...

    async def take(self, token: str) -> StoredObject | None:
        """The object of a live token, which is used up by this call; None if unknown."""
        ...
