"""S3 and R2 artifact storage with boto3, always off the event loop.

Path-style addressing (``<endpoint>/<bucket>/<key>``), presigned PUT for uploads (30
minutes) and presigned GET for downloads (15 minutes). The endpoint must be https, or
http for a literal loopback address, and carry no credentials; the URLs generated from it
are checked the same way (contract §7.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
import trio
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from oore.domain.artifact_storage import StorageProvider, StorageTarget, url_problem
from oore.domain.artifacts import DOWNLOAD_URL_TTL, UPLOAD_URL_TTL, content_disposition
from oore.storage.base import StorageUnavailable, StoredObject, storage_error

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
_FAILURES = (BotoCoreError, ClientError, ValueError)
# The most keys one DeleteObjects request may name.
MAX_BATCH_DELETE = 1000


@dataclass(frozen=True)
class _Place:
    provider: StorageProvider
    bucket: str


def _client(target: StorageTarget) -> S3Client:
    session = boto3.session.Session(
        aws_access_key_id=target.access_key_id,
        aws_secret_access_key=target.secret_access_key,
        region_name=target.region,
    )
    return session.client(
        "s3",
        endpoint_url=target.endpoint,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )


class S3Storage:
    """One bucket of an S3-compatible service."""

    def __init__(self, client: S3Client, provider: StorageProvider, bucket: str) -> None:
        self._client = client
        self._place = _Place(provider, bucket)

    @classmethod
    async def open(cls, target: StorageTarget) -> S3Storage:
        """Check the settings and build the client; StorageUnavailable when they do not fit."""
        if not target.provider.s3_compatible:
            raise StorageUnavailable(f"{target.provider} is not an S3 provider")
        if not target.bucket:
            raise StorageUnavailable("no S3 bucket")
        if not target.access_key_id or not target.secret_access_key:
            raise StorageUnavailable("S3 credentials are missing")
        if target.provider is StorageProvider.R2 and not target.endpoint:
            raise StorageUnavailable("R2 needs an endpoint")
        if target.endpoint is not None and (problem := url_problem(target.endpoint)):
            raise StorageUnavailable(f"S3 endpoint {problem}")
        try:
            client = await trio.to_thread.run_sync(_client, target)
        except _FAILURES as exc:
            raise StorageUnavailable(f"cannot build the S3 client: {exc}") from exc
        return cls(client, target.provider, target.bucket)

    @property
    def provider(self) -> StorageProvider:
        return self._place.provider

    @property
    def bucket(self) -> str:
        return self._place.bucket

    async def upload_url(self, obj: StoredObject) -> str:
        return await self._presign(
            "put_object", {"Bucket": self.bucket, "Key": obj.key}, UPLOAD_URL_TTL
        )

    async def download_url(self, obj: StoredObject) -> str:
        params = {
            "Bucket": self.bucket,
            "Key": obj.key,
            "ResponseContentDisposition": content_disposition(obj.filename),
        }
        return await self._presign("get_object", params, DOWNLOAD_URL_TTL)

    async def _presign(self, method: str, params: dict[str, str], ttl: int) -> str:
        def sign() -> str:
            return self._client.generate_presigned_url(method, Params=params, ExpiresIn=ttl)

        try:
            url = await trio.to_thread.run_sync(sign)
        except _FAILURES as exc:
            raise storage_error(f"Could not sign an artifact URL: {exc}") from exc
        if (problem := url_problem(url, generated=True)) is not None:
            raise storage_error(f"The signed artifact URL {problem}")
        return url

    async def delete_batch(self, objs: Sequence[StoredObject]) -> list[StoredObject]:
        """Delete up to 1000 objects in one request (missing ones count as deleted); the
        objects that could not be deleted. 500 ``storage_error`` when the request fails."""
        if len(objs) > MAX_BATCH_DELETE:
            raise ValueError(f"at most {MAX_BATCH_DELETE} objects per batch")
        if not objs:
            return []

        def remove() -> set[str]:
            answer = self._client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": obj.key} for obj in objs], "Quiet": True},
            )
            return {error.get("Key", "") for error in answer.get("Errors", [])}

        try:
            failed = await trio.to_thread.run_sync(remove)
        except _FAILURES as exc:
            raise storage_error(f"Could not delete artifact objects: {exc}") from exc
        return [obj for obj in objs if obj.key in failed]

    async def delete(self, obj: StoredObject) -> None:
        def remove() -> None:
            self._client.delete_object(Bucket=self.bucket, Key=obj.key)

        try:
            await trio.to_thread.run_sync(remove)
        except _FAILURES as exc:
            raise storage_error(f"Could not delete an artifact object: {exc}") from exc
