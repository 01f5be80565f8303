"""The server URLs a runner is given, and the one it talks to now.

Every URL is one installation (daemons on one database): a runner registered through
one is known to all, so its identity is kept under the first, :attr:`Servers.home`. Calls
go to :attr:`Servers.current`. A call that gets no answer (refused, reset, a channel closed
without a reply, no answer in time) tells :meth:`Servers.unreachable`, which moves on to the
next URL, round robin; the caller's retry loop waits its backoff and calls again, now
there. An answer, even a refusal, is the server's word and moves nothing.

Calls run concurrently and a dead server fails them all at once: each call names the
:class:`Server` it used, and only the first failure of the URL in use moves on (and says so,
once); the others see it has already happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

Say = Callable[[str], None]


@dataclass(frozen=True)
class Server:
    """A URL as chosen for a call; ``turn`` counts the moves made before it was chosen."""

    url: str
    turn: int


class Servers:
    """The URLs of one installation, in the order given, and the one in use."""

    def __init__(self, urls: Sequence[str], *, say: Say | None = None) -> None:
        listed = tuple(url.rstrip("/") for url in urls)
        if not listed:
            raise ValueError("a runner needs at least one server URL")
        self.urls = listed
        self._say = say
        self._turn = 0

    @property
    def home(self) -> str:
        """The first URL: the runner's saved identity is kept under it."""
        return self.urls[0]

    @property
    def current(self) -> Server:
        """The URL calls go to now."""
        return Server(self.urls[self._turn % len(self.urls)], self._turn)

    def in_use(self, server: Server) -> bool:
        """Whether ``server`` is still the one calls go to."""
        return server.turn == self._turn

    def unreachable(self, server: Server, error: Exception) -> bool:
        """A call to ``server`` got no answer: move on to the next URL, unless a call
        already did (or there is no other). Says it when it moves; True then."""
        if len(self.urls) == 1 or not self.in_use(server):
            return False
        self._turn += 1
        if self._say is not None:
            self._say(f"no answer from {server.url} ({error}); switching to {self.current.url}")
        return True


def split_server_urls(values: Iterable[str]) -> tuple[str, ...]:
    """``--server`` values, each one URL or a comma-separated list, as one list in order:
    blanks and repeats dropped; ValueError unless each is an http:// or https:// URL."""
    urls: list[str] = []
    for value in values:
        for part in value.split(","):
            url = part.strip().rstrip("/")
            if not url:
                continue
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http:// or https:// URL")
            if url not in urls:
                urls.append(url)
    if not urls:
        raise ValueError("no server URL given")
    return tuple(urls)
