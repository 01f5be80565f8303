"""The PostgreSQL pool, reached from trio through the bridge, with the one error translation."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Concatenate, ParamSpec, TypeAlias, TypeVar

import asyncpg
import trio

from oore.errors import ApiError, InvalidInput, StoreError
from oore.store.bridge import AsyncioBridge, open_bridge

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")

Connection: TypeAlias = asyncpg.Connection
Query = Callable[Concatenate[Connection, P], Awaitable[T]]


def translate(exc: BaseException) -> ApiError:
    """Turn a driver or socket failure into the project's error type (the one place)."""
    if isinstance(exc, ApiError):
        return exc
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
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class Database:
    """A pool of connections; every query function runs on the asyncio side of the bridge."""

    def __init__(self, bridge: AsyncioBridge, pool: asyncpg.Pool) -> None:
        self._bridge = bridge
        self._pool = pool

    @property
    def bridge(self) -> AsyncioBridge:
        return self._bridge

    async def run(self, query: Query[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``query(conn, ...)`` on a pooled connection, outside a transaction."""

        async def on_loop() -> T:
            async with self._pool.acquire() as conn:
                return await query(conn, *args, **kwargs)

        return await self._call(on_loop)

    async def transaction(self, query: Query[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``query(conn, ...)`` inside one transaction; it commits when query returns."""

        async def on_loop() -> T:
            async with self._pool.acquire() as conn, conn.transaction():
                return await query(conn, *args, **kwargs)

        return await self._call(on_loop)

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            return await self._bridge.call(fn)
        except ApiError:
            raise
        except _DRIVER_ERRORS as exc:
            raise translate(exc) from exc


async def _init_connection(conn: Connection) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=_json_dumps, decoder=_json_loads, schema="pg_catalog"
    )


def _json_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _json_loads(value: str) -> Any:
    return json.loads(value)


async def _keep_session(conn: Connection) -> None:
    """Release without asyncpg's default reset query, a round trip per acquire.

    The store sets no session state: no ``SET`` outside a transaction, no ``LISTEN``,
    advisory locks only transaction-scoped. An open transaction is still rolled back by
    the pool before this runs.
    """


@asynccontextmanager
async def open_database(url: str, *, pool_size: int = 10) -> AsyncIterator[Database]:
    """Connect a pool (on a fresh bridge) and close it on exit; StoreError if unreachable."""
    async with open_bridge() as bridge:

        async def create() -> asyncpg.Pool:
            return await asyncpg.create_pool(
                url,
                min_size=min(2, pool_size),
                max_size=pool_size,
                init=_init_connection,
                reset=_keep_session,
                command_timeout=60,
            )

        try:
            pool = await bridge.call(create)
        except _DRIVER_ERRORS as exc:
            raise translate(exc) from exc
        try:
            yield Database(bridge, pool)
        finally:

            async def close() -> None:
                await pool.close()

            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await bridge.call(close)
