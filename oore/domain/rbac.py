"""Who may do what: the instance policy matrix and project roles (contract §1)."""

from __future__ import annotations

from enum import StrEnum

from oore.domain.users import Role
from oore.errors import Forbidden, NotFound


class Resource(StrEnum):
    INSTANCE_SETTINGS = "instance_settings"
    USERS = "users"
    PROJECTS = "projects"
    PIPELINES = "pipelines"
    BUILDS = "builds"
    ARTIFACTS = "artifacts"
    RUNNERS = "runners"
    INTEGRATIONS = "integrations"
    AUDIT_LOGS = "audit_logs"
    API_TOKENS = "api_tokens"


class Action(StrEnum):
    READ = "read"
    WRITE = "write"
    DELETE = "delete"
    CANCEL = "cancel"
    INVITE = "invite"
    ENABLE = "enable"


_ADMIN: dict[Resource, frozenset[Action]] = {
    Resource.INSTANCE_SETTINGS: frozenset({Action.READ, Action.WRITE}),
    Resource.USERS: frozenset(
        {Action.READ, Action.WRITE, Action.INVITE, Action.DELETE, Action.ENABLE}
    ),
    Resource.PROJECTS: frozenset({Action.READ, Action.WRITE, Action.DELETE}),
    Resource.PIPELINES: frozenset({Action.READ, Action.WRITE, Action.DELETE}),
    Resource.BUILDS: frozenset({Action.READ, Action.WRITE, Action.CANCEL}),
    Resource.ARTIFACTS: frozenset({Action.READ, Action.WRITE, Action.DELETE}),
    Resource.RUNNERS: frozenset({Action.READ, Action.WRITE, Action.DELETE}),
    Resource.INTEGRATIONS: frozenset({Action.READ, Action.WRITE, Action.DELETE}),
    Resource.AUDIT_LOGS: frozenset({Action.READ}),
    Resource.API_TOKENS: frozenset({Action.READ, Action.WRITE, Action.DELETE}),
}

_DEVELOPER: dict[Resource, frozenset[Action]] = {
    Resource.PROJECTS: frozenset({Action.READ}),
    Resource.PIPELINES: frozenset({Action.READ, Action.WRITE}),
    Resource.BUILDS: frozenset({Action.READ, Action.WRITE, Action.CANCEL}),
    Resource.ARTIFACTS: frozenset({Action.READ, Action.WRITE}),
    Resource.RUNNERS: frozenset({Action.READ}),
    Resource.INTEGRATIONS: frozenset({Action.READ}),
    Resource.API_TOKENS: frozenset({Action.READ, Action.WRITE, Action.DELETE}),
}

_QA_VIEWER: dict[Resource, frozenset[Action]] = {
    Resource.PROJECTS: frozenset({Action.READ}),
    Resource.PIPELINES: frozenset({Action.READ}),
    Resource.BUILDS: frozenset({Action.READ}),
    Resource.ARTIFACTS: frozenset({Action.READ}),
    Resource.INTEGRATIONS: frozenset({Action.READ}),
}

POLICY: dict[Role, dict[Resource, frozenset[Action]]] = {
    Role.OWNER: _ADMIN,
    Role.ADMIN: _ADMIN,
    Role.DEVELOPER: _DEVELOPER,
    Role.QA_VIEWER: _QA_VIEWER,
}


def allowed(role: Role, resource: Resource, action: Action) -> bool:
    """The instance policy matrix of contract §1.1."""
    return action in POLICY[role].get(resource, frozenset())


def require(role: Role, resource: Resource, action: Action) -> None:
    """403 ``permission_denied`` unless the matrix allows it."""
    if not allowed(role, resource, action):
        raise Forbidden("permission_denied", f"Permission denied: {resource}:{action}")


def is_instance_admin(role: Role) -> bool:
    return role in (Role.OWNER, Role.ADMIN)


def require_instance_admin(role: Role) -> None:
    """403 ``insufficient_role`` unless owner or admin (the explicit role gates)."""
    if not is_instance_admin(role):
        raise Forbidden("insufficient_role", "This needs the owner or admin role")


class ProjectRole(StrEnum):
    MAINTAINER = "maintainer"
    DEVELOPER = "developer"
    VIEWER = "viewer"


class ProjectPermission(StrEnum):
    READ = "read"
    WRITE = "write"
    DELETE = "delete"
    MANAGE_MEMBERS = "manage_members"
    MANAGE_PIPELINES = "manage_pipelines"
    TRIGGER_BUILD = "trigger_build"
    CANCEL_BUILD = "cancel_build"
    READ_ARTIFACTS = "read_artifacts"
    WRITE_ARTIFACTS = "write_artifacts"
    DELETE_ARTIFACTS = "delete_artifacts"
    MANAGE_VARIABLES = "manage_variables"  # project and pipeline variables and secrets


_PROJECT_GRANTS: dict[ProjectRole, frozenset[ProjectPermission]] = {
    ProjectRole.MAINTAINER: frozenset(ProjectPermission),
    ProjectRole.DEVELOPER: frozenset(
        {
            ProjectPermission.READ,
            ProjectPermission.MANAGE_PIPELINES,
            ProjectPermission.TRIGGER_BUILD,
            ProjectPermission.CANCEL_BUILD,
            ProjectPermission.READ_ARTIFACTS,
            ProjectPermission.WRITE_ARTIFACTS,
        }
    ),
    ProjectRole.VIEWER: frozenset({ProjectPermission.READ, ProjectPermission.READ_ARTIFACTS}),
}

_ORDER = [ProjectRole.VIEWER, ProjectRole.DEVELOPER, ProjectRole.MAINTAINER]


def effective_project_role(
    instance_role: Role, membership: ProjectRole | None, *, via_api_token: bool = False
) -> ProjectRole | None:
    """The caller's role on one project (§1.2), or None when they may not see it at all.

    Owner/admin are implicit maintainers. A qa_viewer's membership counts as viewer; with an
    API token, membership is capped at developer (instance developers) or viewer.
    """
    if is_instance_admin(instance_role):
        return ProjectRole.MAINTAINER
    if membership is None:
        return None
    if instance_role is Role.QA_VIEWER:
        return ProjectRole.VIEWER
    if via_api_token:
        cap = ProjectRole.DEVELOPER if instance_role is Role.DEVELOPER else ProjectRole.VIEWER
        return min(membership, cap, key=_ORDER.index)
    return membership


def require_project(role: ProjectRole | None, permission: ProjectPermission) -> ProjectRole:
    """404 ``not_found`` without any role (hides existence), 403 without the permission."""
    if role is None:
        raise NotFound("not_found", "Project not found")
    if permission not in _PROJECT_GRANTS[role]:
        raise Forbidden("permission_denied", f"Permission denied: project {permission}")
    return role


def project_allows(role: ProjectRole | None, permission: ProjectPermission) -> bool:
    return role is not None and permission in _PROJECT_GRANTS[role]
