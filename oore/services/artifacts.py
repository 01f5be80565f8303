"""Artifacts: reservations and uploads by runners, listings and downloads for users
(contract §6.5, §7.1, §7.2).

Stale reservations: a due-time worker (``oore/actors/due.py``, wired by the runtime)
holds one item, :data:`SWEEP`, due when the oldest pending reservation runs out. Each new
reservation tells it its own due time, which only matters when nothing earlier is known.
When it falls due, :meth:`Artifacts.sweep` fails what is due (and deletes its objects) and
answers when the next pending reservation falls due. With nothing pending there is no
item and no query: the database is asked only when something is due, and at every start
of the worker (:meth:`Artifacts.pending_sweep`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from oore.domain.artifact_storage import StorageProvider
from oore.domain.artifacts import (
    DOWNLOAD_URL_TTL,
    MAX_QUERY_BUILD_IDS,
    MAX_UPLOAD_BYTES,
    PENDING_EXPIRED_MESSAGE,
    PROJECT_LIST_MAX,
    Artifact,
    ArtifactState,
    blank_to_none,
    check_artifact_name,
    object_key,
    parse_artifact_type,
)
from oore.domain.builds import Build
from oore.domain.ids import new_id
from oore.domain.rbac import ProjectPermission, is_instance_admin, require_project
from oore.domain.retention import artifact_expiry, effective_policy
from oore.domain.runners import Runner
from oore.domain.users import Session
from oore.errors import ApiError, Conflict, Forbidden, Gone, InvalidInput, NotFound, Unauthorized
from oore.services.access import Access
from oore.services.artifact_storage import ArtifactsConfig, ArtifactStorageService
from oore.services.clock import WallClock
from oore.services.identity import AuditSink
from oore.storage import ArtifactStorage, LocalStorage, S3Storage, StoredObject, storage_error
from oore.storage.local import FileChunks
from oore.store import AuditEntry, Store
from oore.store.artifacts import NewArtifact

log = logging.getLogger(__name__)

# When a sweep could not reach the store, try again after this many seconds.
SWEEP_RETRY_SECONDS = 60.0
SWEEP_CONTENDED_SECONDS = 1.0
ABORTED_MESSAGE = "upload aborted by the runner"
# Purging a project's artifacts: rows read per round, objects deleted at once.
PURGE_BATCH = 200
PURGE_CONCURRENCY = 8
SWEEP = "sweep"  # the one item of the reservation timer


class ReservationTimer(Protocol):
    """What the service needs of its due-time worker (a ``DueTimes[str]``)."""

    def add(self, key: str, after: float, *, keep_earlier: bool = False) -> bool:
        """Make ``key`` fall due ``after`` seconds from now, never waiting."""
        ...


def invalid_upload_token() -> Unauthorized:
    return Unauthorized("invalid_upload_token", "The upload token is unknown, used or expired")


def not_pending() -> Conflict:
    return Conflict("artifact_not_pending", "The artifact is not a pending upload of this job")


def stored_object(artifact: Artifact) -> StoredObject:
    return StoredObject(artifact.file_path, artifact.id, artifact.name)


@dataclass(frozen=True)
class Reservation:
    artifact: Artifact
    upload_url: str


@dataclass(frozen=True)
class DownloadLink:
    download_url: str
    expires_at: int


@dataclass(frozen=True)
class LocalUpload:
    """A local upload whose token was accepted: write the body with :meth:`receive`."""

    storage: LocalStorage
    obj: StoredObject

    async def receive(self, chunks: AsyncIterable[bytes], *, limit: int = MAX_UPLOAD_BYTES) -> int:
        """Stream the body to the object (413 past ``limit``); the byte count."""
        return await self.storage.receive(self.obj, chunks, limit=limit)


@dataclass(frozen=True)
class LocalDownload:
    """A local object behind a download token: its name, its size and its bytes."""

    storage: LocalStorage
    obj: StoredObject
    size: int
    slots: trio.Semaphore

    @property
    def filename(self) -> str:
        return self.obj.filename

    def chunks(self, start: int, length: int) -> FileChunks:
        return self.storage.chunks(self.obj, start, length, self.slots)


class Artifacts:
    """Use cases of the artifact endpoints, and the expiry of stale reservations."""

    def __init__(
        self,
        store: Store,
        clock: WallClock,
        access: Access,
        audit: AuditSink,
        storage: ArtifactStorageService,
        config: ArtifactsConfig,
        timer: ReservationTimer,
    ) -> None:
        self._store = store
        self._clock = clock
        self._access = access
        self._audit = audit
        self.storage = storage
        self._config = config
        self._timer = timer

    # -- runner side ---------------------------------------------------------------------

    async def _bound(self, runner: Runner, build_id: str) -> Build:
        build = await self._store.builds.get(build_id)
        if build is None:
            raise NotFound("not_found", "Build not found")
        if build.runner_id != runner.id:
            raise Forbidden("runner_mismatch", "This build is not assigned to this runner")
        return build

    async def reserve(
        self,
        runner: Runner,
        build_id: str,
        *,
        name: str,
        artifact_type: str,
        file_size: int | None,
        checksum: str | None,
        metadata: Any,
    ) -> Reservation:
        """Reserve an upload (§6.5, checks in the documented order).

        An available artifact of the build with the same checksum is answered instead,
        with an empty ``upload_url``.
        """
        kind = parse_artifact_type(artifact_type)
        clean_name = check_artifact_name(name)
        if file_size is not None and file_size < 0:
            raise InvalidInput("invalid_input", "file_size must not be negative")
        build = await self._bound(runner, build_id)
        checksum = blank_to_none(checksum)
        if checksum is not None:
            known = await self._store.artifacts.available_with_checksum(build.id, checksum)
            if known is not None:
                return Reservation(known, "")
        artifact_id = new_id()
        key = object_key(build.id, artifact_id, clean_name)
        upload_url = await self.storage.backend.upload_url(
            StoredObject(key, artifact_id, clean_name)
        )
        now = self._clock.now()
        kept = await self._store.retention.policy_rows(build.project_id)
        policy = effective_policy(kept.settings, kept.override, self._config.ttl_days)
        artifact = await self._store.artifacts.insert(
            NewArtifact(
                id=artifact_id,
                build_id=build.id,
                name=clean_name,
                artifact_type=kind,
                file_path=key,
                file_size=file_size,
                checksum=checksum,
                metadata=metadata,
                expires_at=artifact_expiry(policy, now),
                now=now,
            )
        )
        if artifact is None:
            raise NotFound("not_found", "Build not found")
        # A full mailbox holds earlier reservations, which fall due no later than this one,
        # and the sweep that handles them finds this one in the store: a lost tell is safe.
        self._timer.add(SWEEP, self._config.pending_ttl, keep_earlier=True)
        return Reservation(artifact, upload_url)

    async def complete(self, runner: Runner, build_id: str, artifact_id: str) -> Artifact:
        """``pending`` → ``available``; 409 ``artifact_not_pending`` otherwise."""
        done = await self._store.artifacts.finish(
            artifact_id, build_id, runner.id, ArtifactState.AVAILABLE, None, self._clock.now()
        )
        if done is None:
            raise not_pending()
        return done

    async def abort(
        self, runner: Runner, build_id: str, artifact_id: str, error_message: str | None
    ) -> Artifact:
        """``pending`` → ``failed`` with the runner's message; whatever arrived is deleted."""
        failed = await self._store.artifacts.finish(
            artifact_id,
            build_id,
            runner.id,
            ArtifactState.FAILED,
            blank_to_none(error_message) or ABORTED_MESSAGE,
            self._clock.now(),
        )
        if failed is None:
            raise not_pending()
        await self._delete_quietly(failed)
        return failed

    async def begin_local_upload(self, token: str) -> LocalUpload:
        """Accept a local upload token (used up here), before any of the body is read.

        401 ``invalid_upload_token`` for an unknown, used or expired token, when storage
        is not local, or when the reservation is no longer pending.
        """
        backend = self.storage.backend
        if not isinstance(backend, LocalStorage):
            raise invalid_upload_token()
        obj = await backend.accept_upload(token)
        if obj is None:
            raise invalid_upload_token()
        artifact = await self._store.artifacts.get(obj.artifact_id)
        if artifact is None or artifact.state is not ArtifactState.PENDING:
            raise invalid_upload_token()
        return LocalUpload(backend, obj)

    # -- user side -----------------------------------------------------------------------

    async def for_build(self, session: Session, build_id: str) -> list[Artifact]:
        """``GET /v1/builds/{id}/artifacts``: available artifacts, oldest first."""
        build = await self._store.builds.get(build_id)
        if build is None:
            raise NotFound("not_found", "Build not found")
        role = await self._access.role_on(session, build.project_id)
        if role is None:
            raise NotFound("not_found", "Build not found")
        require_project(role, ProjectPermission.READ_ARTIFACTS)
        return await self._store.artifacts.for_build(build.id)

    async def for_project(
        self, session: Session, project_id: str, limit: int | None
    ) -> list[Artifact]:
        """``GET /v1/projects/{id}/artifacts``: newest first, at most 200."""
        if limit is not None and limit <= 0:
            raise InvalidInput("invalid_input", "limit must be positive")
        found = await self._access.project(session, project_id, ProjectPermission.READ_ARTIFACTS)
        wanted = PROJECT_LIST_MAX if limit is None else min(limit, PROJECT_LIST_MAX)
        return await self._store.artifacts.for_project(found.project.id, wanted)

    async def query(self, session: Session, build_ids: Sequence[str]) -> list[Artifact]:
        """``POST /v1/artifacts/query``: artifacts of the builds the caller may see."""
        if len(build_ids) > MAX_QUERY_BUILD_IDS:
            raise InvalidInput(
                "too_many_build_ids", f"At most {MAX_QUERY_BUILD_IDS} build ids per query"
            )
        wanted = list(dict.fromkeys(b.strip() for b in build_ids if b.strip()))
        member_of = None if is_instance_admin(session.user.role) else session.user.id
        return await self._store.artifacts.of_builds(wanted, member_of)

    async def download_link(self, session: Session, artifact_id: str) -> DownloadLink:
        """A 15-minute download URL (§7.2): 404, 410 ``artifact_expired``, 503, 500."""
        artifact = await self._store.artifacts.get(artifact_id)
        if artifact is None or artifact.state is not ArtifactState.AVAILABLE:
            raise NotFound("not_found", "Artifact not found")
        role = await self._access.role_on(session, artifact.project_id)
        if role is None:
            raise NotFound("not_found", "Artifact not found")
        require_project(role, ProjectPermission.READ_ARTIFACTS)
        now = self._clock.now()
        if artifact.expired(now):
            raise Gone("artifact_expired", "The artifact has expired")
        url = await self.storage.backend.download_url(stored_object(artifact))
        await self._audit.submit_one(
            AuditEntry.by(
                session.user,
                "artifact_download_link_generated",
                "artifact",
                artifact.id,
                details={
                    "artifact_id": artifact.id,
                    "file_path": artifact.file_path,
                    "expires_at": now + DOWNLOAD_URL_TTL,
                    "build_id": artifact.build_id,
                    "name": artifact.name,
                },
                created_at=now,
            )
        )
        return DownloadLink(url, now + DOWNLOAD_URL_TTL)

    async def local_download(self, token: str) -> LocalDownload:
        """The object behind a local download token; 404 ``not_found`` when there is none."""
        backend = self.storage.backend
        if not isinstance(backend, LocalStorage):
            raise NotFound("not_found", "Download link is unknown or expired")
        obj = await backend.resolve_download(token)
        if obj is None:
            raise NotFound("not_found", "Download link is unknown or expired")
        size = await backend.size_of(obj)
        if size is None:
            raise NotFound("not_found", "Artifact file not found")
        return LocalDownload(backend, obj, size, self.storage.download_slots)

    # -- purging ---------------------------------------------------------------------------

    async def purge(self, project_id: str, *, pipeline_id: str | None = None) -> int:
        """Delete every artifact of the project's builds (of one pipeline's builds with
        ``pipeline_id``): the objects first, then the rows; how many went.

        Rows are read ``PURGE_BATCH`` at a time. For each batch the local URLs are revoked,
        the objects are deleted (``PURGE_CONCURRENCY`` at once, each off the event loop),
        and only the rows whose object is gone are deleted, with their scoped and install
        tokens. When an object cannot be deleted (or storage is disabled) this raises 500
        ``storage_error`` and the artifacts not yet deleted stay whole, rows and objects,
        so calling again finishes the job.
        """
        backend = self.storage.backend
        purged = 0
        while batch := await self._store.artifacts.first_of_project(
            project_id, PURGE_BATCH, pipeline_id=pipeline_id
        ):
            await self.storage.revoke_urls({artifact.id for artifact in batch})
            gone, failures = await _delete_objects(backend, batch)
            purged += await self._store.artifacts.delete_rows(gone)
            if failures:
                first = next(iter(failures.values()))
                log.warning(
                    "project %s: %d artifact object(s) could not be deleted: %s",
                    project_id,
                    len(failures),
                    first,
                )
                if len(failures) > 1:
                    raise storage_error(f"Could not delete {len(failures)} artifact object(s)")
                raise first
        return purged

    async def delete_objects(
        self, batch: Sequence[Artifact]
    ) -> tuple[list[str], dict[str, ApiError]]:
        """Revoke the local URLs of ``batch`` and delete their objects from the storage
        in use (a missing object counts as deleted): the ids whose object is gone, and
        the error of each other one. The rows are the caller's."""
        await self.storage.revoke_urls({artifact.id for artifact in batch})
        return await _delete_objects(self.storage.backend, batch)

    # -- stale reservations --------------------------------------------------------------

    async def pending_sweep(self) -> list[tuple[str, float]]:
        """The timer's item at its start: :data:`SWEEP` when a reservation is pending."""
        due = await self._first_due()
        return [] if due is None else [(SWEEP, due)]

    async def sweep_due(self, key: str) -> float | None:
        """The timer's callback: :meth:`sweep`."""
        return await self.sweep()

    async def _first_due(self) -> float | None:
        """Seconds until the oldest pending reservation falls due."""
        try:
            oldest = await self._store.artifacts.oldest_pending()
        except ApiError:
            return SWEEP_RETRY_SECONDS
        if oldest is None:
            return None
        return float(oldest + self._config.pending_ttl - self._clock.now())

    async def sweep(self) -> float | None:
        """Fail every reservation past its time and delete its object (§6.5); answers
        when the next one falls due, or None when nothing is pending."""
        now = self._clock.now()
        try:
            failed = await self._store.artifacts.fail_pending(
                now - self._config.pending_ttl, PENDING_EXPIRED_MESSAGE, now
            )
        except ApiError:
            log.warning("could not expire artifact reservations; retrying")
            return SWEEP_RETRY_SECONDS
        for artifact in failed:
            await self._delete_quietly(artifact)
        if failed:
            log.info("%d artifact upload reservations expired", len(failed))
        due = await self._first_due()
        if due is not None and not failed:
            # Due but not failed: another daemon holds it right now. Look again shortly.
            due = max(due, SWEEP_CONTENDED_SECONDS)
        return due

    async def _delete_quietly(self, artifact: Artifact) -> None:
        backend = self.storage.backend
        if backend.provider is StorageProvider.DISABLED:
            return
        try:
            await backend.delete(stored_object(artifact))
        except ApiError as exc:
            log.warning("could not delete the object of artifact %s: %s", artifact.id, exc)


async def _delete_objects(
    backend: ArtifactStorage, batch: Sequence[Artifact]
) -> tuple[list[str], dict[str, ApiError]]:
    """Delete the objects of ``batch``: the ids of the artifacts whose object is gone,
    and the error of each other one by its id. S3 takes the whole batch in one request;
    other backends delete ``PURGE_CONCURRENCY`` objects at once."""
    if isinstance(backend, S3Storage):
        left = await backend.delete_batch([stored_object(artifact) for artifact in batch])
        failed = {obj.artifact_id for obj in left}
        deleted = [artifact.id for artifact in batch if artifact.id not in failed]
        return deleted, {
            key: storage_error("Could not delete the artifact object") for key in failed
        }
    gone: list[str] = []
    failures: dict[str, ApiError] = {}
    limiter = trio.CapacityLimiter(PURGE_CONCURRENCY)

    async def delete_one(artifact: Artifact) -> None:
        async with limiter:
            try:
                await backend.delete(stored_object(artifact))
            except ApiError as exc:
                failures[artifact.id] = exc
            else:
                gone.append(artifact.id)

    async with trio.open_nursery() as nursery:
        for artifact in batch:
            nursery.start_soon(delete_one, artifact)
    return gone, failures
