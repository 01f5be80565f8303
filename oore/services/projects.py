"""Projects, pipelines and project members: what a request asks, checked and stored."""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

import trio

from oore.domain import pipeline_config
from oore.domain.projects import Pipeline, Project, Repository, RepositoryProvider
from oore.domain.rbac import (
    Action,
    ProjectPermission,
    ProjectRole,
    Resource,
    effective_project_role,
    is_instance_admin,
    project_allows,
    require,
    require_instance_admin,
    require_project,
)
from oore.domain.setup import RuntimeMode
from oore.domain.text import MAX_NAME_CHARS, MAX_TEXT_CHARS, name_problem, text_problem
from oore.domain.users import Role, Session, User, UserStatus
from oore.errors import Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge
from oore.services.access import Access, ProjectAccess
from oore.services.clock import WallClock
from oore.services.git import git
from oore.services.identity import AuditSink
from oore.services.metrics import ServiceMetrics
from oore.store import AuditEntry, Store
from oore.store.pipelines import NewPipeline, PipelineChanges
from oore.store.projects import Deletion, Member, NewProject, ProjectChanges, ProjectFilter

DEFAULT_CONFIG_PATH = ".oore.yaml"
SOURCE_CHANGED = "canceled: the project's source repository changed"
DEFAULT_TRIGGER: dict[str, Any] = {"events": [], "branches": []}
DEFAULT_CONCURRENCY: dict[str, Any] = {"cancel_previous": False, "max_concurrent": None}


@dataclass(frozen=True)
class ProjectQuery:
    """``GET /v1/projects``; ``limit`` None means no limit."""

    limit: int | None = 50
    offset: int = 0
    search: str | None = None
    integration_id: str | None = None
    sort: str = "created_at"
    descending: bool = True


@dataclass(frozen=True)
class ProjectInput:
    """``POST /v1/projects``: exactly one of ``repository_id`` and ``local_repository_path``."""

    name: str
    description: str | None = None
    repository_id: str | None = None
    local_repository_path: str | None = None
    default_branch: str | None = None


@dataclass(frozen=True)
class ProjectPatch:
    """``PATCH /v1/projects/{id}``: None leaves a field unchanged."""

    name: str | None = None
    description: str | None = None
    repository_id: str | None = None
    default_branch: str | None = None
    settings: dict[str, Any] | None = None


@dataclass(frozen=True)
class ProjectDetail:
    project: Project
    role: ProjectRole
    pipeline_count: int
    build_count: int


@dataclass(frozen=True)
class PipelineQuery:
    """``GET /v1/projects/{id}/pipelines``; ``limit`` None means no limit."""

    limit: int | None = 50
    offset: int = 0
    search: str | None = None
    sort: str = "created_at"
    descending: bool = True


@dataclass(frozen=True)
class PipelineInput:
    """Pipeline fields as received (create, patch, validate); None = absent.

    The config parts are raw JSON, checked by :mod:`oore.domain.pipeline_config`.
    """

    name: str | None = None
    config_path: str | None = None
    config_path_explicit: bool | None = None
    execution_config: Any = None
    trigger_config: Any = None
    concurrency: Any = None
    runner_labels: Any = None
    enabled: bool | None = None


@dataclass(frozen=True)
class PipelineView:
    """A pipeline as one caller may see it: env values hidden without ManagePipelines."""

    pipeline: Pipeline
    redact_env: bool
    build_count: int | None = None

    def to_json(self) -> dict[str, Any]:
        return self.pipeline.to_json(redact_env=self.redact_env)


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


# A local repository path is handed to the file system and to git.
MAX_PATH_CHARS = 4096


def _check_text(
    label: str, value: str | None, *, multiline: bool = False, max_chars: int | None = None
) -> None:
    """400 ``invalid_input`` when ``value`` is too long or holds characters no name may."""
    if value is None:
        return
    if multiline:
        problem = text_problem(value, max_chars=max_chars or MAX_TEXT_CHARS)
    else:
        problem = name_problem(value, max_chars=max_chars or MAX_NAME_CHARS)
    if problem is not None:
        raise InvalidInput("invalid_input", f"{label} {problem}")


