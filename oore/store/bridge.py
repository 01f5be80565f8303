"""The one crossing from trio to asyncio: asyncpg runs on an asyncio loop in its own thread.

A trio task hands a coroutine to the loop and sleeps until its future completes; the
future's done-callback wakes the trio task through its ``TrioToken``. Cancelling the trio
task cancels the asyncio task (asyncpg then cancels the query and rolls back). One
crossing costs roughly one asyncio task plus two thread wake-ups, so callers batch work
into one coroutine per crossing rather than one crossing per row (see README figures).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import ParamSpec, TypeVar

import trio

T = TypeVar("T")
P = ParamSpec("P")

LEFTOVER_GRACE = 1.0  # seconds for tasks left on the loop at exit, then as long to unwind


class AsyncioBridge:
    """Runs coroutine functions on a private asyncio loop and awaits them from trio."""

    def __init__(self, loop: asyncio.AbstractEventLoop, token: trio.lowlevel.TrioToken) -> None:
        self._loop = loop
        self._token = token
        self.crossings = 0

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` on the asyncio loop and return its result.

        Cancellation: if the calling trio task is cancelled, the asyncio task is cancelled
        too and this waits (shielded, briefly) for it to finish unwinding.
        """

        async def runner() -> T:
            return await fn(*args, **kwargs)

        self.crossings += 1
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(
            runner(), self._loop
        )
        done = trio.Event()

        def wake(_: concurrent.futures.Future[T]) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(done.set)

        future.add_done_callback(wake)
        try:
            await done.wait()
        except trio.Cancelled:
            future.cancel()
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await done.wait()
            raise
        return future.result()

    def to_trio(self, fn: Callable[[], object]) -> None:
        """Run ``fn()`` soon on the trio side; callable from the asyncio thread (a driver's
        callback). Dropped once trio has stopped."""
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(fn)


@asynccontextmanager
async def open_bridge() -> AsyncIterator[AsyncioBridge]:
    """Start the asyncio thread; stop it on exit, after the tasks left on its loop have
    ended (see :func:`_finish_leftovers`)."""
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
            loop.run_until_complete(_finish_leftovers())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=main, name="oore-asyncpg", daemon=True)
    thread.start()
    await trio.to_thread.run_sync(started.wait)
    try:
        yield AsyncioBridge(loop, trio.lowlevel.current_trio_token())
    finally:
        loop.call_soon_threadsafe(loop.stop)
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(thread.join, 10.0)


async def _finish_leftovers() -> None:
    """End the tasks still on the loop once it stops: what the driver started on its own
    (a pool connection's close when connections were expired after an outage, the pool's
    refill) gets :data:`LEFTOVER_GRACE` seconds to finish, the rest is cancelled and
    unwinds. A task dropped with the loop would leave its connection open until the
    garbage collector finds it (asyncpg then warns of an unclosed connection)."""
    current = asyncio.current_task()
    pending = {task for task in asyncio.all_tasks() if task is not current}
    if not pending:
        return
    _, stuck = await asyncio.wait(pending, timeout=LEFTOVER_GRACE)
    for task in stuck:
        task.cancel()
    if stuck:
        await asyncio.wait(stuck, timeout=LEFTOVER_GRACE)
    for task in pending:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: a failed close of a dead connection is no news
