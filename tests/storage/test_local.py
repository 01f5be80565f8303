"""Local storage: objects under the base directory, written through a temporary file, and
reached through URL tokens kept in the database."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path

import pytest
import trio

from oore.errors import InternalError, PayloadTooLarge
from oore.services.artifact_storage import SharedUrlTokens
from oore.storage import LocalStorage, StorageUnavailable, StoredObject
from oore.store import Store
from oore.store.url_tokens import UrlTokenKind
from tests.http.conftest import FakeClock

BASE = "http://ci.example:8787"


async def open_local(tmp_path: Path, store: Store, base: str | None = None) -> LocalStorage:
    clock = FakeClock()
    return await LocalStorage.open(
        base or str(tmp_path / "store"),
        uploads=SharedUrlTokens(store.url_tokens, clock, UrlTokenKind.UPLOAD),
        downloads=SharedUrlTokens(store.url_tokens, clock, UrlTokenKind.DOWNLOAD),
        public_base=lambda: BASE,
    )


async def chunks(*parts: bytes) -> AsyncGenerator[bytes, None]:
    for part in parts:
        await trio.lowlevel.checkpoint()
        yield part


OBJ = StoredObject("artifacts/b1/a1/app.apk", "a1", "app.apk")


async def test_urls_carry_tokens_for_the_object(tmp_path: Path, store: Store) -> None:
    storage = await open_local(tmp_path, store)
    upload = await storage.upload_url(OBJ)
    assert upload.startswith(f"{BASE}/v1/artifacts/local-upload/")
    token = upload.rsplit("/", 1)[1]
    assert await storage.resolve_download(token) is None  # an upload token only uploads
    assert await storage.accept_upload(token) == OBJ
    assert await storage.accept_upload(token) is None  # single use
    download = await storage.download_url(OBJ)
    assert download.startswith(f"{BASE}/v1/artifacts/download/")
    token = download.rsplit("/", 1)[1]
    assert await storage.accept_upload(token) is None  # a download token only downloads
    assert await storage.resolve_download(token) == OBJ
    assert await storage.resolve_download(token) == OBJ


async def test_receive_writes_the_object_and_reads_back_a_range(
    tmp_path: Path, store: Store
) -> None:
    storage = await open_local(tmp_path, store)
    body = os.urandom(300_000)
    written = await storage.receive(OBJ, chunks(body[:1000], body[1000:]), limit=len(body))
    assert written == len(body)
    path = tmp_path / "store" / "artifacts" / "b1" / "a1" / "app.apk"
    assert path.read_bytes() == body
    assert sorted(p.name for p in path.parent.iterdir()) == ["app.apk"]  # no temporary left
    assert await storage.size_of(OBJ) == len(body)
    slots = trio.Semaphore(1)
    parts = [part async for part in storage.chunks(OBJ, 70_000, 200_000, slots)]
    assert b"".join(parts) == body[70_000:270_000]
    assert max(len(part) for part in parts) == 64 * 1024
    assert slots.value == 1  # given back once the iteration ended


async def test_a_body_over_the_limit_is_refused_and_leaves_nothing(
    tmp_path: Path, store: Store
) -> None:
    storage = await open_local(tmp_path, store)
    with pytest.raises(PayloadTooLarge):
        async with aclosing(chunks(b"x" * 600, b"y" * 600, b"z")) as body:
            await storage.receive(OBJ, body, limit=1000)
    directory = tmp_path / "store" / "artifacts" / "b1" / "a1"
    assert list(directory.iterdir()) == []
    assert await storage.size_of(OBJ) is None


async def test_delete_removes_the_object_and_its_empty_directories(
    tmp_path: Path, store: Store
) -> None:
    storage = await open_local(tmp_path, store)
    other = StoredObject("artifacts/b1/a2/other.txt", "a2", "other.txt")
    await storage.receive(OBJ, chunks(b"one"), limit=10)
    await storage.receive(other, chunks(b"two"), limit=10)
    await storage.delete(OBJ)
    await storage.delete(OBJ)  # already gone: fine
    assert sorted(p.name for p in (tmp_path / "store" / "artifacts" / "b1").iterdir()) == ["a2"]
    await storage.delete(other)
    assert list((tmp_path / "store" / "artifacts").iterdir()) == []


async def test_a_long_name_is_stored_under_a_digest(tmp_path: Path, store: Store) -> None:
    storage = await open_local(tmp_path, store)
    name = "é" * 200  # 400 bytes: longer than a file name may be
    obj = StoredObject(f"artifacts/b1/a1/{name}", "a1", name)
    await storage.receive(obj, chunks(b"data"), limit=10)
    assert await storage.size_of(obj) == 4
    (stored,) = (tmp_path / "store" / "artifacts" / "b1" / "a1").iterdir()
    assert stored.name.startswith("long-")


@pytest.mark.parametrize(
    "key", ["artifacts/../../etc/passwd", "artifacts//x", "/etc/passwd", "a/./b"]
)
async def test_keys_cannot_leave_the_base_directory(tmp_path: Path, store: Store, key: str) -> None:
    storage = await open_local(tmp_path, store)
    with pytest.raises(InternalError) as caught:
        await storage.download_url(StoredObject(key, "a1", "x"))
    assert caught.value.code == "storage_error"


async def test_an_unusable_base_directory_is_refused(tmp_path: Path, store: Store) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    for base in ("relative/dir", str(blocker / "below")):
        with pytest.raises(StorageUnavailable):
            await open_local(tmp_path, store, base)


async def test_downloads_wait_for_a_free_slot(tmp_path: Path, store: Store) -> None:
    storage = await open_local(tmp_path, store)
    await storage.receive(OBJ, chunks(b"a" * 10), limit=100)
    slots = trio.Semaphore(1)
    first = storage.chunks(OBJ, 0, 10, slots)
    assert await first.__anext__() == b"a" * 10
    second = storage.chunks(OBJ, 0, 10, slots)
    with trio.move_on_after(0.2) as waited:
        await second.__anext__()
    assert waited.cancelled_caught  # the one slot is taken
    await first.aclose()
    assert await second.__anext__() == b"a" * 10
    await second.aclose()
    assert slots.value == 1