def _check_project_text(req: ProjectInput | ProjectPatch) -> None:
    _check_text("Project name", req.name)
    _check_text("Project description", req.description, multiline=True)
    _check_text("default_branch", req.default_branch)
    if isinstance(req, ProjectInput):
        _check_text("local_repository_path", req.local_repository_path, max_chars=MAX_PATH_CHARS)


T = TypeVar("T")


def _problems(code: str, problems: list[str]) -> InvalidInput:
    return InvalidInput(code, "; ".join(problems) or "Invalid value")


def _checked(parse: Callable[[object], tuple[T | None, list[str]]], data: object, code: str) -> T:
    """``parse(data)``'s value, or 400 ``code`` listing every problem it found."""
    parsed, problems = parse(data)
    if parsed is None or problems:
        raise _problems(code, problems)
    return parsed


# Rounds of "purge the artifacts, then delete the rows" before a delete gives up: only
# builds created and finished while the artifacts were being purged need a second one.
DELETE_ROUNDS = 3


class ArtifactPurge(Protocol):
    """Deletes the artifacts (objects, then rows) of a project or of one of its pipelines."""

    async def purge(self, project_id: str, *, pipeline_id: str | None = None) -> int: ...


class Projects:
    """Use cases of the Projects and Pipelines API groups (contract §2.5, §2.6)."""

    def __init__(
        self,
        store: Store,
        clock: WallClock,
        audit: AuditSink,
        access: Access,
        artifacts: ArtifactPurge,
        metrics: ServiceMetrics,
        *,
        access_changed: Callable[[], None],
    ) -> None:
        self._metrics = metrics
        self._access_changed = access_changed  # a member's access may have ended
        self._store = store
        self._clock = clock
        self._audit = audit
        self._access = access
        self._artifacts = artifacts
        self._yaml_parsing = trio.CapacityLimiter(1)

    async def _delete_rows(
        self, delete: Callable[[], Awaitable[Deletion]], purge: Callable[[], Awaitable[int]]
    ) -> bool:
        """Delete the rows once no artifact is left, purging the artifacts in between; False
        when the rows were not there. 409 ``active_builds`` while a build is unfinished
        (checked before any object is touched), 500 ``storage_error`` from the purge."""
        for _ in range(DELETE_ROUNDS):
            outcome = await delete()
            if outcome is not Deletion.ARTIFACTS_LEFT:
                return outcome is Deletion.DELETED
            await purge()
        raise Conflict("active_builds", "New builds keep adding artifacts; try again later")

    async def _record(
        self,
        session: Session,
        action: str,
        resource_type: str,
        resource_id: str,
        details: dict[str, Any] | None,
        now: int,
    ) -> None:
        await self._audit.submit_one(
            AuditEntry.by(
                session.user, action, resource_type, resource_id, details=details, created_at=now
            )
        )

    # -- projects ------------------------------------------------------------------------

    async def page(self, session: Session, query: ProjectQuery) -> tuple[list[ProjectAccess], int]:
        """Projects the caller may see, each with the caller's role on it."""
        user = session.user
        require(user.role, Resource.PROJECTS, Action.READ)
        integration: uuid.UUID | None = None
        if query.integration_id is not None:
            try:
                integration = uuid.UUID(query.integration_id)
            except ValueError:
                return [], 0  # not an id, so no integration owns a project
        admin = is_instance_admin(user.role)
        rows, total = await self._store.projects.page(
            ProjectFilter(
                search=query.search,
                member_of=None if admin else user.id,
                integration_id=integration,
            ),
            viewer=user.id,
            sort=query.sort,
            descending=query.descending,
            limit=query.limit,
            offset=query.offset,
        )
        listed = [
            ProjectAccess(
                row.project,
                require_project(
                    effective_project_role(
                        user.role, row.membership, via_api_token=session.via_api_token
                    ),
                    ProjectPermission.READ,
                ),
            )
            for row in rows
        ]
        return listed, total

    async def create(self, session: Session, req: ProjectInput) -> ProjectAccess:
        """``POST /v1/projects`` (owner/admin); no membership row: admins are implicit."""
        user = session.user
        require_instance_admin(user.role)
        require(user.role, Resource.PROJECTS, Action.WRITE)
        if (req.repository_id is None) == (req.local_repository_path is None):
            raise InvalidInput(
                "invalid_input", "Give exactly one of repository_id and local_repository_path"
            )
        if _blank(req.name):
            raise InvalidInput("invalid_input", "Project name must not be blank")
        _check_project_text(req)
        now = self._clock.now()
        if req.repository_id is not None:
            repository = await self._attachable(req.repository_id)
        else:
            assert req.local_repository_path is not None
            require(user.role, Resource.INTEGRATIONS, Action.WRITE)
            await self._require_local_mode()
            repository = await self._local_repository(req.local_repository_path, now)
        branch = None if _blank(req.default_branch) else req.default_branch
        project = await self._store.projects.create(
            NewProject(
                name=req.name.strip(),
                description=None if _blank(req.description) else req.description,
                repository_id=repository.id,
                default_branch=(branch or repository.default_branch),
                created_by=user.id,
                now=now,
            )
        )
        await self._record(
            session,
            "project_created",
            "project",
            project.id,
            {"name": project.name, "repository_id": repository.id},
            now,
        )
        return ProjectAccess(project, ProjectRole.MAINTAINER)

    async def _require_local_mode(self) -> None:
        prefs = await self._store.instance.preferences()
        if prefs.runtime_mode is not RuntimeMode.LOCAL:
            raise Forbidden("mode_restricted", "Local repositories need the local runtime mode")

    async def _attachable(self, repository_id: str) -> Repository:
        repository = await self._store.projects.repository(repository_id)
        if repository is None:
            raise InvalidInput("invalid_repository", "Repository not found")
        if repository.provider is RepositoryProvider.LOCAL_GIT:
            await self._require_local_mode()
        return repository

    async def _local_repository(self, path: str, now: int) -> Repository:
        """The ``local_git`` repository of a work tree or bare repo, created on first use."""
        if not os.path.isabs(path) or not await trio.Path(path).is_dir():
            raise InvalidInput(
                "invalid_input", "local_repository_path must be an absolute, existing directory"
            )
        canonical = await trio.to_thread.run_sync(os.path.realpath, path)
        probe = await git(canonical, "rev-parse", "--is-bare-repository", "--is-inside-work-tree")
        answers = probe.stdout.decode(errors="replace").split()
        bare = answers[:1] == ["true"]
        if probe.returncode != 0 or not (bare or answers[1:2] == ["true"]):
            raise InvalidInput("invalid_repository", "The path is not a git repository")
        if not bare:
            top = await git(canonical, "rev-parse", "--show-toplevel")
            root = top.stdout.decode(errors="replace").strip()
            if top.returncode != 0 or root != canonical:
                raise InvalidInput(
                    "invalid_repository", "The path is inside a git work tree, not its root"
                )
        head = await git(canonical, "symbolic-ref", "--quiet", "--short", "HEAD")
        branch = head.stdout.decode(errors="replace").strip() if head.returncode == 0 else None
        name = os.path.basename(canonical.rstrip(os.sep)) or canonical
        repository = await self._store.projects.local_repository(
            local_path=canonical, full_name=name, default_branch=branch or None, now=now
        )
        # The repository is listed under a local_git integration (one per canonical path).
        await self._store.integrations.local_integration(
            repository_id=repository.id, local_path=canonical, name=name, now=now
        )
        return repository

    async def detail(self, session: Session, project_id: str) -> ProjectDetail:
        """``GET /v1/projects/{id}`` with pipeline and build counts."""
        found = await self._access.project(session, project_id, ProjectPermission.READ)
        pipelines, builds = await self._store.projects.counts(found.project.id)
        return ProjectDetail(found.project, found.role, pipelines, builds)

    async def update(self, session: Session, project_id: str, patch: ProjectPatch) -> ProjectAccess:
        """``PATCH /v1/projects/{id}``; a new source cancels the project's waiting builds."""
        found = await self._access.project(session, project_id, ProjectPermission.WRITE)
        project = found.project
        if patch.name is not None and not patch.name.strip():
            raise InvalidInput("invalid_input", "Project name must not be blank")
        _check_project_text(patch)
        current_source = project.repository.id if project.repository else None
        new_source = None
        if patch.repository_id is not None and patch.repository_id != current_source:
            require_instance_admin(session.user.role)
            new_source = (await self._attachable(patch.repository_id)).id
        changes = ProjectChanges(
            name=None if patch.name is None else patch.name.strip(),
            description=patch.description,
            repository_id=new_source,
            default_branch=None if _blank(patch.default_branch) else patch.default_branch,
            settings=patch.settings,
        )
        if changes == ProjectChanges():
            return found
        now = self._clock.now()
        updated = await self._store.projects.update(
            project.id, changes, cancel_reason=SOURCE_CHANGED, now=now
        )
        if updated is None:
            raise NotFound("not_found", "Project not found")
        project, canceled = updated
        self._metrics.builds_canceled(canceled)
        fields = [
            name
            for name in ("name", "description", "default_branch", "settings")
            if getattr(changes, name) is not None
        ]
        if fields:
            await self._record(
                session, "project_updated", "project", project.id, {"fields": fields}, now
            )
        if new_source is not None:
            before = found.project.repository
            details = {
                "previous_repository_id": current_source,
                "previous_repository_full_name": None if before is None else before.full_name,
                "repository_id": new_source,
                "repository_full_name": None
                if project.repository is None
                else project.repository.full_name,
                "updated_by": session.user.email,
                "canceled_builds": canceled,
            }
            await self._record(
                session, "project_source_link_updated", "project", project.id, details, now
            )
        return ProjectAccess(project, found.role)

    async def delete(self, session: Session, project_id: str) -> None:
        """``DELETE /v1/projects/{id}``: 409 ``active_builds`` while a build is unfinished.

        Every artifact object is deleted first, then the rows (§2.5); when storage fails
        (500 ``storage_error``) the project stays, and deleting it again finishes the job.
        """
        found = await self._access.project(session, project_id, ProjectPermission.DELETE)
        pid = found.project.id
        if not await self._delete_rows(
            partial(self._store.projects.delete, pid), partial(self._artifacts.purge, pid)
        ):
            raise NotFound("not_found", "Project not found")
        self._access_changed()
        await self._record(
            session,
            "project_deleted",
            "project",
            found.project.id,
            {"name": found.project.name},
            self._clock.now(),
        )

    # -- members ---------------------------------------------------------------------------

    async def members(self, session: Session, project_id: str) -> list[Member]:
        """The membership rows; like every members route, this needs ManageMembers (§2.5)."""
        found = await self._access.project(session, project_id, ProjectPermission.MANAGE_MEMBERS)
        return await self._store.projects.members(found.project.id)

    async def member_candidates(self, session: Session, project_id: str) -> list[User]:
        """Users who could be added: developers and qa_viewers, active or invited."""
        found = await self._access.project(session, project_id, ProjectPermission.MANAGE_MEMBERS)
        return await self._store.projects.candidates(found.project.id)

    async def add_member(
        self, session: Session, project_id: str, user_id: str, role: str
    ) -> Member:
        """Add a member; 400 ``invalid_user``/``invalid_project_role``, 409 ``already_member``."""
        found = await self._access.project(session, project_id, ProjectPermission.MANAGE_MEMBERS)
        project_role = _project_role(role)
        target = await self._store.projects.user(user_id)
        if target is None or target.status not in (UserStatus.ACTIVE, UserStatus.INVITED):
            raise InvalidInput("invalid_user", "The user does not exist or is disabled")
        if is_instance_admin(target.role):
            raise InvalidInput(
                "invalid_user", "Owners and admins are maintainers of every project already"
            )
        _check_role_fits(target.role, project_role)
        now = self._clock.now()
        member = await self._store.projects.add_member(
            found.project.id, target.id, project_role, now
        )
        await self._record(
            session,
            "project_member_added",
            "project",
            found.project.id,
            {
                "added_user_id": target.id,
                "role": project_role.value,
                "added_by": session.user.email,
            },
            now,
        )
        return member

    async def set_member_role(
        self, session: Session, project_id: str, user_id: str, role: str
    ) -> Member:
        """Change a member's role; 404 if not a member, 409 ``last_maintainer``."""
        found = await self._access.project(session, project_id, ProjectPermission.MANAGE_MEMBERS)
        project_role = _project_role(role)
        current = await self._store.projects.member(found.project.id, user_id)
        if current is None:
            raise NotFound("not_found", "Member not found")
        _check_role_fits(current.user_role, project_role)
        member = await self._store.projects.set_member_role(
            found.project.id, current.user_id, project_role
        )
        if member is None:
            raise NotFound("not_found", "Member not found")
        self._access_changed()
        await self._record(
            session,
            "project_member_updated",
            "project",
            found.project.id,
            {
                "target_user_id": member.user_id,
                "previous_role": current.role.value,
                "new_role": project_role.value,
                "updated_by": session.user.email,
            },
            self._clock.now(),
        )
        return member

    async def remove_member(self, session: Session, project_id: str, user_id: str) -> None:
        """Remove a member; 404 if not a member, 409 ``last_maintainer``."""
        found = await self._access.project(session, project_id, ProjectPermission.MANAGE_MEMBERS)
        if not await self._store.projects.remove_member(found.project.id, user_id):
            raise NotFound("not_found", "Member not found")
        self._access_changed()
        await self._record(
            session,
            "project_member_removed",
            "project",
            found.project.id,
            {"removed_user_id": user_id, "removed_by": session.user.email},
            self._clock.now(),
        )

    # -- pipelines -------------------------------------------------------------------------

    async def pipeline(self, pipeline_id: str) -> Pipeline | None:
        """The pipeline with this id, without any access check (for other services)."""
        return await self._store.pipelines.get(pipeline_id)

    async def pipelines(
        self, session: Session, project_id: str, query: PipelineQuery
    ) -> tuple[list[PipelineView], int]:
        found = await self._access.project(session, project_id, ProjectPermission.READ)
        redact = not project_allows(found.role, ProjectPermission.MANAGE_PIPELINES)
        rows, total = await self._store.pipelines.page(
            found.project.id,
            search=query.search,
            sort=query.sort,
            descending=query.descending,
            limit=query.limit,
            offset=query.offset,
        )
        return [PipelineView(row, redact) for row in rows], total

    async def pipeline_detail(self, session: Session, pipeline_id: str) -> PipelineView:
        """``GET /v1/pipelines/{id}``: the pipeline (redacted for viewers) and its build count."""
        pipeline, found = await self._access.pipeline(session, pipeline_id, ProjectPermission.READ)
        redact = not project_allows(found.role, ProjectPermission.MANAGE_PIPELINES)
        count = await self._store.pipelines.build_count(pipeline.id)
        return PipelineView(pipeline, redact, count)

    async def create_pipeline(
        self, session: Session, project_id: str, req: PipelineInput
    ) -> Pipeline:
        """``POST /v1/projects/{id}/pipelines`` with the contract's defaults (§2.6)."""
        if _blank(req.name):
            raise InvalidInput("invalid_input", "Pipeline name must not be blank")
        assert req.name is not None
        _check_text("Pipeline name", req.name)
        found = await self._access.project(session, project_id, ProjectPermission.MANAGE_PIPELINES)
        trigger = _trigger(req.trigger_config, found.project) or dict(DEFAULT_TRIGGER)
        concurrency = _concurrency(req.concurrency) or dict(DEFAULT_CONCURRENCY)
        explicit = bool(req.config_path_explicit)
        if req.config_path is None and explicit:
            raise InvalidInput("invalid_config_path", "config_path_explicit needs a config_path")
        config_path = _config_path(req.config_path) or DEFAULT_CONFIG_PATH
        execution = _execution(req.execution_config)
        if execution is None:
            execution = pipeline_config.default_execution_config().to_json()
        labels = _labels(req.runner_labels) or ()
        now = self._clock.now()
        pipeline = await self._store.pipelines.create(
            NewPipeline(
                project_id=found.project.id,
                name=req.name.strip(),
                config_path=config_path,
                config_path_explicit=explicit,
                execution_config=execution,
                trigger_config=trigger,
                concurrency=concurrency,
                runner_labels=labels,
                now=now,
            )
        )
        await self._record(
            session, "pipeline_created", "pipeline", pipeline.id, {"name": pipeline.name}, now
        )
        return pipeline

    async def update_pipeline(
        self, session: Session, pipeline_id: str, req: PipelineInput
    ) -> Pipeline:
        """``PATCH /v1/pipelines/{id}``; absent fields stay as they are."""
        if req.name is not None and not req.name.strip():
            raise InvalidInput("invalid_input", "Pipeline name must not be blank")
        _check_text("Pipeline name", req.name)
        pipeline, found = await self._access.pipeline(
            session, pipeline_id, ProjectPermission.MANAGE_PIPELINES
        )
        changes = PipelineChanges(
            name=None if req.name is None else req.name.strip(),
            trigger_config=_trigger(req.trigger_config, found.project),
            concurrency=_concurrency(req.concurrency),
            config_path=_config_path(req.config_path),
            config_path_explicit=req.config_path_explicit,
            execution_config=_execution(req.execution_config),
            runner_labels=_labels(req.runner_labels),
            enabled=req.enabled,
        )
        if changes == PipelineChanges():
            return pipeline
        now = self._clock.now()
        updated = await self._store.pipelines.update(pipeline.id, changes, now)
        if updated is None:
            raise NotFound("not_found", "Pipeline not found")
        fields = [name for name, value in vars(changes).items() if value is not None]
        await self._record(
            session, "pipeline_updated", "pipeline", updated.id, {"fields": fields}, now
        )
        return updated

    async def delete_pipeline(self, session: Session, pipeline_id: str) -> None:
        """``DELETE /v1/pipelines/{id}``: owner/admin only; 409 ``active_builds``. The
        artifacts of its builds go first, objects then rows, as for a project."""
        require(session.user.role, Resource.PIPELINES, Action.DELETE)
        pipeline, _ = await self._access.pipeline(session, pipeline_id, ProjectPermission.READ)
        if not await self._delete_rows(
            partial(self._store.pipelines.delete, pipeline.id),
            partial(self._artifacts.purge, pipeline.project_id, pipeline_id=pipeline.id),
        ):
            raise NotFound("not_found", "Pipeline not found")
        await self._record(
            session,
            "pipeline_deleted",
            "pipeline",
            pipeline.id,
            {"name": pipeline.name, "project_id": pipeline.project_id},
            self._clock.now(),
        )

    async def validate_pipeline(self, session: Session, fields: Mapping[str, Any]) -> list[str]:
        """``POST /v1/pipelines/validate``: every problem found in the raw fields, none = valid.

        Null fields count as absent; the local-git "manual only" rule is not applied here.
        """
        require(session.user.role, Resource.PIPELINES, Action.READ)
        problems: list[str] = []
        if fields.get("trigger_config") is not None:
            problems += pipeline_config.parse_trigger_config(fields["trigger_config"])[1]
        if fields.get("concurrency") is not None:
            problems += pipeline_config.parse_concurrency(fields["concurrency"])[1]
        path, explicit = fields.get("config_path"), fields.get("config_path_explicit")
        if path is not None:
            found = (
                pipeline_config.validate_config_path(path)
                if isinstance(path, str)
                else "config_path must be a string"
            )
            if found is not None:
                problems.append(found)
        if explicit is not None and not isinstance(explicit, bool):
            problems.append("config_path_explicit must be a boolean")
        elif explicit and path is None:
            problems.append("config_path_explicit needs a config_path")
        if fields.get("execution_config") is not None:
            problems += pipeline_config.parse_execution_config(fields["execution_config"])[1]
        if fields.get("runner_labels") is not None:
            problems += pipeline_config.parse_runner_labels(fields["runner_labels"])[1]
        text = fields.get("repository_yaml")
        if text is not None:
            if isinstance(text, str):
                problems += await self._parse_repository_yaml(text)
            else:
                problems.append("repository_yaml must be a string")
        return problems

    async def _parse_repository_yaml(self, text: str) -> list[str]:
        """The file's problems; 413 ``payload_too_large`` over the size bound. YAML parsing
        is pure-Python CPU work: it runs on a worker thread, one file at a time."""
        size = pipeline_config.repository_yaml_size(text)
        if size > pipeline_config.MAX_REPOSITORY_YAML_BYTES:
            raise PayloadTooLarge(
                message="repository_yaml is too large",
                details=pipeline_config.repository_yaml_too_large(size),
            )
        _, problems = await trio.to_thread.run_sync(
            pipeline_config.parse_repository_yaml, text, limiter=self._yaml_parsing
        )
        return problems


