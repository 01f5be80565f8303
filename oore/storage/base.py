"""What every artifact storage backend offers, and the errors it raises."""

from __future__ import annotations

from typing import Protocol

from oore.domain.artifact_storage import StorageProvider, StoredObject
from oore.errors import InternalError, ServiceUnavailable

__all__ = [
    "ArtifactStorage",
    "DisabledStorage",
    "StorageUnavailable",
    "StoredObject",
    "not_configured",
    "storage_error",
]


class StorageUnavailable(Exception):
    """A backend could not be built from its settings; the message says why."""


def storage_error(message: str = "Artifact storage failed") -> InternalError:
    """500 ``storage_error``: the storage backend failed."""
    return InternalError("storage_error", message)


def not_configured() -> ServiceUnavailable:
    """503 ``storage_not_configured``: artifact storage is disabled."""
    return ServiceUnavailable("storage_not_configured", "Artifact storage is not configured")


class ArtifactStorage(Protocol):
    """A storage backend (contract §7.1). Every method may raise 500 ``storage_error``."""

    @property
    def provider(self) -> StorageProvider: ...

    async def upload_url(self, obj: StoredObject) -> str:
        """Where the runner PUTs the bytes (valid 30 minutes); ``""`` when disabled."""
        ...

    async def download_url(self, obj: StoredObject) -> str:
        """Where a user GETs the bytes (valid 15 minutes); 503 when disabled."""
        ...

    async def delete(self, obj: StoredObject) -> None:
        """Remove the object; removing a missing object is not an error."""
        ...


class DisabledStorage:
    """No storage: no upload URL, no downloads, nothing to delete."""

    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason

    @property
    def provider(self) -> StorageProvider:
        return StorageProvider.DISABLED

    async def upload_url(self, obj: StoredObject) -> str:
        return ""

    async def download_url(self, obj: StoredObject) -> str:
        raise not_configured()

    async def delete(self, obj: StoredObject) -> None:
        raise storage_error("Artifact storage is not configured")
