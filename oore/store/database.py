"""The PostgreSQL pool, reached from trio through the bridge, with the one error translation.

Outages. A query that fails because the server cannot be reached (connection refused or
reset, server shut down, restarting or in recovery, too many connections, a timeout)
raises :class:`~oore.errors.StoreUnavailable` (503) rather than ``StoreError`` (500), and
wakes the database's watcher. The watcher probes the server on a fresh connection; if that
fails too, an outage begins and is logged once. During it every query fails at once with
``StoreUnavailable``, while the watcher asks ``revive`` to bring the server back (the
embedded server restarts itself; an external one is waited for) and probes again, backing
off from ``RETRY_INITIAL`` to ``RETRY_MAX`` seconds. When a probe succeeds the pool's old
connections are expired (the next acquire makes new ones), the end of the outage is
logged once with its length, and :meth:`Database.wait_recovered` wakes its waiters so the
actors rebuild their state from the database. A commit whose connection died mid-flight
answers ``StoreUnavailable``: it may or may not have committed, and it was never
acknowledged as done.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Concatenate, ParamSpec, TypeAlias, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
import orjson
import trio

from oore.domain.client_ip import is_loopback
from oore.domain.json_input import has_long_digit_run
from oore.errors import ApiError, InvalidInput, StoreError, StoreUnavailable
from oore.store.bridge import AsyncioBridge, open_bridge
from oore.store.changes import Changes, TrackedConnection
from oore.timeslice import request_slice, runs_command

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")

Connection: TypeAlias = asyncpg.Connection
Query = Callable[Concatenate[Connection, P], Awaitable[T]]


Revive = Callable[[], Awaitable[object]]

CONNECT_TIMEOUT = 10.0  # seconds for a new connection, pooled or probe
RETRY_INITIAL = 0.1  # seconds between probes at the start of an outage, doubling...
RETRY_MAX = 2.0  # ...up to this
# A run of digits long enough to be an integer beyond 64 bits.

# Failures to reach the server, as opposed to failures of a query.
_UNREACHABLE = (
    OSError,  # refused, reset, no socket file
    TimeoutError,  # connect or command timeout
    asyncpg.exceptions.PostgresConnectionError,  # class 08, and "connection was closed"
    asyncpg.exceptions.CannotConnectNowError,  # starting up, shutting down, in recovery
    asyncpg.exceptions.AdminShutdownError,  # terminated by a fast or immediate stop
    asyncpg.exceptions.CrashShutdownError,  # another backend crashed
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InternalClientError,  # a protocol left mid-operation by a lost server
)


def unreachable(exc: BaseException) -> bool:
    """Did this fail because the server could not be reached (not because of the query)?"""
    if isinstance(exc, _UNREACHABLE):
        return True
    # "connection is closed", "pool is closed": the connection or pool is gone.
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


def translate(exc: BaseException) -> ApiError:
    """Turn a driver or socket failure into the project's error type (the one place).

    An unreachable server is ``StoreUnavailable`` (503), logged once per outage by the
    watcher rather than once per request; anything else is ``StoreError`` (500), logged.
    """
    if isinstance(exc, ApiError):
        return exc
    if unreachable(exc):
        log.debug("database unreachable: %r", exc)
        return StoreUnavailable()
    if isinstance(exc, _UNSTORABLE_VALUES):
        # A value from the client the database cannot hold: the client's error, not ours.
        log.info("value refused by the database: %r", exc)
        return InvalidInput("invalid_input", "A value in the request cannot be stored")
    log.error("database failure: %r", exc)
    return StoreError()


# NUL in text or JSON, a number beyond its column, text beyond its column's length, and a
# value the driver cannot encode (an integer over 64 bits, a lone surrogate).
_UNSTORABLE_VALUES = (
    asyncpg.exceptions.CharacterNotInRepertoireError,
    asyncpg.exceptions.UntranslatableCharacterError,
    asyncpg.exceptions.NumericValueOutOfRangeError,
    asyncpg.exceptions.StringDataRightTruncationError,
    asyncpg.exceptions._base.DataError,
)
_DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)


@dataclass(frozen=True)
class PoolUsage:
    """Connections of the pool: taken by a query now, open, and at most."""

    in_use: int
    open: int
    max: int


class Database:
    """A pool of connections; every query function runs on the asyncio side of the bridge.

    ``revive`` is awaited during an outage before each probe (it restarts an embedded
    server that died; it may raise ApiError, which is logged and retried).
    """

    def __init__(
        self, bridge: AsyncioBridge, pool: asyncpg.Pool, url: str, *, revive: Revive | None = None
    ) -> None:
        self._bridge = bridge
        self._pool = pool
        self._url = url
        self._revive = revive
        self._down_since: float | None = None
        self._suspect = trio.Event()
        self._recovered = trio.Event()
        self.outages = 0
        self.recoveries = 0
        # What the writes of each call may have changed (oore/store/changes.py).
        self.changes = Changes()

    @property
    def bridge(self) -> AsyncioBridge:
        return self._bridge

    @property
    def url(self) -> str:
        """Where the pool connects (for a connection of its own, such as a listener's)."""
        return self._url

    @property
    def available(self) -> bool:
        """False during an outage (queries then raise StoreUnavailable at once)."""
        return self._down_since is None

    def pool_usage(self) -> PoolUsage:
        """The pool's connections, read without a crossing (plain counters of the pool)."""
        pool = self._pool
        size = pool.get_size()
        return PoolUsage(size - pool.get_idle_size(), size, pool.get_max_size())

    async def wait_recovered(self, seen: int) -> int:
        """Wait until more than ``seen`` outages have ended; return how many have."""
        while self.recoveries <= seen:
            await self._recovered.wait()
        return self.recoveries

    async def run(self, query: Query[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``query(conn, ...)`` on a pooled connection, outside a transaction."""

        async def on_loop() -> T:
            async with self._pool.acquire() as conn, self._tracking(conn):
                return await query(conn, *args, **kwargs)

        return await self._call(on_loop)

    async def transaction(self, query: Query[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``query(conn, ...)`` inside one transaction; it commits when query returns."""

        async def on_loop() -> T:
            async with self._pool.acquire() as conn, self._tracking(conn), conn.transaction():
                return await query(conn, *args, **kwargs)

        return await self._call(on_loop)

    @asynccontextmanager
    async def _tracking(self, conn: Connection) -> AsyncIterator[None]:
        """Note the marks of the writes run inside; once the block is done (committed or
        rolled back) hand them to :attr:`changes` on the trio side, ahead of the call's
        result, and even when the trio caller was cancelled meanwhile."""
        tracked: TrackedConnection = conn  # the pool's connection class
        # bound now: the pool's proxy lets go of a connection that died mid-call
        track = tracked.track
        marks: set[str] = set()
        track(marks)
        try:
            yield
        finally:
            track(None)
            if marks:
                self._bridge.to_trio(partial(self.changes.committed, frozenset(marks)))

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        if self._down_since is not None:
            raise StoreUnavailable()
        try:
            return await self._bridge.call(fn)
        except ApiError:
            raise
        except _DRIVER_ERRORS as exc:
            error = translate(exc)
            if isinstance(error, StoreUnavailable):
                self._suspect.set()
            raise error from exc

    async def watch(self, interval: float | None = None) -> None:
        """Notice outages and end them; runs until cancelled (``open_database`` owns it).

        A failed query wakes it; so does every ``interval`` seconds, if given, so a server
        that dies while nobody queries it is noticed and revived too.
        """
        while True:
            with trio.move_on_after(math.inf if interval is None else interval):
                await self._suspect.wait()
            suspected = self._suspect.is_set()
            self._suspect = trio.Event()
            failure = await self._probe()
            if failure is not None:
                await self._outage(failure)
            elif suspected:  # one connection broke: replace the pool's, they may be stale
                await self._expire_connections()

    async def _outage(self, cause: BaseException) -> None:
        """From the first failed probe until one succeeds."""
        started = trio.current_time()
        self._down_since = started
        self.outages += 1
        log.error(
            "database unavailable (%r); answering 503 store_unavailable until it is back", cause
        )
        delay = RETRY_INITIAL
        said = ""
        while True:
            if self._revive is not None:
                try:
                    await self._revive()
                except ApiError as exc:  # logged when the reason changes, not every attempt
                    if exc.message != said:
                        said = exc.message
                        log.warning("%s (retrying)", said)
            if await self._probe() is None:
                break
            await trio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

        await self._expire_connections()
        self._down_since = None
        self.recoveries += 1
        self._recovered.set()
        self._recovered = trio.Event()
        log.warning(
            "database available again after %.1fs unavailable", trio.current_time() - started
        )

    async def _expire_connections(self) -> None:
        """Close every pooled connection when it is next released or acquired."""

        async def expire() -> None:
            await self._pool.expire_connections()

        await self._bridge.call(expire)

    async def _probe(self) -> BaseException | None:
        """Connect afresh (not through the pool, which may be busy) and ask ``SELECT 1``."""

        async def ping() -> None:
            conn = await asyncpg.connect(self._url, timeout=CONNECT_TIMEOUT)
            try:
                await conn.fetchval("SELECT 1", timeout=CONNECT_TIMEOUT)
            finally:
                await conn.close(timeout=CONNECT_TIMEOUT)

        try:
            await self._bridge.call(ping)
        except _DRIVER_ERRORS as exc:
            return exc
        return None


async def _init_connection(conn: Connection, *, short_slices: bool = False) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=_json_dumps, decoder=_json_loads, schema="pg_catalog"
    )
    if short_slices:
        _shorten_session_slices(conn.get_server_pid())


def _shorten_session_slices(server_pid: int) -> None:
    """Ask for short CPU slices for the server process of one of our sessions (see
    :mod:`oore.timeslice`), if it is a PostgreSQL process on this machine (the caller
    connects to a local server only) the kernel lets us change."""
    if server_pid > 0 and runs_command(server_pid, "postgres"):
        request_slice(server_pid)


def local_server(url: str) -> bool:
    """Whether every host ``url`` names is on this machine: a Unix socket, ``localhost``,
    a loopback address, or none (the driver's default sockets). A session's server process
    id then names a process here."""
    parts = urlsplit(url)
    hosts = [host for value in parse_qs(parts.query).get("host", []) for host in value.split(",")]
    hosts += parts.netloc.rpartition("@")[2].split(",")
    return all(_is_local(host) for host in hosts)


def _is_local(address: str) -> bool:
    """Whether a host of a database URL (with its port or not) is on this machine."""
    address = unquote(address)
    if address == "" or address.startswith("/"):
        return True
    return address.partition(":")[0] == "localhost" or is_loopback(address)


def _json_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _json_loads(value: str) -> Any:
    # orjson is several times faster, but turns an integer beyond 64 bits into a float;
    # a value that may hold one (a run of 19 digits) goes to the exact decoder.
    if not has_long_digit_run(value):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:  # what only the standard decoder reads (surrogates)
            pass
    return json.loads(value)


async def _keep_session(conn: Connection) -> None:
    """Release without asyncpg's default reset query, a round trip per acquire.

    The store sets no session state: no ``SET`` outside a transaction, no ``LISTEN``,
    advisory locks only transaction-scoped. An open transaction is still rolled back by
    the pool before this runs.
    """


class _QuietFloorRetries(logging.Filter):
    """Drop asyncpg's per-attempt traceback while it cannot refill the pool in an outage.

    The outage is logged once, at its start and at its end, by the watcher.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None or not unreachable(record.exc_info[1] or Exception())


@asynccontextmanager
async def open_database(
    url: str,
    *,
    pool_size: int = 10,
    revive: Revive | None = None,
    watch_interval: float | None = None,
    short_slices: bool = False,
) -> AsyncIterator[Database]:
    """Connect a pool (on a fresh bridge), watch for outages, close it on exit.

    Raises StoreUnavailable if the server cannot be reached at all, StoreError if it
    refuses us. See :meth:`Database.watch` for ``watch_interval``. ``short_slices``: ask
    for short CPU slices for each session's server process when the server is on this
    machine (see :mod:`oore.timeslice`).
    """
    quiet = _QuietFloorRetries()
    pool_log = logging.getLogger("asyncpg.pool")
    pool_log.addFilter(quiet)
    try:
        init = partial(_init_connection, short_slices=short_slices and local_server(url))
        async with _open_database(url, pool_size, revive, watch_interval, init) as db:
            yield db
    finally:
        pool_log.removeFilter(quiet)


@asynccontextmanager
async def _open_database(
    url: str,
    pool_size: int,
    revive: Revive | None,
    watch_interval: float | None,
    init: Callable[[Connection], Awaitable[None]],
) -> AsyncIterator[Database]:
    async with open_bridge() as bridge:

        async def create() -> asyncpg.Pool:
            return await asyncpg.create_pool(
                url,
                min_size=min(2, pool_size),
                max_size=pool_size,
                init=init,
                connection_class=TrackedConnection,
                reset=_keep_session,
                command_timeout=60,
                timeout=CONNECT_TIMEOUT,
            )

        try:
            pool = await bridge.call(create)
        except _DRIVER_ERRORS as exc:
            log.error("cannot connect to the database: %r", exc)
            raise translate(exc) from exc
        try:
            db = Database(bridge, pool, url, revive=revive)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(db.watch, watch_interval)
                try:
                    yield db
                finally:
                    nursery.cancel_scope.cancel()
        finally:

            async def close() -> None:
                await pool.close()

            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await bridge.call(close)
