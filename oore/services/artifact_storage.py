"""Artifact storage settings and the backend built from them (contract §7.1, §10.1).

The effective configuration is the database row, else the environment (``OORE_S3_BUCKET``
with the AWS keys), else local storage under ``<data dir>/artifacts``. The backend is
rebuilt whenever the settings are saved (by the other daemons sharing the database too,
when they hear of it: see :mod:`oore.services.settings_sync`); when it cannot be built,
storage is disabled while the settings API still reports what was saved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import trio

from oore.domain.artifact_storage import (
    DEFAULT_REGION,
    EnvironmentStorage,
    StorageProvider,
    StorageTarget,
    StorageUpdate,
    StorageView,
    StoredStorageSettings,
    check_update,
    default_view,
    environment_target,
    view_of_environment,
    view_of_row,
)
from oore.domain.artifacts import MAX_CONCURRENT_DOWNLOADS
from oore.domain.crypto import SecretBox
from oore.domain.rbac import Action, Resource, require
from oore.domain.tokens import hash_token, looks_like_token, new_token
from oore.domain.users import Session
from oore.errors import ApiError, InternalError
from oore.services.clock import WallClock
from oore.services.identity import AuditSink
from oore.storage import (
    ArtifactStorage,
    DisabledStorage,
    Issued,
    StorageUnavailable,
    StoredObject,
    open_storage,
)
from oore.storage.tokens import CAPACITY
from oore.store import AuditEntry, Store
from oore.store.url_tokens import UrlTokenKind, UrlTokenStore

log = logging.getLogger(__name__)

ARTIFACTS_DIR = "artifacts"
DEFAULT_PUBLIC_BASE = "http://127.0.0.1:8787"


@dataclass(frozen=True)
class ArtifactsConfig:
    """How artifacts are kept, from the daemon's settings.

    Without ``data_dir`` there is no default local directory (storage defaults to
    disabled), and without ``secrets`` S3 keys cannot be saved or read. ``public_url`` and
    ``artifact_delivery_url`` are the environment's; the runtime's network settings start
    from them and take over once saved.
    """

    data_dir: Path | None = None
    secrets: SecretBox | None = field(default=None, repr=False)
    environment: EnvironmentStorage = field(default_factory=EnvironmentStorage)
    public_url: str | None = None
    artifact_delivery_url: str | None = None
    ttl_days: int | None = None
    pending_ttl: int = 30 * 60

    @property
    def default_base_dir(self) -> str | None:
        return None if self.data_dir is None else str(self.data_dir / ARTIFACTS_DIR)


class ExternalUrls(Protocol):
    """Where the daemon is reached from outside; the live network settings provide it."""

    @property
    def public_url(self) -> str | None: ...

    @property
    def artifact_delivery_url(self) -> str | None: ...


class SharedUrlTokens:
    """Local storage URL tokens of one kind, kept in the database, so a URL issued by one
    daemon works on any daemon sharing the database (and the storage directory)."""

    def __init__(
        self, rows: UrlTokenStore, clock: WallClock, kind: UrlTokenKind, capacity: int = CAPACITY
    ) -> None:
        self._rows = rows
        self._clock = clock
        self._kind = kind
        self._capacity = capacity

    async def issue(self, obj: StoredObject, ttl: int) -> Issued:
        token = new_token()
        now = self._clock.now()
        await self._rows.issue(
            self._kind,
            hash_token(token),
            obj,
            expires_at=now + ttl,
            capacity=self._capacity,
            now=now,
        )
        return Issued(token, now + ttl)

    async def peek(self, token: str) -> StoredObject | None:
        if not looks_like_token(token):
            return None
        return await self._rows.peek(self._kind, hash_token(token), self._clock.now())

    async def take(self, token: str) -> StoredObject | None:
        if not looks_like_token(token):
            return None
        return await self._rows.take(self._kind, hash_token(token), self._clock.now())


def _no_key() -> InternalError:
    return InternalError("encryption_error", "No encryption key is configured")


class ArtifactStorageService:
    """The settings API and the backend in use, with what outlives a reload: the local
    URL tokens (in the database) and the download slots."""

    def __init__(
        self,
        store: Store,
        clock: WallClock,
        audit: AuditSink,
        config: ArtifactsConfig,
        urls: ExternalUrls | None = None,
        *,
        saved: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._config = config
        self._urls: ExternalUrls = config if urls is None else urls
        self.uploads = SharedUrlTokens(store.url_tokens, clock, UrlTokenKind.UPLOAD)
        self.downloads = SharedUrlTokens(store.url_tokens, clock, UrlTokenKind.DOWNLOAD)
        self.download_slots = trio.Semaphore(MAX_CONCURRENT_DOWNLOADS)
        self._backend: ArtifactStorage = DisabledStorage("not loaded yet")
        # The settings row the backend was built from (None: environment or default).
        self.settings_row: StoredStorageSettings | None = None
        self._saved = saved  # told once a save committed (the other daemons reload)
        self._listening: str | None = None
        self._reload_lock = trio.Lock()

    @property
    def backend(self) -> ArtifactStorage:
        """The backend in use now (replaced, never changed, by a reload)."""
        return self._backend

    def listening_on(self, url: str) -> None:
        """The daemon's own address, the base of local storage URLs without a public URL;
        a wildcard address (``0.0.0.0``, ``::``) is reached through loopback."""
        parts = urlsplit(url.rstrip("/"))
        host = parts.hostname or ""
        if host in ("0.0.0.0", "::", ""):
            loopback = "127.0.0.1" if host != "::" else "[::1]"
            port = f":{parts.port}" if parts.port is not None else ""
            parts = parts._replace(netloc=f"{loopback}{port}")
        self._listening = urlunsplit(parts)

    def public_base(self) -> str:
        """``public_url``, else the address the daemon listens on, else the default."""
        if self._urls.public_url:
            return self._urls.public_url.rstrip("/")
        return self._listening or DEFAULT_PUBLIC_BASE

    def delivery_base(self) -> str:
        """Where redeemed scoped tokens send local downloads: the artifact delivery URL,
        else :meth:`public_base`."""
        if self._urls.artifact_delivery_url:
            return self._urls.artifact_delivery_url.rstrip("/")
        return self.public_base()

    async def revoke_urls(self, artifact_ids: Collection[str]) -> None:
        """Make the local upload and download URLs of these artifacts stop working now,
        on every daemon."""
        await self._store.url_tokens.revoke(list(artifact_ids))

    @property
    def external_urls(self) -> tuple[str | None, str | None]:
        """The configured artifact delivery URL and public URL (either may be unset)."""
        return self._urls.artifact_delivery_url, self._urls.public_url

    # -- the settings API -------------------------------------------------------------

    async def view(self, session: Session) -> StorageView:
        """``GET /v1/settings/artifact-storage`` (owner/admin)."""
        require(session.user.role, Resource.INSTANCE_SETTINGS, Action.READ)
        return self._view(await self._store.artifacts.storage_settings())

    def _view(self, row: StoredStorageSettings | None) -> StorageView:
        if row is not None:
            return view_of_row(row)
        if self._config.environment.configured:
            return view_of_environment(self._config.environment)
        return default_view(self._config.default_base_dir)

    async def update(self, session: Session, update: StorageUpdate) -> StorageView:
        """``PUT /v1/settings/artifact-storage``: validate, encrypt the keys, save, reload."""
        require(session.user.role, Resource.INSTANCE_SETTINGS, Action.WRITE)
        previous = await self._store.artifacts.storage_settings()
        stored_id = previous.access_key_id_encrypted if previous else None
        stored_secret = previous.secret_access_key_encrypted if previous else None
        check_update(
            update, stored_key_id=stored_id is not None, stored_secret=stored_secret is not None
        )
        now = self._clock.now()
        provider = update.provider
        if provider is StorageProvider.LOCAL:
            row = StoredStorageSettings(
                provider, local_base_dir=update.local_base_dir, updated_at=now
            )
        elif provider.s3_compatible:
            row = StoredStorageSettings(
                provider,
                s3_bucket=update.s3_bucket,
                s3_region=update.s3_region or DEFAULT_REGION,
                s3_endpoint=update.s3_endpoint,
                access_key_id_encrypted=self._encrypt(update.access_key_id, stored_id),
                secret_access_key_encrypted=self._encrypt(update.secret_access_key, stored_secret),
                updated_at=now,
            )
        else:
            row = StoredStorageSettings(StorageProvider.DISABLED, updated_at=now)
        await self._store.artifacts.save_storage_settings(row)
        if self._saved is not None:
            self._saved()
        await self.reload()
        await self._audit.submit_one(
            AuditEntry.by(
                session.user,
                "artifact_storage_settings_updated",
                "instance_settings",
                "artifact_storage",
                details={"provider": provider.value},
                created_at=now,
            )
        )
        return view_of_row(row)

    def _encrypt(self, plain: str | None, stored: str | None) -> str | None:
        if plain is None:
            return stored
        if self._config.secrets is None:
            raise _no_key()
        return self._config.secrets.encrypt(plain)

    # -- the backend --------------------------------------------------------------------

    async def reload(self) -> ArtifactStorage:
        """Rebuild the backend from the effective settings; disabled when that fails. When
        the settings cannot be read (the database is down), the backend in use stays and
        the store's error is raised."""
        async with self._reload_lock:
            row = await self._store.artifacts.storage_settings()
            try:
                target = self._target(row)
                backend = await open_storage(
                    target,
                    uploads=self.uploads,
                    downloads=self.downloads,
                    public_base=self.public_base,
                )
            except (StorageUnavailable, ApiError) as exc:
                reason = getattr(exc, "message", None) or str(exc)
                log.warning("artifact storage disabled: %s", reason)
                backend = DisabledStorage(reason)
            self._backend = backend
            self.settings_row = row
            log.info("artifact storage: %s", backend.provider)
            return backend

    def _target(self, row: StoredStorageSettings | None) -> StorageTarget:
        if row is None:
            if self._config.environment.configured:
                return environment_target(self._config.environment)
            base = self._config.default_base_dir
            if base is None:
                return StorageTarget(StorageProvider.DISABLED)
            return StorageTarget(StorageProvider.LOCAL, local_base_dir=base)
        return StorageTarget(
            row.provider,
            local_base_dir=row.local_base_dir,
            bucket=row.s3_bucket,
            region=row.s3_region or DEFAULT_REGION,
            endpoint=row.s3_endpoint,
            access_key_id=self._decrypt(row.access_key_id_encrypted),
            secret_access_key=self._decrypt(row.secret_access_key_encrypted),
        )

    def _decrypt(self, stored: str | None) -> str | None:
        if stored is None:
            return None
        if self._config.secrets is None:
            raise _no_key()
        return self._config.secrets.decrypt(stored)
