"""Rate limits kept in memory: so many events per window overall and so many per client
address (:class:`WindowLimiter`), and the lockout of a client that keeps presenting
credentials that do not check out (:class:`GuessLimiter`).

Both live in one daemon process: with several processes (``oored --workers N`` or daemons
sharing a database) each counts on its own, so a client may make N times the attempts
before every process refuses it."""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from oore.errors import TooManyRequests

# Failed credential checks a client may make in GUESS_WINDOW seconds; the next one locks
# it out of credential checks for GUESS_WINDOW seconds.
GUESS_LIMIT = 20
GUESS_WINDOW = 60
# Clients whose failures are remembered at once (beyond, the quietest is forgotten).
GUESS_CLIENTS = 10_000
# Credentials that checked out recently, remembered so they still work from a locked client.
VOUCHED_CREDENTIALS = 10_000


@dataclass(frozen=True)
class LimitStatistics:
    """One limit as ``/metrics`` shows it: attempts allowed per client (and overall, when
    there is such a bound) in a window of ``window`` seconds (None: per minted token), and
    the requests it refused."""

    name: str
    per_client: int
    window: int | None
    refused: int
    overall: int | None = None


class WindowLimiter:
    """At most ``global_limit`` admitted events in any ``window`` seconds, and at most
    ``per_ip_limit`` of them per client address; past either, 429 with ``code``. Only
    admitted events are remembered, so memory is bounded by ``global_limit`` timestamps."""

    def __init__(
        self, window: int, global_limit: int, per_ip_limit: int, code: str, message: str
    ) -> None:
        self._window = window
        self._global_limit = global_limit
        self._per_ip_limit = per_ip_limit
        self._code = code
        self._message = message
        self._global: deque[int] = deque()
        self._by_ip: dict[str, deque[int]] = {}
        self.refused = 0

    def _forget_old(self, now: int) -> None:
        horizon = now - self._window
        while self._global and self._global[0] <= horizon:
            self._global.popleft()
        for ip in list(self._by_ip):
            stamps = self._by_ip[ip]
            while stamps and stamps[0] <= horizon:
                stamps.popleft()
            if not stamps:
                del self._by_ip[ip]

    def admit(self, client_ip: str | None, now: int) -> None:
        """Count one event, or raise 429 when over either limit (the event is not counted)."""
        self._forget_old(now)
        key = client_ip or "unknown"
        stamps = self._by_ip.get(key)
        if len(self._global) >= self._global_limit or (
            stamps is not None and len(stamps) >= self._per_ip_limit
        ):
            self.refused += 1
            raise TooManyRequests(self._code, self._message)
        self._global.append(now)
        self._by_ip.setdefault(key, deque()).append(now)

    def statistics(self, name: str) -> LimitStatistics:
        return LimitStatistics(
            name, self._per_ip_limit, self._window, self.refused, self._global_limit
        )


def client_key(client_ip: str | None) -> str:
    """Whom failures are counted against: the address, an IPv6 address's /64 (one host
    commonly holds a whole /64), or ``unknown``."""
    if not client_ip:
        return "unknown"
    try:
        ip = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def too_many_attempts(retry_after: int) -> TooManyRequests:
    return TooManyRequests(
        "too_many_attempts",
        "Too many failed credential checks from this address; try again later",
        retry_after=retry_after,
    )


class GuessLimiter:
    """Failed credential checks (unknown sessions and API tokens, wrong runner, stream,
    download, upload and artifact tokens) counted per client; a client with ``limit``
    failures within ``window`` seconds is locked out of credential checks for ``window``
    seconds: its requests that carry a credential are answered 429 ``too_many_attempts``
    (with ``Retry-After``) before anything is looked up.

    A credential that checked out recently (one of the last ``vouched`` seen, by a salted
    in-process hash, never the token itself) is still checked from a locked client, so
    someone sharing the address (a NAT, a proxy) cannot lock signed-in users and runners
    out; a guess cannot be among them. Memory is bounded by ``clients`` addresses with at
    most ``limit`` timestamps each, and ``vouched`` hashes.

    The hot path (a request whose credential checks out while nobody is locked) costs a
    hash and a dictionary update, no lock and no query.
    """

    def __init__(
        self,
        clock: Callable[[], int],
        *,
        limit: int = GUESS_LIMIT,
        window: int = GUESS_WINDOW,
        clients: int = GUESS_CLIENTS,
        vouched: int = VOUCHED_CREDENTIALS,
    ) -> None:
        self._clock = clock
        self.limit = limit
        self.window = window
        self._max_clients = clients
        self._max_vouched = vouched
        self._failures: dict[str, deque[int]] = {}
        self._locked: dict[str, int] = {}  # client → locked until
        self._vouched: dict[int, None] = {}  # insertion order: oldest first
        self.refused = 0
        self.failed_checks = 0

    @property
    def anyone_locked(self) -> bool:
        """Whether any client may be locked now (cheap: no clock read, no address)."""
        return bool(self._locked)

    def refusal(self, client_ip: str | None, credentials: Iterable[str]) -> TooManyRequests | None:
        """The 429 for a request from ``client_ip`` presenting ``credentials`` (none: not a
        credential-bearing request), or None when its credentials may be checked."""
        if not self._locked:
            return None
        presented = [hash(c) for c in credentials]
        if not presented:
            return None
        key = client_key(client_ip)
        until = self._locked.get(key)
        if until is None:
            return None
        now = self._clock()
        if until <= now:
            del self._locked[key]
            return None
        if any(h in self._vouched for h in presented):
            return None
        self.refused += 1
        return too_many_attempts(until - now)

    def failed(self, client_ip: str | None) -> None:
        """Count one failed credential check; the ``limit``-th within the window locks
        (a limit of 0 never locks)."""
        self.failed_checks += 1
        if self.limit <= 0:
            return
        key = client_key(client_ip)
        now = self._clock()
        stamps = self._failures.pop(key, None)
        if stamps is None:
            stamps = deque(maxlen=self.limit)
            while len(self._failures) >= self._max_clients:
                del self._failures[next(iter(self._failures))]
        self._failures[key] = stamps  # most recently failing last
        stamps.append(now)
        if len(stamps) == self.limit and stamps[0] > now - self.window:
            self._locked.pop(key, None)
            while len(self._locked) >= self._max_clients:
                del self._locked[next(iter(self._locked))]
            self._locked[key] = now + self.window
            stamps.clear()

    def succeeded(self, credential: str | None) -> None:
        """Remember a credential that checked out, so it keeps working from a locked client."""
        if credential is None:
            return
        vouched = self._vouched
        h = hash(credential)
        if h in vouched:
            del vouched[h]  # re-inserted below as the most recent
        elif len(vouched) >= self._max_vouched:
            del vouched[next(iter(vouched))]
        vouched[h] = None

    def statistics(self) -> LimitStatistics:
        return LimitStatistics("credential_guess", self.limit, self.window, self.refused)