def _project_role(value: str) -> ProjectRole:
    try:
        return ProjectRole(value)
    except ValueError:
        raise InvalidInput(
            "invalid_project_role", "role must be one of: maintainer, developer, viewer"
        ) from None


def _check_role_fits(user_role: Role, project_role: ProjectRole) -> None:
    if user_role is Role.QA_VIEWER and project_role is not ProjectRole.VIEWER:
        raise InvalidInput("invalid_project_role", "A qa_viewer can only be a project viewer")


def _trigger(data: Any, project: Project) -> dict[str, Any] | None:
    """The checked trigger config as JSON, or None when absent; 400 ``invalid_trigger_config``."""
    if data is None:
        return None
    parsed = _checked(pipeline_config.parse_trigger_config, data, "invalid_trigger_config")
    body: dict[str, Any] = parsed.to_json()
    local = project.repository is not None and (
        project.repository.provider is RepositoryProvider.LOCAL_GIT
    )
    if local and (body.get("events") or body.get("branches")):
        raise InvalidInput(
            "invalid_trigger_config",
            "Pipelines of local repositories are triggered manually: events and branches "
            "must be empty",
        )
    return body


def _concurrency(data: Any) -> dict[str, Any] | None:
    if data is None:
        return None
    body: dict[str, Any] = _checked(
        pipeline_config.parse_concurrency, data, "invalid_concurrency"
    ).to_json()
    return body


def _config_path(path: str | None) -> str | None:
    if path is None:
        return None
    problem = pipeline_config.validate_config_path(path)
    if problem is not None:
        raise InvalidInput("invalid_config_path", problem)
    return path


def _execution(data: Any) -> dict[str, Any] | None:
    if data is None:
        return None
    body: dict[str, Any] = _checked(
        pipeline_config.parse_execution_config, data, "invalid_execution_config"
    ).to_json()
    return body


def _labels(data: Any) -> tuple[str, ...] | None:
    if data is None:
        return None
    return _checked(pipeline_config.parse_runner_labels, data, "invalid_runner_labels")
