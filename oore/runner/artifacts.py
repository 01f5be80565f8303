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
from oore.runner.client import RunnerClient, RunnerError, ServerError, retryable
from oore.runner.retry import Backoff, with_retries

MAX_ARTIFACTS = 256
READ_CHUNK = 64 * 1024
SKIPPED_DIRS = frozenset({".git"})
UPLOAD_ATTEMPTS = 5
NOT_PENDING = "artifact_not_pending"
INVALID_UPLOAD_TOKEN = "invalid_upload_token"
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


class _CutOff(Exception):
    """An upload that may pass if started again from its reservation."""


def _restartable(exc: Exception) -> bool:
    """Whether a failed send may pass from a new reservation: cut off, refused by a server
    coming back (502/503/504), or its one-use token gone with a try a restart cut off. A
    500 is the server's own failure (its storage), and repeating would not mend it."""
    if isinstance(exc, ServerError):
        return exc.status in (408, 429, 502, 503, 504) or exc.code == INVALID_UPLOAD_TOKEN
    return isinstance(exc, RunnerError) and retryable(exc)


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
        """Reserve, send, complete. A send or a completion cut off (the network, a 5xx, a
        server that restarted and lost the upload) starts again from the reservation, up
        to :data:`UPLOAD_ATTEMPTS` times with backoff; a completion whose answer was lost
        and that went through is then answered by the reservation's checksum dedupe."""
        checksum = await trio.to_thread.run_sync(sha256_of, item.path)
        backoff = Backoff()
        for attempt in range(1, UPLOAD_ATTEMPTS + 1):
            try:
                await self._upload_once(item, checksum)
                return
            except _CutOff as exc:
                if attempt == UPLOAD_ATTEMPTS:
                    raise UploadFailed(f"artifact {item.relative}: {exc}") from exc
                delay = backoff.next()
                self._say(f"artifact {item.relative}: {exc}; starting again in {delay:g}s")
                await trio.sleep(delay)

    async def _upload_once(self, item: Found, checksum: str) -> None:
        name = item.path.name
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
            if _restartable(exc):
                raise _CutOff(f"upload failed ({exc})") from exc
            raise UploadFailed(f"artifact {item.relative}: upload failed: {exc}") from exc
        await self._complete(item, reservation.artifact_id)
        await self._log.info(f"artifact {item.relative} uploaded")

    async def _complete(self, item: Found, artifact_id: str) -> None:
        """Complete, repeated while it may pass; 409 after a try whose answer was lost
        means that try may have been taken: :class:`_CutOff` has the caller ask again."""
        backoff = Backoff()
        lost = False
        while True:
            try:
                await self._client.complete_artifact(self._build_id, artifact_id)
                return
            except RunnerError as exc:
                if lost and isinstance(exc, ServerError) and exc.code == NOT_PENDING:
                    raise _CutOff("completion's answer lost") from exc
                if not retryable(exc):
                    raise UploadFailed(
                        f"artifact {item.relative}: completion refused: {exc}"
                    ) from exc
                lost = True
                delay = backoff.next()
                self._say(
                    f"artifact {item.relative}: completion failed ({exc}); retrying in {delay:g}s"
                )
                await trio.sleep(delay)

    async def _finish(self, artifact_id: str, message: str) -> None:
        """Abort a reservation; a failure to do so is only told (it expires on its own)."""
        try:
            await self._client.abort_artifact(self._build_id, artifact_id, message)
        except RunnerError as exc:
            self._say(f"could not abort artifact {artifact_id}: {exc}")
