"""The external-access network settings in force (contract §10.3): public URL, artifact
delivery URL and the CORS allowlist. A saved row wins over the environment, which wins over
the defaults; the values are held in memory so CORS and redirect checks never wait on the
database, and replaced at once when the settings are saved."""

from __future__ import annotations

from dataclasses import dataclass

from oore.store import Store

LOCAL_ORIGINS = (
    "http://localhost:3000",
    "http://127.0.0.1:3000",
    "http://localhost:4173",
    "http://127.0.0.1:4173",
)


@dataclass(frozen=True)
class NetworkDefaults:
    """What the daemon's flags and environment say, used while no row is saved."""

    allowed_origins: tuple[str, ...] = LOCAL_ORIGINS
    public_url: str | None = None
    artifact_delivery_url: str | None = None


class Network:
    """The network settings in force; read synchronously by CORS and the redirect rule."""

    def __init__(self, store: Store, defaults: NetworkDefaults) -> None:
        self._store = store
        self._defaults = defaults
        self.allowed_origins: tuple[str, ...] = defaults.allowed_origins
        self.public_url: str | None = defaults.public_url
        self.artifact_delivery_url: str | None = defaults.artifact_delivery_url
