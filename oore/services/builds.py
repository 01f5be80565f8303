"""Builds: trigger, list, inspect, cancel, rerun; runner reports and log lines (§2.7, §4, §5.6)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from oore.domain.builds import (
    CHANGELOG_MAX_BYTES,
    RUNNER_REPORTABLE,
    Build,
    BuildEvent,
    BuildStatus,
    StepResult,
    TriggerType,
    ending_for_runner,
)
from oore.domain.projects import Pipeline, Project, RepositoryProvider
from oore.domain.rbac import ProjectPermission, is_instance_admin, project_allows
from oore.domain.runners import MAX_WAIT_SECONDS, Runner
from oore.domain.text import name_problem, text_problem
from oore.domain.users import Session
from oore.errors import BadGateway, Conflict, Forbidden, InvalidInput, NotFound
from oore.eventlog import event
from oore.scheduling import Scheduling
from oore.services.access import Access
from oore.services.pipeline_files import apply_file_settings
from oore.services.scm import CredentialRejected
from oore.services.sources import SourceReader, Sources
from oore.store.builds import BuildFilter, NewBuild
from oore.store.projects import as_uuid

log = logging.getLogger(__name__)

STATUS_FILTER_MAX = 9


@dataclass(frozen=True)
class TriggerRequest:
    pipeline_id: str
    platforms: list[str] | None = None
    branch: str | None = None
    commit_sha: str | None = None
    trigger_ref: str | None = None
    changelog: str | None = None


@dataclass(frozen=True)
class BuildQuery:
    project_id: str | None = None
    pipeline_id: str | None = None
    status: str | None = None
    branch: str | None = None
    sort: str = "created_at"
    descending: bool = True
    limit: int = 50
    offset: int = 0


def _check_trigger_text(req: TriggerRequest) -> None:
    """400 ``invalid_input`` for a ref or changelog holding what no text of its kind may."""
    for label, value in (
        ("branch", req.branch),
        ("commit_sha", req.commit_sha),
        ("trigger_ref", req.trigger_ref),
    ):
        if value is not None and (problem := name_problem(value)) is not None:
            raise InvalidInput("invalid_input", f"{label} {problem}")
    if req.changelog is not None and (problem := text_problem(req.changelog)) is not None:
        raise InvalidInput("invalid_input", f"changelog {problem}")


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def build_snapshot(
    project: Project,
    pipeline: Pipeline,
    *,
    commit_sha: str | None,
    branch: str | None,
    selected_platforms: list[str] | None,
    trigger_type: TriggerType,
    now: int,
) -> dict[str, Any]:
    """The immutable per-build copy of the pipeline's config (contract §4.6)."""
    repository = project.repository
    assert repository is not None
    snapshot: dict[str, Any] = {
        "snapshot_version": 2,
        "config_resolution_policy": "file_first_ui_fallback",
        "config_path": pipeline.config_path,
        "config_path_explicit": pipeline.config_path_explicit,
        "ui_execution_config": pipeline.execution_config,
        "artifact_patterns": pipeline.execution_config.get("artifact_patterns", []),
        "trigger_type": trigger_type.value,
        "commit_sha": commit_sha,
        "branch": branch,
        "repo_url": repository.clone_url,
        "repository_id": repository.id,
        "captured_at": now,
    }
    if selected_platforms is not None:
        snapshot["selected_platforms"] = selected_platforms
    if pipeline.runner_labels:
        snapshot["runner_labels"] = list(pipeline.runner_labels)
    return snapshot


async def _branch_head(reader: SourceReader, project: Project, branch: str) -> str:
    """The commit a branch points at, with build creation's codes (§2.7): 400
    ``invalid_ref``, 409 ``source_unresolvable`` without usable credentials, 502
    ``github_api_error`` / ``gitlab_api_error`` for any provider failure, 500 ``git_error``."""
    try:
        return await reader.resolve(branch, branch=True)
    except Conflict as exc:
        raise Conflict("source_unresolvable", exc.message) from None
    except (BadGateway, *CredentialRejected) as exc:
        assert project.repository is not None
        provider = project.repository.provider
        code = "gitlab_api_error" if provider is RepositoryProvider.GITLAB else "github_api_error"
        raise BadGateway(code, exc.message) from None


