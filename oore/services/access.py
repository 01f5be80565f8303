"""One place that decides whether a session may act on a project (contract §1)."""

from __future__ import annotations

from dataclasses import dataclass

from oore.domain.projects import Pipeline, Project
from oore.domain.rbac import (
    ProjectPermission,
    ProjectRole,
    effective_project_role,
    is_instance_admin,
    require_project,
)
from oore.domain.users import Session
from oore.errors import NotFound
from oore.store import Store


@dataclass(frozen=True)
class ProjectAccess:
    project: Project
    role: ProjectRole


class Access:
    """Resolves the caller's role on a project and enforces one permission."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def role_on(self, session: Session, project_id: str) -> ProjectRole | None:
        """The caller's effective project role, or None when they have no access."""
        user = session.user
        via_token = session.via_api_token
        if is_instance_admin(user.role):
            return effective_project_role(user.role, None, via_api_token=via_token)
        membership = await self._store.projects.membership(project_id, user.id)
        return effective_project_role(user.role, membership, via_api_token=via_token)

    async def readable_projects(self, session: Session) -> frozenset[str] | None:
        """The ids of the projects whose builds the caller may read; None: every project."""
        if is_instance_admin(session.user.role):
            return None
        # Any membership reads (effective_project_role never maps one to no access).
        return await self._store.projects.member_of(session.user.id)

    async def project(
        self, session: Session, project_id: str, permission: ProjectPermission
    ) -> ProjectAccess:
        """The project and the caller's role on it: 404 if unknown or hidden, 403 if denied."""
        project = await self._store.projects.get(project_id)
        if project is None:
            raise NotFound("not_found", "Project not found")
        role = require_project(await self.role_on(session, project_id), permission)
        return ProjectAccess(project, role)

    async def pipeline(
        self, session: Session, pipeline_id: str, permission: ProjectPermission
    ) -> tuple[Pipeline, ProjectAccess]:
        """The pipeline and the caller's access to its project: 404 ``Pipeline not found``
        if it is unknown or its project hidden, 403 if the permission is denied."""
        pipeline = await self._store.pipelines.get(pipeline_id)
        if pipeline is None:
            raise NotFound("not_found", "Pipeline not found")
        try:
            found = await self.project(session, pipeline.project_id, permission)
        except NotFound:
            raise NotFound("not_found", "Pipeline not found") from None
        return pipeline, found
