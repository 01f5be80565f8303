"""Local artifact storage: objects under a base directory, reached through token URLs.

Upload URLs (``/v1/artifacts/local-upload/<token>``, single use, 30 minutes) and download
URLs (``/v1/artifacts/download/<token>``, or ``/install/download/<token>`` behind a scoped
token, reusable for 15 minutes) carry tokens (contract §7.1) kept by the
:class:`~oore.storage.tokens.UrlTokens` handed in, which outlive a settings reload.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
from collections.abc import AsyncIterable, Callable
from functools import partial
from pathlib import Path

import trio

from oore.domain.artifact_storage import StorageProvider
from oore.domain.artifacts import DOWNLOAD_CHUNK_BYTES, DOWNLOAD_URL_TTL, UPLOAD_URL_TTL
from oore.errors import PayloadTooLarge
from oore.storage.base import StorageUnavailable, StoredObject, storage_error
from oore.storage.tokens import UrlTokens

UPLOAD_PATH = "/v1/artifacts/local-upload/"
DOWNLOAD_PATH = "/v1/artifacts/download/"
INSTALL_DOWNLOAD_PATH = "/install/download/"
WRITE_BUFFER_BYTES = 1024 * 1024
# Linux allows 255 bytes per file name; longer artifact names are stored under a digest
# (the download keeps the artifact's own name).
MAX_DISK_NAME_BYTES = 200


def _prepare(base: Path) -> Path:
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
        raise PermissionError(f"{base} is not a writable directory")
    return base.resolve()


def _disk_name(name: str) -> str:
    if len(name.encode("utf-8")) <= MAX_DISK_NAME_BYTES:
        return name
    return "long-" + hashlib.sha256(name.encode("utf-8")).hexdigest()


class LocalStorage:
    """Objects at ``<base_dir>/<key>``, written through a temporary file and a rename."""

    def __init__(
        self,
        base_dir: Path,
        *,
        uploads: UrlTokens,
        downloads: UrlTokens,
        public_base: Callable[[], str],
    ) -> None:
        self.base_dir = base_dir
        self._uploads = uploads
        self._downloads = downloads
        self._public_base = public_base

    @classmethod
    async def open(
        cls,
        base_dir: str,
        *,
        uploads: UrlTokens,
        downloads: UrlTokens,
        public_base: Callable[[], str],
    ) -> LocalStorage:
        """Create the base directory if needed; StorageUnavailable if it is not usable."""
        path = Path(base_dir)
        if not path.is_absolute():
            raise StorageUnavailable(f"local base directory {base_dir!r} is not absolute")
        try:
            resolved = await trio.to_thread.run_sync(_prepare, path)
        except OSError as exc:
            raise StorageUnavailable(f"local base directory {base_dir!r}: {exc}") from exc
        return cls(resolved, uploads=uploads, downloads=downloads, public_base=public_base)

    @property
    def provider(self) -> StorageProvider:
        return StorageProvider.LOCAL

    def path_of(self, key: str) -> Path:
        """The file of an object key, which must stay inside the base directory."""
        *parents, name = key.split("/")
        path = self.base_dir.joinpath(*parents, _disk_name(name))
        if any(part in ("", ".", "..") for part in key.split("/")) or not path.is_relative_to(
            self.base_dir
        ):
            raise storage_error("Invalid artifact object key")
        return path

    async def upload_url(self, obj: StoredObject) -> str:
        self.path_of(obj.key)
        issued = await self._uploads.issue(obj, UPLOAD_URL_TTL)
        return f"{self._public_base()}{UPLOAD_PATH}{issued.token}"

    async def download_url(self, obj: StoredObject) -> str:
        self.path_of(obj.key)
        issued = await self._downloads.issue(obj, DOWNLOAD_URL_TTL)
        return f"{self._public_base()}{DOWNLOAD_PATH}{issued.token}"

    async def delivery_url(self, obj: StoredObject, base: str) -> str:
        """A 15-minute download URL under another base: ``<base>/install/download/<t>``."""
        self.path_of(obj.key)
        issued = await self._downloads.issue(obj, DOWNLOAD_URL_TTL)
        return f"{base}{INSTALL_DOWNLOAD_PATH}{issued.token}"

    async def accept_upload(self, token: str) -> StoredObject | None:
        """The object an upload token was issued for; the token is used up."""
        return await self._uploads.take(token)

    async def resolve_download(self, token: str) -> StoredObject | None:
        """The object a download token was issued for; it stays valid until it expires."""
        return await self._downloads.peek(token)

    async def delete(self, obj: StoredObject) -> None:
        path = self.path_of(obj.key)
        try:
            await trio.to_thread.run_sync(self._remove, path)
        except OSError as exc:
            raise storage_error(f"Could not delete an artifact object: {exc}") from exc

    def _remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        for parent in (path.parent, path.parent.parent):
            if parent == self.base_dir or not parent.is_relative_to(self.base_dir):
                return
            try:
                parent.rmdir()
            except OSError:
                return  # not empty: other artifacts of the build live there

    async def size_of(self, obj: StoredObject) -> int | None:
        """The object's size in bytes, or None when it is not there."""
        path = self.path_of(obj.key)
        try:
            stat = await trio.Path(path).stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise storage_error(f"Could not read an artifact object: {exc}") from exc
        return stat.st_size

    async def receive(self, obj: StoredObject, chunks: AsyncIterable[bytes], *, limit: int) -> int:
        """Write the object from ``chunks`` (at most ``limit`` bytes); the byte count.

        The bytes go to a temporary file in the object's directory, synced, then renamed
        into place, so a reader never sees half an object. Past ``limit`` it raises 413
        ``payload_too_large``; on any failure the partial file is removed. The caller owns
        ``chunks`` and closes it.
        """
        final = self.path_of(obj.key)
        partial_file = final.with_name(f".upload-{secrets.token_hex(8)}.part")
        total = 0
        try:
            await trio.to_thread.run_sync(
                partial(final.parent.mkdir, parents=True, exist_ok=True, mode=0o700)
            )
            async with await trio.open_file(partial_file, "xb") as out:
                buffer = bytearray()
                async for chunk in chunks:
                    total += len(chunk)
                    if total > limit:
                        raise PayloadTooLarge(
                            "payload_too_large", f"An artifact upload is at most {limit} bytes"
                        )
                    buffer += chunk
                    if len(buffer) >= WRITE_BUFFER_BYTES:
                        await out.write(buffer)
                        buffer.clear()
                if buffer:
                    await out.write(buffer)
                await out.flush()
                await trio.to_thread.run_sync(os.fsync, out.fileno())
            await trio.to_thread.run_sync(os.replace, partial_file, final)
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(partial(partial_file.unlink, missing_ok=True))
            if isinstance(exc, OSError):
                raise storage_error(f"Could not store the artifact: {exc}") from exc
            raise
        return total

    def chunks(
        self, obj: StoredObject, start: int, length: int, slots: trio.Semaphore
    ) -> FileChunks:
        """The bytes ``[start, start + length)`` of the object, read when iterated."""
        return FileChunks(self.path_of(obj.key), start, length, slots)


