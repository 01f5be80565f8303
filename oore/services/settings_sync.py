"""Settings held in memory, kept equal to the database's on every daemon sharing it.

Three settings are kept in memory, so that what runs on every request (or every claim)
never waits on the database: :class:`~oore.services.network.Network` (the CORS allowlist,
the public and delivery URLs, the names the server answers to),
:class:`~oore.services.artifact_storage.ArtifactStorageService` (the backend built from the
artifact storage settings) and the preferences' runner pause
(``direct_macos_runner_paused``, applied by the scheduling's dispatcher to every claim).
Everything else another daemon can change (the other preferences, trusted proxy, OIDC,
integrations, sessions, API tokens) is read from the database when it is used, so a
change made through any daemon holds on every other at once.

A daemon that saves one of them publishes a ``settings`` notice naming it (``network``,
``artifact_storage``, ``preferences``) once the save committed; the other daemons reload
what the notice names. A notice may be lost (the listening connection was down, or the
daemon died between its commit and its notice): every ``poll_every`` seconds one query
reads all three, and one that differs from the copy in force is reloaded. So a change
holds on every daemon within about a second, notice or not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from oore.cluster import Notices, Subscription
from oore.scheduling import Scheduling
from oore.services.artifact_storage import ArtifactStorageService
from oore.services.network import Network
from oore.store import Store

log = logging.getLogger(__name__)

SETTINGS = "settings"
NETWORK = "network"
ARTIFACT_STORAGE = "artifact_storage"
PREFERENCES = "preferences"
POLL_EVERY = 1.0  # seconds between fallback polls


def telling(notices: Notices, what: str) -> Callable[[], None]:
    """What a service calls once its save of ``what`` committed: the others reload it."""
    return partial(notices.publish, SETTINGS, (what,))


def pause_telling(notices: Notices, scheduling: Scheduling) -> Callable[[bool], None]:
    """What the preferences call once a change of the runner pause committed: it holds
    here at once, and the other daemons apply it when told."""

    def saved(paused: bool) -> None:
        scheduling.pause_direct_macos(paused)
        notices.publish(SETTINGS, (PREFERENCES,))

    return saved


class SettingsSync:
    """Applies the other daemons' settings changes to this daemon's copies."""

    def __init__(
        self,
        store: Store,
        network: Network,
        storage: ArtifactStorageService,
        scheduling: Scheduling,
        *,
        poll_every: float = POLL_EVERY,
    ) -> None:
        self._store = store
        self._network = network
        self._storage = storage
        self._scheduling = scheduling
        self._poll_every = poll_every

    def subscribe(self, notices: Notices) -> None:
        notices.subscribe(
            SETTINGS,
            Subscription(
                self.noticed, resync=self.poll, poll=self.poll, poll_every=self._poll_every
            ),
        )

    async def noticed(self, items: list[str]) -> None:
        """Reload what the notices name (an unknown name is a newer daemon's: skipped)."""
        if NETWORK in items:
            await self._reload_network()
        if ARTIFACT_STORAGE in items:
            await self._reload_storage()
        if PREFERENCES in items:
            await self.load_pause()

    async def poll(self) -> None:
        """Reload the copies whose row differs from the database's (one query)."""
        changes = self._scheduling.pause_changes
        rows = await self._store.settings.held_rows()
        if rows.network != self._network.row:
            await self._reload_network()
        if rows.artifact_storage != self._storage.settings_row:
            await self._reload_storage()
        self._apply_pause(rows.direct_macos_runner_paused, changes)

    async def load_pause(self) -> None:
        """Apply the runner pause as saved (at start, and when told it changed)."""
        changes = self._scheduling.pause_changes
        prefs = await self._store.instance.preferences()
        self._apply_pause(prefs.direct_macos_runner_paused, changes)

    def _apply_pause(self, paused: bool, changes: int) -> None:
        # A change applied here while the read was in flight is newer than what it read.
        if self._scheduling.pause_changes == changes:
            self._scheduling.pause_direct_macos(paused)

    async def _reload_network(self) -> None:
        await self._network.reload()
        log.info("network settings changed by another daemon: reloaded")

    async def _reload_storage(self) -> None:
        await self._storage.reload()  # logs the backend now in use
