"""The external-access network settings in force (contract §10.3): public URL, artifact
delivery URL and the CORS allowlist, and from them the names the server answers to. A saved
row wins over the environment, which wins over the defaults; the values are held in memory
so CORS, Host and redirect checks never wait on the database, and replaced at once when the
settings are saved (on the other daemons sharing the database, when they hear of it: see
:mod:`oore.services.settings_sync`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import trio

from oore.domain.network import (
    LOCAL_ORIGINS,
    NetworkSettings,
    rebinding_proof,
    served_names,
    with_local_defaults,
)
from oore.store import Store

__all__ = ["LOCAL_ORIGINS", "Network", "NetworkDefaults"]

Source = Literal["database", "environment", "default"]


@dataclass(frozen=True)
class NetworkDefaults:
    """What the daemon's flags and environment say, used while no row is saved."""

    allowed_origins: tuple[str, ...] = LOCAL_ORIGINS
    public_url: str | None = None
    artifact_delivery_url: str | None = None
    # DNS names the server is reached by besides those of the URLs above: the listen
    # address, this machine's name, OORED_ALLOWED_HOSTS (not part of the saved settings).
    host_names: tuple[str, ...] = field(default=(), compare=False)
    # OORE_WARPGATE_TICKET: the Warpgate access ticket when none is saved (see
    # oore.domain.network.TrustedProxySettings.ticket_source); never shown.
    warpgate_ticket: str | None = field(default=None, compare=False, repr=False)

    @property
    def source(self) -> Source:
        return "default" if self == NetworkDefaults() else "environment"


class Network:
    """The network settings in force; read synchronously by CORS and the redirect rule."""

    def __init__(
        self,
        store: Store,
        defaults: NetworkDefaults,
        *,
        saved: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._defaults = defaults
        self._saved = saved  # told once a save committed (the other daemons reload)
        self._saving = trio.Lock()
        self.row: NetworkSettings | None  # the saved row in force, None for the defaults
        self.allowed_origins: tuple[str, ...]
        self.public_url: str | None
        self.artifact_delivery_url: str | None
        self.source: Source
        self.updated_at: int | None
        self._served_names: frozenset[str]
        self._apply(None)

    async def reload(self) -> None:
        """Take the saved row if there is one, else the defaults."""
        async with self._saving:
            self._apply(await self._store.settings.network())

    async def save(self, settings: NetworkSettings, now: int) -> None:
        """Store the settings and put them in force before returning."""
        async with self._saving:
            await self._store.settings.save_network(settings, now)
            self._apply(replace(settings, updated_at=now))
        if self._saved is not None:
            self._saved()

    def _apply(self, row: NetworkSettings | None) -> None:
        self.row = row
        if row is None:
            defaults = self._defaults
            self.allowed_origins = with_local_defaults(defaults.allowed_origins)
            self.public_url = defaults.public_url
            self.artifact_delivery_url = defaults.artifact_delivery_url
            self.source = defaults.source
            self.updated_at = None
        else:
            self.allowed_origins = with_local_defaults(row.allowed_origins)
            self.public_url = row.public_url
            # A saved row without a delivery URL still honours the environment's.
            self.artifact_delivery_url = (
                row.artifact_delivery_url or self._defaults.artifact_delivery_url
            )
            self.source = "database"
            self.updated_at = row.updated_at
        self._served_names = served_names(
            self._defaults.host_names,
            self.public_url,
            self.artifact_delivery_url,
            self.allowed_origins,
        )

    @property
    def environment_warpgate_ticket(self) -> str | None:
        """The Warpgate ticket the environment gives, if any."""
        return self._defaults.warpgate_ticket

    def serves(self, host: str) -> bool:
        """Is ``host`` (as :func:`~oore.domain.network.host_name` gives it) a name this
        server answers to: an IP literal, a loopback name, or one configured?"""
        return rebinding_proof(host) or host in self._served_names

    def to_json(self) -> dict[str, Any]:
        """The ``GET …/network`` shape: optional values omitted when unset."""
        body: dict[str, Any] = {}
        if self.public_url is not None:
            body["public_url"] = self.public_url
        if self.artifact_delivery_url is not None:
            body["artifact_delivery_url"] = self.artifact_delivery_url
        body["allowed_origins"] = list(self.allowed_origins)
        body["source"] = self.source
        if self.updated_at is not None:
            body["updated_at"] = self.updated_at
        return body
