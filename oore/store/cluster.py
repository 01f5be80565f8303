"""What daemons sharing one database say to each other: notifications and duty leases.

Notifications are PostgreSQL's LISTEN/NOTIFY on one channel. They are sent by
:meth:`ClusterStore.notify` as a statement of their own, after the change they announce
has committed, never inside a hot transaction (a transaction that notifies takes a
database-wide lock at commit, so every notifying commit would wait for the others).
:class:`Listener` holds a connection of its own that listens, hands each payload to the
trio side, and reconnects when that connection is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import trio

from oore.errors import ApiError
from oore.store.database import CONNECT_TIMEOUT, RETRY_MAX, Connection, Database, translate

log = logging.getLogger(__name__)

CHANNEL = "oore_cluster"
PING_EVERY = 5.0  # seconds between checks that the listening connection still answers
PING_TIMEOUT = 5.0
LISTENER_NAME = "oored listener"  # as pg_stat_activity shows the listening connection


class ClusterStore:
    """Notifications between daemons and the leases of their shared duties."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def notify(self, payloads: Sequence[str]) -> None:
        """Send each payload on the cluster channel, in order, in one statement."""
        await self._db.run(_notify, list(payloads))

    async def hold_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew the lease ``name`` for ``seconds``; False while another holds it."""
        return bool(await self._db.run(_hold_lease, name, holder, seconds))

    async def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up at once (another daemon need not wait for it to run out)."""
        await self._db.run(_release_lease, name, holder)

    async def lease_holder(self, name: str) -> str | None:
        """Who holds the lease now, if anyone."""
        return await self._db.run(_lease_holder, name)

    def listener(self, deliver: Callable[[str], None]) -> Listener:
        """A listener handing every payload on the channel to ``deliver`` (trio side)."""
        return Listener(self._db, deliver)


async def _notify(conn: Connection, payloads: list[str]) -> None:
    await conn.execute("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", CHANNEL, payloads)


async def _hold_lease(conn: Connection, name: str, holder: str, seconds: float) -> Any:
    return await conn.fetchval(
        """INSERT INTO cluster_leases (name, holder, expires_at)
           VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))
           ON CONFLICT (name) DO UPDATE
               SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
               WHERE cluster_leases.holder = EXCLUDED.holder
                  OR cluster_leases.expires_at < clock_timestamp()
           RETURNING true""",
        name,
        holder,
        seconds,
    )


async def _release_lease(conn: Connection, name: str, holder: str) -> None:
    await conn.execute("DELETE FROM cluster_leases WHERE name = $1 AND holder = $2", name, holder)


async def _lease_holder(conn: Connection, name: str) -> Any:
    return await conn.fetchval(
        "SELECT holder FROM cluster_leases WHERE name = $1 AND expires_at >= clock_timestamp()",
        name,
    )


class Listener:
    """One connection of its own that LISTENs on the cluster channel.

    :meth:`run` connects, listens, then calls ``on_listening`` (which catches up on what
    may have been missed while not listening) and waits until the connection is lost:
    closed by the server, or not answering a ping within ``PING_TIMEOUT``. Then it
    connects again, backing off up to ``RETRY_MAX`` seconds, for as long as it runs.
    """

    def __init__(self, db: Database, deliver: Callable[[str], None]) -> None:
        self._db = db
        self._deliver = deliver
        self.listening = False
        self.connects = 0

    async def run(
        self,
        on_listening: Callable[[], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen until cancelled; ``task_status`` is told once the first LISTEN is in
        place (or the first attempt failed: the caller goes on, this keeps trying)."""
        pause = 0.1
        started = False
        while True:
            lost = trio.Event()
            try:
                conn = await self._connect(lost)
            except ApiError as exc:
                log.debug("cluster listener cannot connect: %s", exc.message)
            else:
                pause = 0.1
                self.connects += 1
                self.listening = True
                try:
                    if not started:
                        started = True
                        task_status.started()
                    await on_listening()
                    await self._until_lost(conn, lost)
                finally:
                    self.listening = False
                    with trio.CancelScope(shield=True), trio.move_on_after(CONNECT_TIMEOUT):
                        await self._close(conn)
                log.warning("cluster listener lost its connection; listening again")
            if not started:
                started = True
                task_status.started()
            await trio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX)

    async def _connect(self, lost: trio.Event) -> asyncpg.Connection:
        bridge = self._db.bridge
        url = self._db.url

        def on_notice(_conn: object, _pid: int, _channel: str, payload: object) -> None:
            text = str(payload)
            bridge.to_trio(lambda: self._deliver(text))

        def on_closed(_conn: object) -> None:
            bridge.to_trio(lost.set)

        async def connect() -> asyncpg.Connection:
            conn = await asyncpg.connect(
                url, timeout=CONNECT_TIMEOUT, server_settings={"application_name": LISTENER_NAME}
            )
            try:
                conn.add_termination_listener(on_closed)
                await conn.add_listener(CHANNEL, on_notice)
            except BaseException:
                conn.terminate()
                raise
            return conn

        try:
            return await bridge.call(connect)
        except ApiError:
            raise
        except Exception as exc:
            raise translate(exc) from exc

    async def _until_lost(self, conn: asyncpg.Connection, lost: trio.Event) -> None:
        async def ping() -> None:
            await conn.fetchval("SELECT 1", timeout=PING_TIMEOUT)

        while not lost.is_set():
            with trio.move_on_after(PING_EVERY):
                await lost.wait()
                return
            try:
                with trio.fail_after(PING_TIMEOUT + 1):
                    await self._db.bridge.call(ping)
            except (trio.TooSlowError, Exception):
                return

    async def _close(self, conn: asyncpg.Connection) -> None:
        async def close() -> None:
            try:
                await conn.close(timeout=CONNECT_TIMEOUT)
            except Exception:
                conn.terminate()

        try:
            await self._db.bridge.call(close)
        except Exception:  # already gone: nothing to close
            return
