"""Retention: its settings (instance and per project) and the cleanup that applies them
(contract §2.14, §4.2, §12).

The cleanup runs on the leader of the daemons sharing the database (:meth:`Retention.lead`,
started by the runtime with the other maintenance duties), every
``cleanup_interval_secs`` after the last run started. The last run is kept in the
database, so a restarted daemon or a new leader knows when the next one is due, and every
daemon answers ``/last-cleanup`` alike. A run works in batches of
:data:`~oore.domain.retention.BATCH` and starts no new batch after
:data:`~oore.domain.retention.RUN_BUDGET_SECS`:

1. artifacts of ended builds that are past their time lose their object (local file or
   S3 object), then their row is marked (it stays: its links answer 410
   ``artifact_expired``);
2. ended builds of ``artifacts_only`` projects left without artifacts that way, or past
   the build limits, move to ``expired``, through the build transitions live viewers see;
3. the log lines of ended builds past the log retention are deleted;
4. ended builds of ``full`` projects past the build limits are deleted, objects first.

Builds that have not ended are never touched. An object that cannot be deleted is named in
the run's ``errors``, and its artifact (and build) stays whole for the next run. Two runs
that overlap (a leader change during a run) are harmless: a missing object counts as
deleted, each row is marked once, and each transition is a compare-and-set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from oore.domain.artifact_storage import StorageProvider
from oore.domain.artifacts import Artifact
from oore.domain.builds import Build, BuildStatus, Transition
from oore.domain.rbac import Action, ProjectPermission, Resource, require
from oore.domain.retention import (
    ACTOR,
    BATCH,
    EXPIRED_REASON,
    MAX_REPORTED_ERRORS,
    RUN_BUDGET_SECS,
    CleanupReport,
    Policy,
    ProjectOverride,
    RetentionSettings,
    default_settings,
    next_run_at,
    parse_override,
    parse_settings_update,
)
from oore.domain.users import Session
from oore.errors import ApiError, Conflict, NotFound
from oore.services.access import Access
from oore.services.artifacts import Artifacts
from oore.services.clock import WallClock
from oore.services.identity import AuditSink
from oore.services.metrics import ServiceMetrics
from oore.store import AuditEntry, Store

log = logging.getLogger(__name__)

FIRST_RUN_DELAY = 60.0  # before any run is recorded, the first comes this long after leading
RECHECK_SECONDS = 60.0  # a settings change saved by another daemon applies within this
RETRY_SECONDS = 60.0  # after a run the database did not let happen


class BuildTransitions(Protocol):
    """The build transitions that tell live viewers (``Scheduling.records``)."""

    async def transition(self, t: Transition) -> Build: ...


@dataclass(frozen=True)
class ProjectRetention:
    """A project's override, and the policy in force for it."""

    project_id: str
    override: ProjectOverride | None
    effective: Policy

    def to_json(self) -> dict[str, Any]:
        fields = {} if self.override is None else self.override.to_json()
        return {
            "project_id": self.project_id,
            "settings": fields,
            "effective": self.effective.to_json(),
            "inherited": not fields,
        }


@dataclass(frozen=True)
class LastCleanup:
    report: CleanupReport | None
    next_run_at: int

    def to_json(self) -> dict[str, Any] | None:
        return None if self.report is None else self.report.to_json(self.next_run_at)


@dataclass
class _Tally:
    """What a run has done so far."""

    artifacts_deleted: int = 0
    bytes_freed: int = 0
    builds_expired: int = 0
    builds_deleted: int = 0
    log_lines_deleted: int = 0
    errors: list[str] = field(default_factory=list)
    more_errors: int = 0

    def error(self, message: str) -> None:
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(message)
        else:
            self.more_errors += 1

    def report(self, started_at: int, finished_at: int, duration_ms: int) -> CleanupReport:
        errors = list(self.errors)
        if self.more_errors:
            errors.append(f"... and {self.more_errors} more")
        return CleanupReport(
            started_at=started_at,
            finished_at=finished_at,
            duration_ms=duration_ms,
            artifacts_deleted=self.artifacts_deleted,
            bytes_freed=self.bytes_freed,
            builds_expired=self.builds_expired,
            builds_deleted=self.builds_deleted,
            log_lines_deleted=self.log_lines_deleted,
            errors=tuple(errors),
        )


