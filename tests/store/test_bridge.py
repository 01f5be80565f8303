"""The crossing to asyncio: work the driver leaves on the loop ends with the bridge."""

from __future__ import annotations

import asyncio
import gc
import threading

import asyncpg

from oore.store.bridge import open_bridge


async def test_a_connection_closing_in_the_background_is_closed_when_the_bridge_stops(
    database_url: str,
) -> None:
    """As asyncpg's pool closes a connection it expired: in a task nobody awaits. The loop
    stopping must not drop that task, leaving the connection open for the garbage
    collector (which warns; the suite turns the warning into a failure)."""
    async with open_bridge() as bridge:
        conn: asyncpg.Connection = await bridge.call(asyncpg.connect, database_url)

        async def close(connection: asyncpg.Connection) -> None:
            await asyncio.sleep(0.05)  # behind other work on the loop
            await connection.close()

        async def close_later(connection: asyncpg.Connection) -> None:
            asyncio.get_running_loop().create_task(close(connection))

        await bridge.call(close_later, conn)
    assert conn.is_closed()
    del conn
    gc.collect()


async def test_a_task_that_does_not_end_is_cancelled_and_unwinds_when_the_bridge_stops() -> None:
    unwound = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            unwound.set()

    async with open_bridge() as bridge:

        async def leave_running() -> None:
            asyncio.get_running_loop().create_task(forever())

        await bridge.call(leave_running)
    assert unwound.is_set()
