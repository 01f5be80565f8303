"""S3 storage against a real S3-compatible server (moto, on loopback)."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trio

from oore.domain.artifact_storage import StorageProvider
from oore.storage import S3Storage, StorageUnavailable, StoredObject
from oore.storage.base import DisabledStorage
from tests.s3_kit import S3Server, s3_server

__all__ = ["s3_server"]

OBJ = StoredObject("artifacts/b1/a1/app one.apk", "a1", "app one.apk")


async def test_presigned_put_then_get_then_delete(s3_server: S3Server) -> None:
    bucket = await trio.to_thread.run_sync(s3_server.new_bucket)
    storage = await S3Storage.open(s3_server.target(bucket))
    assert storage.provider is StorageProvider.S3
    put_url = await storage.upload_url(OBJ)
    parts = urlsplit(put_url)
    assert f"{parts.scheme}://{parts.netloc}" == s3_server.endpoint
    assert parts.path == f"/{bucket}/artifacts/b1/a1/app%20one.apk"  # path-style
    assert parse_qs(parts.query)["X-Amz-Expires"] == ["1800"]
    body = bytes(range(256)) * 100
    async with httpx.AsyncClient() as http:
        stored = await http.put(put_url, content=body)
        assert stored.status_code == 200, stored.text
        get_url = await storage.download_url(OBJ)
        assert parse_qs(urlsplit(get_url).query)["X-Amz-Expires"] == ["900"]
        fetched = await http.get(get_url)
    assert fetched.status_code == 200 and fetched.content == body
    assert fetched.headers["Content-Disposition"] == ('attachment; filename="app one.apk"')
    assert await trio.to_thread.run_sync(s3_server.keys, bucket) == [OBJ.key]
    await storage.delete(OBJ)
    await storage.delete(OBJ)  # already gone: fine
    assert await trio.to_thread.run_sync(s3_server.keys, bucket) == []


async def test_r2_is_the_same_protocol_with_an_endpoint(s3_server: S3Server) -> None:
    bucket = await trio.to_thread.run_sync(s3_server.new_bucket)
    storage = await S3Storage.open(s3_server.target(bucket, StorageProvider.R2))
    assert storage.provider is StorageProvider.R2
    async with httpx.AsyncClient() as http:
        assert (await http.put(await storage.upload_url(OBJ), content=b"r2")).status_code == 200
    assert await trio.to_thread.run_sync(s3_server.read, bucket, OBJ.key) == b"r2"


@pytest.mark.parametrize(
    "change",
    [
        {"endpoint": "http://s3.example.com"},
        {"endpoint": "https://key:secret@s3.example.com"},
        {"endpoint": "ftp://s3.example.com"},
        {"access_key_id": None},
        {"secret_access_key": None},
        {"bucket": ""},
        {"provider": StorageProvider.R2, "endpoint": None},
    ],
)
async def test_settings_that_cannot_work_are_refused(
    s3_server: S3Server, change: dict[str, object]
) -> None:
    target = replace(s3_server.target("bucket"), **change)  # type: ignore[arg-type]
    with pytest.raises(StorageUnavailable):
        await S3Storage.open(target)


async def test_a_missing_bucket_is_a_storage_error(s3_server: S3Server) -> None:
    storage = await S3Storage.open(s3_server.target("no-such-bucket-here"))
    with pytest.raises(Exception) as caught:
        await storage.delete(OBJ)
    assert getattr(caught.value, "code", None) == "storage_error"


async def test_a_batch_of_objects_goes_in_one_request(s3_server: S3Server) -> None:
    bucket = await trio.to_thread.run_sync(s3_server.new_bucket)
    storage = await S3Storage.open(s3_server.target(bucket))
    objs = [StoredObject(f"artifacts/b1/a{n}/f.bin", f"a{n}", "f.bin") for n in range(5)]

    def put_some() -> None:
        client = s3_server.client()
        for obj in objs[:3]:
            client.put_object(Bucket=bucket, Key=obj.key, Body=b"x")

    await trio.to_thread.run_sync(put_some)
    assert await storage.delete_batch(objs) == []  # two were never there: fine
    assert await trio.to_thread.run_sync(s3_server.keys, bucket) == []
    assert await storage.delete_batch([]) == []
    missing = await S3Storage.open(s3_server.target("no-such-bucket-here"))
    with pytest.raises(Exception) as caught:
        await missing.delete_batch(objs)
    assert getattr(caught.value, "code", None) == "storage_error"


async def test_disabled_storage_has_no_urls() -> None:
    disabled = DisabledStorage()
    assert await disabled.upload_url(OBJ) == ""
    with pytest.raises(Exception) as caught:
        await disabled.download_url(OBJ)
    assert getattr(caught.value, "code", None) == "storage_not_configured"
