"""Sliding-window rate limits kept in memory: so many events per window overall and so
many per client address."""

from __future__ import annotations

from collections import deque

from oore.errors import TooManyRequests


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
            raise TooManyRequests(self._code, self._message)
        self._global.append(now)
        self._by_ip.setdefault(key, deque()).append(now)
