"""Changes that may take read access away, told to the live log streams of every daemon.

A member removed from a project or demoted, a user disabled or demoted, a session ended
(logout, a sign-in policy change), an API token revoked, a project deleted: the service
that committed it calls :meth:`GrantChanges.changed`, which moves this daemon's
:class:`~oore.live.fanout.GrantEpoch` on at once and publishes a ``grants`` notice that
moves the other daemons' on. A stream re-checks a viewer's grant before it writes the
viewer another line whenever the epoch moved since the grant was last found to hold
(``oore/live/fanout.py``). A lost notice is caught by the streams' own re-check every
``check_every`` seconds; a listener that reconnects moves the epoch on (what it missed
meanwhile is unknown).
"""

from __future__ import annotations

from oore.cluster import Notices, Subscription
from oore.live.fanout import GrantEpoch

GRANTS = "grants"
CHANGED = "changed"


class GrantChanges:
    """This daemon's grant epoch, moved on by its own changes and by other daemons'."""

    def __init__(self, notices: Notices) -> None:
        self.epoch = GrantEpoch()
        self._notices = notices

    def changed(self) -> None:
        """A change that may take access away committed here: every stream re-checks."""
        self.epoch.moved()
        self._notices.publish(GRANTS, (CHANGED,))

    def subscribe(self) -> None:
        self._notices.subscribe(GRANTS, Subscription(self._noticed, resync=self._resync))

    async def _noticed(self, items: list[str]) -> None:
        self.epoch.moved()

    async def _resync(self) -> None:
        self.epoch.moved()
