"""Artifact storage settings: providers, where the effective config comes from, and the
rules of ``PUT /v1/settings/artifact-storage`` (contract §7.1, §10.1).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from oore.errors import InvalidInput

DEFAULT_REGION = "us-east-1"


class StorageProvider(StrEnum):
    DISABLED = "disabled"
    LOCAL = "local"
    S3 = "s3"
    R2 = "r2"

    @property
    def s3_compatible(self) -> bool:
        return self in (StorageProvider.S3, StorageProvider.R2)


class SettingsSource(StrEnum):
    DATABASE = "database"
    ENVIRONMENT = "environment"
    DEFAULT = "default"


@dataclass(frozen=True)
class StoredObject:
    """One artifact's bytes in storage: its key, its artifact and its download name."""

    key: str
    artifact_id: str
    filename: str


@dataclass(frozen=True)
class StoredStorageSettings:
    """The settings row; the S3 keys are kept only in their encrypted form."""

    provider: StorageProvider
    local_base_dir: str | None = None
    s3_bucket: str | None = None
    s3_region: str | None = None
    s3_endpoint: str | None = None
    access_key_id_encrypted: str | None = None
    secret_access_key_encrypted: str | None = None
    updated_at: int = 0


@dataclass(frozen=True)
class EnvironmentStorage:
    """``OORE_S3_BUCKET``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``OORE_S3_ENDPOINT`` and ``OORE_S3_REGION``; used when the bucket is set."""

    bucket: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    endpoint: str | None = None
    region: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.bucket and self.bucket.strip())


@dataclass(frozen=True)
class StorageTarget:
    """What a storage backend is built from: provider, place and plain credentials."""

    provider: StorageProvider
    local_base_dir: str | None = None
    bucket: str | None = None
    region: str = DEFAULT_REGION
    endpoint: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class StorageView:
    """``ArtifactStorageSettingsResponse.settings`` (contract §10.1)."""

    provider: StorageProvider
    source: SettingsSource
    local_base_dir: str | None = None
    s3_bucket: str | None = None
    s3_region: str | None = None
    s3_endpoint: str | None = None
    has_access_key_id: bool = False
    has_secret_access_key: bool = False
    updated_at: int | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"provider": self.provider.value}
        for key, value in (
            ("local_base_dir", self.local_base_dir),
            ("s3_bucket", self.s3_bucket),
            ("s3_region", self.s3_region),
            ("s3_endpoint", self.s3_endpoint),
        ):
            if value is not None:
                body[key] = value
        body["has_access_key_id"] = self.has_access_key_id
        body["has_secret_access_key"] = self.has_secret_access_key
        body["source"] = self.source.value
        if self.updated_at is not None:
            body["updated_at"] = self.updated_at
        return body


def view_of_row(row: StoredStorageSettings) -> StorageView:
    return StorageView(
        provider=row.provider,
        source=SettingsSource.DATABASE,
        local_base_dir=row.local_base_dir,
        s3_bucket=row.s3_bucket,
        s3_region=row.s3_region,
        s3_endpoint=row.s3_endpoint,
        has_access_key_id=row.access_key_id_encrypted is not None,
        has_secret_access_key=row.secret_access_key_encrypted is not None,
        updated_at=row.updated_at,
    )


def environment_target(env: EnvironmentStorage) -> StorageTarget:
    return StorageTarget(
        provider=StorageProvider.S3,
        bucket=(env.bucket or "").strip(),
        region=(env.region or "").strip() or DEFAULT_REGION,
        endpoint=(env.endpoint or "").strip() or None,
        access_key_id=(env.access_key_id or "").strip() or None,
        secret_access_key=(env.secret_access_key or "").strip() or None,
    )


def view_of_environment(env: EnvironmentStorage) -> StorageView:
    target = environment_target(env)
    return StorageView(
        provider=StorageProvider.S3,
        source=SettingsSource.ENVIRONMENT,
        s3_bucket=target.bucket,
        s3_region=target.region,
        s3_endpoint=target.endpoint,
        has_access_key_id=target.access_key_id is not None,
        has_secret_access_key=target.secret_access_key is not None,
    )


def default_view(base_dir: str | None) -> StorageView:
    """No row and no environment: local storage under the data directory (or, without a
    data directory, disabled)."""
    if base_dir is None:
        return StorageView(provider=StorageProvider.DISABLED, source=SettingsSource.DEFAULT)
    return StorageView(
        provider=StorageProvider.LOCAL, source=SettingsSource.DEFAULT, local_base_dir=base_dir
    )


@dataclass(frozen=True)
class StorageUpdate:
    """``UpdateArtifactStorageSettingsRequest`` with strings trimmed and blanks dropped."""

    provider: StorageProvider
    local_base_dir: str | None = None
    s3_bucket: str | None = None
    s3_region: str | None = None
    s3_endpoint: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)


def check_update(update: StorageUpdate, *, stored_key_id: bool, stored_secret: bool) -> None:
    """The §10.1 validation, in order; ``stored_*``: the row already holds that key."""
    provider = update.provider
    if provider is StorageProvider.LOCAL and (
        update.local_base_dir is None or not PurePosixPath(update.local_base_dir).is_absolute()
    ):
        raise InvalidInput("invalid_local_base_dir", "local_base_dir must be an absolute path")
    if not provider.s3_compatible:
        return
    if update.s3_bucket is None:
        raise InvalidInput("invalid_s3_bucket", "s3_bucket is required")
    if provider is StorageProvider.R2 and update.s3_endpoint is None:
        raise InvalidInput("invalid_s3_endpoint", "s3_endpoint is required for R2")
    if (update.access_key_id is None and not stored_key_id) or (
        update.secret_access_key is None and not stored_secret
    ):
        raise InvalidInput(
            "missing_s3_credentials", "access_key_id and secret_access_key are required"
        )


def url_problem(url: str, *, generated: bool = False) -> str | None:
    """Why an S3 endpoint (or a URL generated from it) is refused, or None.

    https anywhere; http only for a literal loopback address; never credentials in it.
    An endpoint has no query or fragment; a generated (presigned) URL may have a query.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("https", "http") or not host:
        return "must be an http(s) URL with a host"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "must not contain credentials"
    if parts.fragment or (parts.query and not generated):
        return "must not have a query or fragment"
    if parts.scheme == "http" and not _loopback_literal(host):
        return "must use https (http only for a loopback address)"
    return None


def _loopback_literal(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