def _open_at(path: Path, start: int) -> io.BufferedReader:
    reader = path.open("rb")
    try:
        reader.seek(start)
    except BaseException:
        reader.close()
        raise
    return reader


class FileChunks:
    """An async iterator over part of a file, 64 KiB per step; never the whole file.

    It takes one of ``slots`` at its first step and gives it back when closed, so the
    number of files being sent at once is bounded. Quart closes the iterator when the
    response ends or the client goes away.
    """

    def __init__(self, path: Path, start: int, length: int, slots: trio.Semaphore) -> None:
        self._path = path
        self._start = start
        self._remaining = length
        self._slots = slots
        self._reader: io.BufferedReader | None = None
        self._holding = False
        self._closed = False

    def __aiter__(self) -> FileChunks:
        return self

    async def __anext__(self) -> bytes:
        if self._closed or self._remaining <= 0:
            await self.aclose()
            raise StopAsyncIteration
        if self._reader is None:
            await self._slots.acquire()
            self._holding = True
            try:
                self._reader = await trio.to_thread.run_sync(_open_at, self._path, self._start)
            except OSError as exc:
                raise storage_error(f"Could not read an artifact object: {exc}") from exc
        chunk = await trio.to_thread.run_sync(
            self._reader.read, min(DOWNLOAD_CHUNK_BYTES, self._remaining)
        )
        if not chunk:
            raise storage_error("The artifact object is shorter than recorded")
        self._remaining -= len(chunk)
        return chunk

    async def aclose(self) -> None:
        """Close the file and give the slot back; idempotent."""
        self._closed = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        if self._holding:
            self._holding = False
            self._slots.release()
