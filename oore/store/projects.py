"""SQL for projects, their source repositories and project members."""

from __future__ import annotations

import uuid
from typing import Any

from oore.domain.projects import Project, Repository, RepositoryProvider
from oore.domain.rbac import ProjectRole
from oore.store.database import Connection, Database

PROJECT_COLUMNS = """p.id, p.name, p.description, p.default_branch, p.settings, p.created_by,
    p.created_at, p.updated_at, r.id AS r_id, r.provider AS r_provider,
    r.full_name AS r_full_name, r.host_url AS r_host_url, r.local_path AS r_local_path,
    r.default_branch AS r_default_branch"""
PROJECT_FROM = "projects p LEFT JOIN repositories r ON r.id = p.repository_id"


def repository_from_row(row: Any, prefix: str = "r_") -> Repository | None:
    if row[prefix + "id"] is None:
        return None
    return Repository(
        id=str(row[prefix + "id"]),
        provider=RepositoryProvider(row[prefix + "provider"]),
        full_name=row[prefix + "full_name"],
        host_url=row[prefix + "host_url"],
        local_path=row[prefix + "local_path"],
        default_branch=row[prefix + "default_branch"],
    )


def project_from_row(row: Any) -> Project:
    return Project(
        id=str(row["id"]),
        name=row["name"],
        description=row["description"],
        repository=repository_from_row(row),
        default_branch=row["default_branch"],
        settings=row["settings"],
        created_by=str(row["created_by"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def as_uuid(value: str) -> uuid.UUID | None:
    """A path id as a UUID, or None when it is not one (the caller answers 404)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def _get(conn: Connection, project_id: uuid.UUID) -> Project | None:
    row = await conn.fetchrow(
        f"SELECT {PROJECT_COLUMNS} FROM {PROJECT_FROM} WHERE p.id = $1", project_id
    )
    return None if row is None else project_from_row(row)


async def _membership(conn: Connection, project_id: uuid.UUID, user_id: str) -> ProjectRole | None:
    role = await conn.fetchval(
        "SELECT role FROM project_members WHERE project_id = $1 AND user_id = $2",
        project_id,
        user_id,
    )
    return None if role is None else ProjectRole(role)


class ProjectStore:
    """Projects, repositories and memberships."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, project_id: str) -> Project | None:
        key = as_uuid(project_id)
        return None if key is None else await self._db.run(_get, key)

    async def membership(self, project_id: str, user_id: str) -> ProjectRole | None:
        """The user's membership row on the project, if any."""
        key = as_uuid(project_id)
        return None if key is None else await self._db.run(_membership, key, user_id)