class Retention:
    """The retention endpoints, and the cleanup run on the leader."""

    def __init__(
        self,
        store: Store,
        clock: WallClock,
        audit: AuditSink,
        access: Access,
        artifacts: Artifacts,
        transitions: BuildTransitions,
        metrics: ServiceMetrics,
        *,
        artifact_ttl_days: int | None,
        first_run_delay: float = FIRST_RUN_DELAY,
    ) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._access = access
        self._artifacts = artifacts
        self._transitions = transitions
        self._metrics = metrics
        self._ttl_days = artifact_ttl_days
        self._first_run_delay = first_run_delay
        self._first_run_at: int | None = None  # set while this daemon leads
        self._changed = trio.Event()
        self._running = trio.Lock()

    # -- settings ------------------------------------------------------------------------

    async def settings(self) -> RetentionSettings:
        """The instance settings in force: saved, else the defaults."""
        return await self._store.retention.settings() or default_settings(self._ttl_days)

    async def view(self, session: Session) -> RetentionSettings:
        require(session.user.role, Resource.INSTANCE_SETTINGS, Action.READ)
        return await self.settings()

    async def update(self, session: Session, fields: Mapping[str, Any]) -> RetentionSettings:
        """Save the instance settings: the fields given replace the current ones, the
        others keep theirs. The next run is judged by the new interval at once."""
        require(session.user.role, Resource.INSTANCE_SETTINGS, Action.WRITE)
        wanted = parse_settings_update(await self.settings(), fields)
        saved = await self._store.retention.save_settings(wanted, self._clock.now())
        await self._record(
            session,
            "retention_settings_updated",
            "instance_settings",
            "retention",
            {**saved.policy.to_json(), "cleanup_interval_secs": saved.cleanup_interval_secs},
        )
        self._wake()
        return saved

    async def last_cleanup(self, session: Session) -> LastCleanup:
        require(session.user.role, Resource.INSTANCE_SETTINGS, Action.READ)
        report = await self._store.retention.last_run()
        settings = await self.settings()
        first = self._first_run_at if self._first_run_at is not None else self._clock.now()
        return LastCleanup(report, next_run_at(report, settings.cleanup_interval_secs, first))

    async def project(self, session: Session, project_id: str) -> ProjectRetention:
        found = await self._access.project(session, project_id, ProjectPermission.READ)
        return await self._project_view(found.project.id)

    async def update_project(
        self, session: Session, project_id: str, fields: Mapping[str, Any]
    ) -> ProjectRetention:
        """Replace the project's override with the fields given (none: follow the
        instance's settings)."""
        found = await self._access.project(session, project_id, ProjectPermission.WRITE)
        override = parse_override(fields)
        key = found.project.id
        if override.fields:
            await self._store.retention.save_override(key, dict(override.fields), self._clock.now())
        else:
            await self._store.retention.delete_override(key)
        await self._record(session, "project_retention_updated", "project", key, override.to_json())
        return await self._project_view(key)

    async def delete_project(self, session: Session, project_id: str) -> ProjectRetention:
        """Remove the project's override, so the instance's settings apply to it."""
        found = await self._access.project(session, project_id, ProjectPermission.WRITE)
        key = found.project.id
        removed = await self._store.retention.delete_override(key)
        await self._record(
            session, "project_retention_deleted", "project", key, {"had_override": removed}
        )
        return await self._project_view(key)

    async def _project_view(self, project_id: str) -> ProjectRetention:
        override = await self._store.retention.override(project_id)
        policy = (await self.settings()).policy
        effective = policy if override is None else override.apply(policy)
        return ProjectRetention(project_id, override, effective)

    async def _record(
        self,
        session: Session,
        action: str,
        resource_type: str,
        resource_id: str,
        details: dict[str, Any],
    ) -> None:
        await self._audit.submit_one(
            AuditEntry.by(
                session.user,
                action,
                resource_type,
                resource_id,
                details=details,
                created_at=self._clock.now(),
            )
        )

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- on the leader -------------------------------------------------------------------

    async def lead(self) -> None:
        """Run the cleanup whenever it is due, until cancelled (when this daemon stops
        leading). A settings change saved here wakes it; one saved by another daemon
        applies within :data:`RECHECK_SECONDS`."""
        self._first_run_at = self._clock.now() + int(self._first_run_delay)
        try:
            while True:
                changed = self._changed
                try:
                    wait = await self._due_in()
                except ApiError as exc:
                    log.warning("retention: when the cleanup is due is unknown: %s", exc)
                    wait = RETRY_SECONDS
                if wait <= 0:
                    try:
                        await self.run()
                    except ApiError as exc:  # counted by run()
                        log.warning("retention: the cleanup failed: %s", exc)
                        wait = RETRY_SECONDS
                    else:
                        continue
                with trio.move_on_after(min(wait, RECHECK_SECONDS)):
                    await changed.wait()
        finally:
            self._first_run_at = None

    async def _due_in(self) -> float:
        """Seconds (wall clock) until the next run is due."""
        last = await self._store.retention.last_run()
        if last is not None:
            self._metrics.retention_seen(last)
        interval = (await self.settings()).cleanup_interval_secs
        first = self._first_run_at if self._first_run_at is not None else self._clock.now()
        return float(next_run_at(last, interval, first) - self._clock.now())

    async def run(self) -> CleanupReport:
        """One cleanup run now, recorded as the last run; what it did. Raises
        ``ApiError`` when the database failed it (nothing is recorded then)."""
        async with self._running:
            started, began = self._clock.now(), trio.current_time()
            deadline = began + RUN_BUDGET_SECS
            policy = (await self.settings()).policy
            tally = _Tally()
            storage_on = self._artifacts.storage.backend.provider is not StorageProvider.DISABLED
            if not storage_on:
                tally.error("artifact storage is disabled: no artifact or full build was deleted")
            try:
                if storage_on:
                    await self._purge_artifacts(policy, started, tally, deadline)
                await self._expire_builds(policy, started, tally, deadline)
                await self._remove_logs(policy, started, tally, deadline)
                if storage_on:
                    await self._delete_builds(policy, started, tally, deadline)
            except ApiError:
                self._metrics.retention_failed()
                raise
            if trio.current_time() >= deadline:
                tally.error(f"the run stopped after {RUN_BUDGET_SECS:.0f} s; the next one goes on")
            duration_ms = int((trio.current_time() - began) * 1000)
            report = tally.report(started, self._clock.now(), duration_ms)
            try:
                await self._store.retention.save_run(report)
            except ApiError:
                self._metrics.retention_failed()
                raise
            self._metrics.retention_ran(report)
            if report.errors:
                log.warning(
                    "retention: %d problem(s), first: %s", len(report.errors), report.errors[0]
                )
            log.info(
                "retention: %d artifacts deleted, %d builds expired, %d builds deleted, "
                "%d log lines deleted",
                report.artifacts_deleted,
                report.builds_expired,
                report.builds_deleted,
                report.log_lines_deleted,
            )
            return report

    async def _delete(self, batch: list[Artifact], tally: _Tally) -> set[str]:
        """Delete the objects of ``batch``; the ids whose object could not be deleted."""
        _, failures = await self._artifacts.delete_objects(batch)
        for artifact in batch:
            if (failure := failures.get(artifact.id)) is not None:
                tally.error(
                    f"artifact {artifact.id} ({artifact.name}) of build {artifact.build_id}: "
                    f"{failure.message}"
                )
        return set(failures)

    async def _purge_artifacts(
        self, policy: Policy, now: int, tally: _Tally, deadline: float
    ) -> None:
        skip: list[str] = []
        while trio.current_time() < deadline:
            batch = await self._store.retention.expiring_artifacts(
                policy, now, skip=skip, limit=BATCH
            )
            if not batch:
                return
            failed = await self._delete(batch, tally)
            skip += failed
            purged = await self._store.retention.mark_purged(
                [artifact.id for artifact in batch if artifact.id not in failed], now
            )
            tally.artifacts_deleted += purged.count
            tally.bytes_freed += purged.bytes

    async def _expire_builds(
        self, policy: Policy, now: int, tally: _Tally, deadline: float
    ) -> None:
        skip: list[str] = []
        while trio.current_time() < deadline:
            batch = await self._store.retention.builds_to_expire(
                policy, now, skip=skip, limit=BATCH
            )
            if not batch:
                return
            for build_id, status in batch:
                try:
                    await self._transitions.transition(
                        Transition(
                            build_id,
                            status,
                            BuildStatus.EXPIRED,
                            ACTOR,
                            EXPIRED_REASON,
                            self._clock.now(),
                        )
                    )
                except (Conflict, NotFound):
                    skip.append(build_id)  # changed or gone meanwhile: judged again next run
                else:
                    tally.builds_expired += 1

    async def _remove_logs(self, policy: Policy, now: int, tally: _Tally, deadline: float) -> None:
        while trio.current_time() < deadline:
            builds, lines = await self._store.retention.remove_logs(policy, now, limit=BATCH)
            tally.log_lines_deleted += lines
            if builds < BATCH:
                return

    async def _delete_builds(
        self, policy: Policy, now: int, tally: _Tally, deadline: float
    ) -> None:
        skip: list[str] = []
        while trio.current_time() < deadline:
            build_ids = await self._store.retention.builds_to_delete(
                policy, now, skip=skip, limit=BATCH
            )
            if not build_ids:
                return
            objects = await self._store.retention.objects_of_builds(build_ids)
            failed = await self._delete(objects, tally) if objects else set()
            kept = {artifact.build_id for artifact in objects if artifact.id in failed}
            skip += build_ids  # deleted now, or kept for the next run
            deleted = await self._store.retention.delete_builds(
                [build_id for build_id in build_ids if build_id not in kept]
            )
            tally.builds_deleted += deleted.builds
            tally.log_lines_deleted += deleted.log_lines
            tally.artifacts_deleted += deleted.artifacts
            tally.bytes_freed += deleted.bytes
