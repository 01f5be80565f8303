"""Leadership: one daemon of those sharing a database runs the maintenance duties.

The duties (``oore/runtime.py`` lists them: runner lease sweeps, timeouts of builds whose
daemon died, reservation expiry, webhook retries, the retention cleanup) must run
somewhere even when the daemon that started a piece of work died, and need run in one
place only. A lease row in PostgreSQL decides where: every daemon tries to take or renew
it every third of the lease; the one that holds it runs the duties, and stops them as
soon as it cannot be sure it still holds it (a renewal failed and the lease may have run
out). A daemon that stops gives the lease up, so another takes over at its next try; one
that dies is replaced once its lease has run out.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

import trio

from oore.errors import ApiError
from oore.store import Store

log = logging.getLogger(__name__)

DUTIES = "maintenance"
RELEASE_DEADLINE = 2.0


class Leadership:
    """Runs ``duties`` (until cancelled) while this daemon holds the lease."""

    def __init__(
        self,
        store: Store,
        holder: str,
        duties: Callable[[], Awaitable[None]],
        *,
        lease: float = 10.0,
    ) -> None:
        self._store = store
        self.holder = holder
        self._duties = duties
        self.lease = lease
        self._scope: trio.CancelScope | None = None
        self.terms = 0  # times this daemon became the leader

    @property
    def leading(self) -> bool:
        return self._scope is not None

    async def run(self) -> None:
        """Take part in the election until cancelled; give the lease up on the way out."""
        try:
            async with trio.open_nursery() as nursery:
                sure_until = 0.0
                while True:
                    asked = trio.current_time()
                    try:
                        held = await self._store.cluster.hold_lease(DUTIES, self.holder, self.lease)
                    except ApiError as exc:
                        log.debug("leader lease not renewed: %s", exc.message)
                    else:
                        if held:
                            sure_until = asked + self.lease
                            if self._scope is None:
                                nursery.start_soon(self._lead)
                        else:
                            sure_until = 0.0
                    if self._scope is not None and trio.current_time() >= sure_until:
                        self._step_down()
                    await trio.sleep(self.lease / 3)
        finally:
            self._step_down()
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(RELEASE_DEADLINE),
                contextlib.suppress(ApiError),  # then it runs out by itself
            ):
                await self._store.cluster.release_lease(DUTIES, self.holder)

    async def _lead(self) -> None:
        with trio.CancelScope() as scope:
            self._scope = scope
            self.terms += 1
            log.info("this daemon now leads the maintenance duties (%s)", self.holder)
            try:
                await self._duties()
            finally:
                if self._scope is scope:
                    self._scope = None

    def _step_down(self) -> None:
        if self._scope is not None:
            log.info("this daemon no longer leads the maintenance duties")
            self._scope.cancel()
            self._scope = None
