"""Artifact storage backends behind one interface: disabled, local, S3 and R2 (§7.1).

    ArtifactStorage (protocol)
     ├── DisabledStorage   no upload URL; downloads answer 503 storage_not_configured
     ├── LocalStorage      files under a base directory, token URLs served by oored
     └── S3Storage         an S3 or R2 bucket, presigned URLs (boto3, off the event loop)

:func:`open_storage` builds one from a :class:`~oore.domain.artifact_storage.StorageTarget`
and raises :class:`StorageUnavailable` when the settings cannot work.
"""

from __future__ import annotations

from collections.abc import Callable

from oore.domain.artifact_storage import StorageProvider, StorageTarget
from oore.storage.base import (
    ArtifactStorage,
    DisabledStorage,
    StorageUnavailable,
    StoredObject,
    not_configured,
    storage_error,
)
from oore.storage.local import LocalStorage
from oore.storage.s3 import S3Storage
from oore.storage.tokens import Issued, UrlTokens

__all__ = [
    "ArtifactStorage",
    "DisabledStorage",
    "Issued",
    "LocalStorage",
    "S3Storage",
    "StorageUnavailable",
    "StoredObject",
    "UrlTokens",
    "not_configured",
    "open_storage",
    "storage_error",
]


async def open_storage(
    target: StorageTarget,
    *,
    uploads: UrlTokens,
    downloads: UrlTokens,
    public_base: Callable[[], str],
) -> ArtifactStorage:
    """The backend for ``target``; StorageUnavailable when it cannot be built."""
    if target.provider is StorageProvider.DISABLED:
        return DisabledStorage()
    if target.provider is StorageProvider.LOCAL:
        if target.local_base_dir is None:
            raise StorageUnavailable("no local base directory")
        return await LocalStorage.open(
            target.local_base_dir, uploads=uploads, downloads=downloads, public_base=public_base
        )
    return await S3Storage.open(target)