class Builds:
    """Use cases of the Builds API and of the runner job endpoints."""

    def __init__(self, scheduling: Scheduling, access: Access, sources: Sources) -> None:
        self._scheduling = scheduling
        self._store = scheduling.store
        self._clock = scheduling.clock
        self._access = access
        self._sources = sources

    # -- user side -----------------------------------------------------------------------

    async def trigger(self, session: Session, project_id: str, req: TriggerRequest) -> Build:
        """Queue a manual build (contract §2.7, checks in the documented order)."""
        changelog = _blank_to_none(req.changelog)
        if (
            changelog is not None
            and len(changelog.encode("utf-8", "replace")) > CHANGELOG_MAX_BYTES
        ):
            raise InvalidInput("invalid_input", "changelog is longer than 4000 bytes")
        _check_trigger_text(req)
        access = await self._access.project(session, project_id, ProjectPermission.TRIGGER_BUILD)
        project = access.project
        if project.repository is None:
            raise Conflict("source_not_configured", "The project has no source repository")
        commit_sha = _blank_to_none(req.commit_sha)
        branch = _blank_to_none(req.branch)
        if branch is None and commit_sha is None:
            branch = project.default_branch or project.repository.default_branch
        if branch is None and commit_sha is None:
            raise InvalidInput("invalid_input", "Give a branch or a commit_sha")
        trigger_ref = _blank_to_none(req.trigger_ref) or branch
        pipeline = await self._store.pipelines.get(req.pipeline_id)
        if pipeline is None or pipeline.project_id != project.id:
            raise NotFound("not_found", "Pipeline not found")
        selected = self._selected_platforms(pipeline, req.platforms)
        reader = None
        if commit_sha is None:
            assert branch is not None
            reader = await self._sources.reader(project)
            commit_sha = await _branch_head(reader, project, branch)
        build = await self._insert(
            project,
            pipeline,
            actor=session.user.email,
            commit_sha=commit_sha,
            branch=branch,
            trigger_ref=trigger_ref,
            changelog=changelog,
            selected=selected,
            reader=reader,
        )
        if pipeline.cancel_previous:
            await self._supersede(build)
        return build

    @staticmethod
    def _selected_platforms(pipeline: Pipeline, wanted: list[str] | None) -> list[str] | None:
        if wanted is None:
            return None
        available = pipeline.platforms
        if not wanted or len(set(wanted)) != len(wanted) or not set(wanted) <= set(available):
            raise InvalidInput(
                "invalid_input",
                "platforms must be non-empty, unique, and among the pipeline's platforms",
            )
        return [platform for platform in available if platform in wanted]

    async def _file_settings(
        self,
        snapshot: dict[str, Any],
        project: Project,
        pipeline: Pipeline,
        commit_sha: str,
        reader: SourceReader | None,
    ) -> None:
        """The pipeline file's settings at the build's commit, when its source can be read."""
        if reader is None:
            try:
                reader = await self._sources.reader(project)
            except Conflict:
                return  # the runner still reads the file at checkout
        await apply_file_settings(snapshot, pipeline, reader, commit_sha)

    async def _insert(
        self,
        project: Project,
        pipeline: Pipeline,
        *,
        actor: str,
        commit_sha: str | None,
        branch: str | None,
        trigger_ref: str | None,
        changelog: str | None,
        selected: list[str] | None,
        snapshot: dict[str, Any] | None = None,
        source: Build | None = None,
        trigger_type: TriggerType = TriggerType.MANUAL,
        trigger_event: str | None = None,
        reader: SourceReader | None = None,
    ) -> Build:
        now = self._clock.now()
        if snapshot is None:
            snapshot = build_snapshot(
                project,
                pipeline,
                commit_sha=commit_sha,
                branch=branch,
                selected_platforms=selected,
                trigger_type=trigger_type,
                now=now,
            )
            if commit_sha is not None:
                await self._file_settings(snapshot, project, pipeline, commit_sha, reader)
        labels = snapshot.get("runner_labels") or []
        build = await self._scheduling.queue(
            NewBuild(
                project_id=project.id,
                pipeline_id=pipeline.id,
                trigger_type=trigger_type,
                trigger_actor=actor,
                trigger_event="rerun" if source else trigger_event,
                trigger_ref=trigger_ref,
                commit_sha=commit_sha,
                branch=branch,
                changelog=changelog,
                source_build_id=source.id if source else None,
                config_snapshot=snapshot,
                required_labels=tuple(sorted(labels)),
                reason=f"re-run of build #{source.build_number}" if source else "build created",
                now=now,
            )
        )
        if build is None:
            raise NotFound("not_found", "Project not found")
        event(
            log,
            "build.queued",
            build.log_fields(),
            pipeline=pipeline.name,
            trigger=build.trigger_type.value,
            by=actor,
        )
        # Logs it if no runner can take it; the answer tells a runner policy holding it back.
        [build] = await self._scheduling.waiting.explain([build])
        return build

    async def _supersede(self, build: Build) -> None:
        """``cancel_previous``: older unfinished builds of the pipeline and branch end."""
        for older in await self._store.builds.older_active(
            build.pipeline_id, build.branch, build.id
        ):
            try:
                await self._cancel(older, actor="system", reason="superseded by new build")
            except Conflict:
                continue  # it finished meanwhile

    async def trigger_from_webhook(
        self,
        project: Project,
        pipeline: Pipeline,
        *,
        commit_sha: str | None,
        branch: str | None,
        event: str,
        actor: str | None,
    ) -> Build:
        """Queue the build a webhook delivery asked for (§9.3); honours ``cancel_previous``."""
        if project.repository is None:
            raise Conflict("source_not_configured", "The project has no source repository")
        if branch is None and commit_sha is None:
            raise InvalidInput("invalid_input", "A webhook build needs a branch or a commit")
        build = await self._insert(
            project,
            pipeline,
            actor=actor or "webhook",
            commit_sha=commit_sha,
            branch=branch,
            trigger_ref=branch,
            changelog=None,
            selected=None,
            trigger_type=TriggerType.WEBHOOK,
            trigger_event=event,
        )
        if pipeline.cancel_previous:
            await self._supersede(build)
        return build

    async def rerun(self, session: Session, build_id: str) -> Build:
        """A new build with the original's snapshot (contract §4.4)."""
        source = await self._store.builds.get(build_id)
        if source is None:
            raise NotFound("not_found", "Build not found")
        if not source.status.terminal:
            raise Conflict("build_not_terminal", "Only a finished build can be re-run")
        access = await self._access.project(
            session, source.project_id, ProjectPermission.TRIGGER_BUILD
        )
        project = access.project
        if project.repository is None or project.repository.id != source.config_snapshot.get(
            "repository_id"
        ):
            raise Conflict("source_changed", "The project's source changed since this build")
        pipeline = await self._store.pipelines.get(source.pipeline_id)
        if pipeline is None:
            raise NotFound("not_found", "Pipeline not found")
        return await self._insert(
            project,
            pipeline,
            actor=session.user.email,
            commit_sha=source.commit_sha,
            branch=source.branch,
            trigger_ref=source.trigger_ref,
            changelog=source.changelog,
            selected=None,
            snapshot=dict(source.config_snapshot),
            source=source,
        )

    async def visible(self, session: Session, build_id: str) -> Build:
        """The build if the caller may read its project; 404 otherwise."""
        return await self.readable(session, await self._store.builds.get(build_id))

    async def readable(self, session: Session, build: Build | None) -> Build:
        """``build`` (read already) if the caller may read its project; 404 otherwise."""
        if build is None:
            raise NotFound("not_found", "Build not found")
        role = await self._access.role_on(session, build.project_id)
        if not project_allows(role, ProjectPermission.READ):
            raise NotFound("not_found", "Build not found")
        return build

    async def detail(self, session: Session, build_id: str) -> tuple[Build, list[BuildEvent]]:
        found = await self._store.builds.get_with_events(build_id)
        stored, events = (None, []) if found is None else found
        [build] = await self._scheduling.waiting.explain([await self.readable(session, stored)])
        return build, events

    async def page(self, session: Session, query: BuildQuery) -> tuple[list[Build], int]:
        """``GET /v1/builds``: filters, stable order, only projects the caller may see."""
        if query.limit <= 0:
            raise InvalidInput("invalid_input", "limit must be positive")
        if query.offset < 0:
            raise InvalidInput("invalid_input", "offset must not be negative")
        statuses: tuple[str, ...] | None = None
        if query.status is not None:
            wanted = {part.strip() for part in query.status.split(",") if part.strip()}
            if len(wanted) > STATUS_FILTER_MAX:
                raise InvalidInput("invalid_input", "At most 9 status values")
            for status in wanted:
                if status not in BuildStatus.__members__.values():
                    raise InvalidInput("invalid_input", f"Unknown build status {status!r}")
            statuses = tuple(sorted(wanted))
        project_key = pipeline_key = None
        if query.project_id is not None:
            project_key = as_uuid(query.project_id)
            if project_key is None:
                return [], 0
        if query.pipeline_id is not None:
            pipeline_key = as_uuid(query.pipeline_id)
            if pipeline_key is None:
                return [], 0
        member_of = None if is_instance_admin(session.user.role) else session.user.id
        builds, total = await self._store.builds.page(
            BuildFilter(project_key, pipeline_key, statuses, query.branch, member_of),
            sort=query.sort,
            descending=query.descending,
            limit=min(query.limit, 200),
            offset=query.offset,
        )
        return await self._scheduling.waiting.explain(builds), total

    async def cancel(self, session: Session, build_id: str) -> Build:
        """Cancel from queued/scheduled/assigned/running (§4.3); 409 from a terminal state."""
        build = await self.visible(session, build_id)
        await self._access.project(session, build.project_id, ProjectPermission.CANCEL_BUILD)
        return await self._cancel(build, actor=session.user.email, reason="canceled by user")

    async def _cancel(self, build: Build, *, actor: str, reason: str) -> Build:
        return await self._scheduling.cancel(build, actor=actor, reason=reason)

    # -- runner side -----------------------------------------------------------------------

    async def bound(self, runner: Runner, build_id: str) -> Build:
        build = await self._store.builds.get(build_id)
        if build is None:
            raise NotFound("not_found", "Build not found")
        if build.runner_id != runner.id:
            raise await self._not_held(runner, build)
        return build

    async def _not_held(self, runner: Runner, build: Build) -> Forbidden:
        """403 ``runner_mismatch``; when the build ended in this runner's hands (canceled,
        timed out), the message says how and ``details`` holds the status it ended in."""
        if build.last_runner_id != runner.id or not build.status.terminal:
            return Forbidden("runner_mismatch", "This build is not assigned to this runner")
        events = await self._store.builds.events(build.id)
        actor, reason = (events[-1].actor, events[-1].reason) if events else (None, None)
        return Forbidden(
            "runner_mismatch",
            ending_for_runner(build.status, actor, reason),
            details=build.status.value,
        )

    async def job_state(self, runner: Runner, build_id: str, wait_seconds: float) -> BuildStatus:
        """The build's status; with a wait, answered as soon as it changes (cancel push)."""
        if not 0 <= wait_seconds <= MAX_WAIT_SECONDS:
            raise InvalidInput("invalid_input", f"wait_seconds must be 0..{MAX_WAIT_SECONDS}")
        build = await self.bound(runner, build_id)
        build = await self._scheduling.job_state(build, wait_seconds)
        if build.runner_id != runner.id:
            raise await self._not_held(runner, build)
        return build.status

    async def report(
        self,
        runner: Runner,
        build_id: str,
        *,
        status: str,
        exit_code: int | None,
        error_message: str | None,
        steps: Sequence[StepResult] | None,
    ) -> tuple[Build, list[BuildEvent]]:
        """A runner's status report (§5.6); answered once the transition is committed."""
        try:
            target = BuildStatus(status)
        except ValueError:
            raise InvalidInput("invalid_status", f"Unknown build status {status!r}") from None
        if target not in RUNNER_REPORTABLE:
            raise InvalidInput(
                "invalid_runner_status", "A runner may report running, succeeded or failed"
            )
        report = partial(
            self._scheduling.report,
            runner.id,
            status=target,
            exit_code=exit_code,
            error_message=_blank_to_none(error_message),
            steps=steps or None,
        )
        held = self._scheduling.held(build_id, runner.id)
        if held is not None:  # as known here: no read first, the commit checks it
            try:
                return await report(held)
            except Conflict as exc:
                if exc.code != "concurrent_modification":
                    raise
                # changed by another daemon meanwhile: answered as the build now is
        return await report(await self.bound(runner, build_id))
