"""Collecting and uploading a build's artifacts (contract §5.6, §6.5, §8.1).

After the steps succeed, every regular file of the checkout matched by one of the
config's artifact patterns is uploaded, before the final status is reported: reserve
(with its SHA-256 and size) → PUT the bytes to the upload URL, streamed → complete, or
abort with the error. A pattern that matches nothing is not an error. An empty upload
URL means the server has the bytes already (a known checksum) or keeps no artifacts.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Protocol

import trio

from oore.domain.pipeline_config import artifact_pattern_matches
from oore.runner.client import RunnerClient, RunnerError, ServerError
from oore.runner.retry import with_retries

MAX_ARTIFACTS = 256
READ_CHUNK = 64 * 1024
SKIPPED_DIRS = frozenset({".git"})
_TYPES = {".apk": "apk", ".ipa": "ipa", ".app": "app"}


class BuildLog(Protocol):
    async def info(self, message: str) -> None: ...

    async def error(self, message: str) -> None: ...


@dataclass(frozen=True)
class Found:
    """A file to upload: where it is, its path in the checkout, its size."""

    path: Path
    relative: str
    size: int


class UploadFailed(Exception):
    """An artifact could not be uploaded; the message says which and why."""


def artifact_type(name: str) -> str:
    """``apk``, ``ipa`` or ``app`` by extension, else ``generic``."""
    return _TYPES.get(PurePath(name).suffix.lower(), "generic")


def find_artifacts(checkout: Path, patterns: Sequence[str]) -> list[Found]:
    """Regular files under ``checkout`` matched by any pattern, in path order. Blocking.

    ``.git`` is not searched; symbolic links are followed only to files inside the
    checkout.
    """
    if not patterns:
        return []
    root = checkout.resolve()
    found: list[Found] = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIPPED_DIRS)
        for name in sorted(files):
            path = Path(directory, name)
            relative = path.relative_to(root).as_posix()
            if not any(artifact_pattern_matches(p, relative) for p in patterns):
                continue
            target = path.resolve()
            if not target.is_relative_to(root) or not target.is_file():
                continue
            found.append(Found(target, relative, target.stat().st_size))
    return found


def sha256_of(path: Path) -> str:
    """The file's SHA-256 as lowercase hex. Blocking."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


async def file_chunks(path: Path, size: int) -> AsyncGenerator[bytes, None]:
    """The first ``size`` bytes of the file, 64 KiB at a time (never all of it at once)."""
    file = await trio.open_file(path, "rb")
    try:
        remaining = size
        while remaining > 0:
            chunk = await file.read(min(READ_CHUNK, remaining))
            if not chunk:
                raise OSError(f"{path} is shorter than {size} bytes")
            remaining -= len(chunk)
            yield chunk
    finally:
        with trio.CancelScope(shield=True):
            await file.aclose()


class ArtifactUploader:
    """Uploads one build's artifacts through the runner client."""

    def __init__(
        self, client: RunnerClient, build_id: str, log: BuildLog, say: Callable[[str], None]
    ) -> None:
        self._client = client
        self._build_id = build_id
        self._log = log
        self._say = say

    async def upload_all(self, checkout: Path, patterns: Sequence[str]) -> None:
        """Upload every match; raises UploadFailed at the first artifact that fails."""
        found = await trio.to_thread.run_sync(find_artifacts, checkout, patterns)
        if not found:
            if patterns:
                await self._log.info(f"no artifacts matched {', '.join(patterns)}")
            return
        if len(found) > MAX_ARTIFACTS:
            await self._log.error(
                f"{len(found)} files match the artifact patterns; "
                f"uploading the first {MAX_ARTIFACTS}"
            )
            found = found[:MAX_ARTIFACTS]
        for item in found:
            await self._upload(item)

    async def _upload(self, item: Found) -> None:
        name = item.path.name
        checksum = await trio.to_thread.run_sync(sha256_of, item.path)
        try:
            reservation = await with_retries(
                lambda: self._client.reserve_artifact(
                    self._build_id,
                    name=name,
                    artifact_type=artifact_type(name),
                    file_size=item.size,
                    checksum=checksum,
                    metadata={"path": item.relative},
                ),
                what=f"artifact {item.relative}: reservation",
                say=self._say,
            )
        except RunnerError as exc:
            raise UploadFailed(f"artifact {item.relative}: reservation refused: {exc}") from exc
        if not reservation.upload_url:
            if reservation.state == "available":
                await self._log.info(f"artifact {item.relative}: already uploaded")
                return
            await self._finish(reservation.artifact_id, "the server keeps no artifacts")
            await self._log.error(
                f"artifact {item.relative}: not uploaded, artifact storage is disabled "
                "on the server"
            )
            return
        await self._log.info(f"uploading artifact {item.relative} ({item.size} bytes)")
        try:
            async with aclosing(file_chunks(item.path, item.size)) as body:
                await self._client.upload(reservation.upload_url, body, item.size)
        except (RunnerError, OSError) as exc:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await self._finish(reservation.artifact_id, f"upload failed: {exc}")
            raise UploadFailed(f"artifact {item.relative}: upload failed: {exc}") from exc
        try:
            await with_retries(
                lambda: self._client.complete_artifact(self._build_id, reservation.artifact_id),
                what=f"artifact {item.relative}: completion",
                say=self._say,
            )
        except ServerError as exc:
            raise UploadFailed(f"artifact {item.relative}: completion refused: {exc}") from exc
        await self._log.info(f"artifact {item.relative} uploaded")

    async def _finish(self, artifact_id: str, message: str) -> None:
        """Abort a reservation; a failure to do so is only told (it expires on its own)."""
        try:
            await self._client.abort_artifact(self._build_id, artifact_id, message)
        except RunnerError as exc:
            self._say(f"could not abort artifact {artifact_id}: {exc}")
