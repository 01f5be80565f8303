"""SQL for projects, their source repositories and project members."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from oore.domain.ids import new_id
from oore.domain.projects import Project, Repository, RepositoryProvider
from oore.domain.rbac import ProjectRole
from oore.domain.users import Role, User
from oore.errors import Conflict
from oore.store.database import Connection, Database
from oore.store.users import user_from_row

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


async def _member_of(conn: Connection, user_id: uuid.UUID) -> frozenset[str]:
    rows = await conn.fetch("SELECT project_id FROM project_members WHERE user_id = $1", user_id)
    return frozenset(str(row["project_id"]) for row in rows)


# -- repositories ----------------------------------------------------------------------------

REPOSITORY_COLUMNS = """id AS r_id, provider AS r_provider, full_name AS r_full_name,
    host_url AS r_host_url, local_path AS r_local_path, default_branch AS r_default_branch"""


def _repository(row: Any) -> Repository:
    found = repository_from_row(row)
    assert found is not None
    return found


async def _repository_by_id(conn: Connection, repository_id: uuid.UUID) -> Repository | None:
    row = await conn.fetchrow(
        f"SELECT {REPOSITORY_COLUMNS} FROM repositories WHERE id = $1", repository_id
    )
    return None if row is None else _repository(row)


async def _local_repository(
    conn: Connection, local_path: str, full_name: str, default_branch: str | None, now: int
) -> Repository:
    # The no-op update makes RETURNING yield the existing row when the path is known.
    row = await conn.fetchrow(
        f"""INSERT INTO repositories (id, provider, full_name, local_path, default_branch,
                                      created_at)
            VALUES ($1, 'local_git', $2, $3, $4, $5)
            ON CONFLICT (local_path) DO UPDATE SET local_path = EXCLUDED.local_path
            RETURNING {REPOSITORY_COLUMNS}""",
        new_id(),
        full_name,
        local_path,
        default_branch,
        now,
    )
    return _repository(row)


# -- projects --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewProject:
    name: str
    description: str | None
    repository_id: str | None  # None: no source repository (the API always links one)
    default_branch: str | None
    created_by: str
    now: int


@dataclass(frozen=True)
class ProjectChanges:
    """Columns to set; None leaves a column as it is (fields cannot be cleared)."""

    name: str | None = None
    description: str | None = None
    repository_id: str | None = None
    default_branch: str | None = None
    settings: dict[str, Any] | None = None


@dataclass(frozen=True)
class ProjectFilter:
    """What ``GET /v1/projects`` narrows by; ``member_of`` limits to a user's memberships."""

    search: str | None = None
    member_of: str | None = None
    integration_id: uuid.UUID | None = None


@dataclass(frozen=True)
class ProjectRow:
    """A listed project with the viewer's membership row on it, if any."""

    project: Project
    membership: ProjectRole | None


_PROJECT_SORTS = {"created_at": "p.created_at", "updated_at": "p.updated_at", "name": "p.name"}
ACTIVE_BUILD_STATUSES = ["queued", "scheduled", "assigned", "running"]


def like_pattern(text: str) -> str:
    """A case-insensitive substring pattern with LIKE wildcards in ``text`` escaped."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def _create(conn: Connection, new: NewProject) -> Project:
    project_id = new_id()
    await conn.execute(
        """INSERT INTO projects (id, name, description, repository_id, default_branch,
                                 created_by, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $7)""",
        project_id,
        new.name,
        new.description,
        new.repository_id,
        new.default_branch,
        new.created_by,
        new.now,
    )
    created = await _get(conn, uuid.UUID(project_id))
    assert created is not None
    return created


async def _page(
    conn: Connection,
    where: ProjectFilter,
    viewer: str,
    sort: str,
    descending: bool,
    limit: int | None,
    offset: int,
) -> tuple[list[ProjectRow], int]:
    args: list[Any] = [viewer]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    clauses = ["true"]
    if where.member_of is not None:
        clauses.append(
            "EXISTS (SELECT 1 FROM project_members o WHERE o.project_id = p.id"
            f" AND o.user_id = {arg(where.member_of)})"
        )
    if where.integration_id is not None:
        clauses.append(
            "EXISTS (SELECT 1 FROM repositories r JOIN integration_installations i"
            " ON i.id = r.installation_id WHERE r.id = p.repository_id"
            f" AND i.integration_id = {arg(where.integration_id)})"
        )
    if where.search is not None:
        pattern = arg(like_pattern(where.search))
        clauses.append(f"(p.name ILIKE {pattern} OR p.description ILIKE {pattern})")
    condition = " AND ".join(clauses)
    source = f"""{PROJECT_FROM}
        LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = $1"""
    total = await conn.fetchval(f"SELECT count(*) FROM {source} WHERE {condition}", *args)
    direction = "DESC" if descending else "ASC"
    rows = await conn.fetch(
        f"""SELECT {PROJECT_COLUMNS}, m.role AS m_role FROM {source} WHERE {condition}
            ORDER BY {_PROJECT_SORTS[sort]} {direction}, p.id {direction}
            LIMIT {arg(limit)} OFFSET {arg(offset)}""",
        *args,
    )
    return [
        ProjectRow(project_from_row(r), ProjectRole(r["m_role"]) if r["m_role"] else None)
        for r in rows
    ], total


async def _counts(conn: Connection, project_id: uuid.UUID) -> tuple[int, int]:
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM pipelines WHERE project_id = $1) AS pipelines,
                  (SELECT count(*) FROM builds WHERE project_id = $1) AS builds""",
        project_id,
    )
    return row["pipelines"], row["builds"]


async def _update(
    conn: Connection, project_id: uuid.UUID, changes: ProjectChanges, cancel_reason: str, now: int
) -> tuple[Project, int] | None:
    current = await conn.fetchrow(
        "SELECT repository_id FROM projects WHERE id = $1 FOR UPDATE", project_id
    )
    if current is None:
        return None
    await conn.execute(
        """UPDATE projects SET name = COALESCE($2, name),
               description = COALESCE($3, description),
               repository_id = COALESCE($4::uuid, repository_id),
               default_branch = COALESCE($5, default_branch),
               settings = COALESCE($6::jsonb, settings), updated_at = $7
           WHERE id = $1""",
        project_id,
        changes.name,
        changes.description,
        changes.repository_id,
        changes.default_branch,
        changes.settings,
        now,
    )
    canceled = 0
    new_source = changes.repository_id
    if new_source is not None and str(current["repository_id"]) != new_source:
        canceled = await _cancel_waiting(conn, project_id, cancel_reason, now)
    updated = await _get(conn, project_id)
    assert updated is not None
    return updated, canceled


async def _cancel_waiting(conn: Connection, project_id: uuid.UUID, reason: str, now: int) -> int:
    """Cancel the project's queued and scheduled builds, one event each; how many."""
    rows = await conn.fetch(
        """WITH waiting AS (
               SELECT id, status FROM builds
               WHERE project_id = $1 AND status IN ('queued', 'scheduled') FOR UPDATE)
           UPDATE builds b SET status = 'canceled', finished_at = $2, updated_at = $2,
               runner_id = NULL, signing_token_hash = NULL, lease_expires_at = NULL
           FROM waiting WHERE b.id = waiting.id
           RETURNING b.id, waiting.status AS previous""",
        project_id,
        now,
    )
    await conn.executemany(
        """INSERT INTO build_events (id, build_id, from_status, to_status, actor, reason,
                                     created_at)
           VALUES ($1, $2, $3, 'canceled', 'system', $4, $5)""",
        [(new_id(), r["id"], r["previous"], reason, now) for r in rows],
    )
    return len(rows)


class Deletion(Enum):
    """What a delete of a project or pipeline did. Rows are deleted only once no
    artifact is left, so that no object in storage outlives the row that names it."""

    DELETED = "deleted"
    NOT_FOUND = "not_found"
    ARTIFACTS_LEFT = "artifacts_left"


async def _delete(conn: Connection, project_id: uuid.UUID) -> Deletion:
    # The row lock keeps new builds out (their foreign key needs a share lock on it).
    locked = await conn.fetchval("SELECT true FROM projects WHERE id = $1 FOR UPDATE", project_id)
    if locked is None:
        return Deletion.NOT_FOUND
    active = await conn.fetchval(
        "SELECT count(*) FROM builds WHERE project_id = $1 AND status = ANY($2::text[])",
        project_id,
        ACTIVE_BUILD_STATUSES,
    )
    if active:
        raise Conflict("active_builds", f"The project has {active} unfinished build(s)")
    if await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM artifacts a JOIN builds b ON b.id = a.build_id
                          WHERE b.project_id = $1)""",
        project_id,
    ):
        return Deletion.ARTIFACTS_LEFT
    await conn.execute("DELETE FROM builds WHERE project_id = $1", project_id)
    await conn.execute("DELETE FROM projects WHERE id = $1", project_id)
    return Deletion.DELETED


# -- members ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A membership row with the user it names."""

    project_id: str
    user_id: str
    email: str
    display_name: str | None
    role: ProjectRole
    user_role: Role
    created_at: int

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "project_id": self.project_id,
            "user_id": self.user_id,
            "email": self.email,
        }
        if self.display_name:
            body["display_name"] = self.display_name
        body["role"] = self.role.value
        body["created_at"] = self.created_at
        return body


_MEMBER_SELECT = """SELECT m.project_id, m.user_id, m.role, m.created_at, u.email,
    u.display_name, u.role AS user_role
    FROM project_members m JOIN users u ON u.id = m.user_id"""


def _member(row: Any) -> Member:
    return Member(
        project_id=str(row["project_id"]),
        user_id=str(row["user_id"]),
        email=row["email"],
        display_name=row["display_name"],
        role=ProjectRole(row["role"]),
        user_role=Role(row["user_role"]),
        created_at=row["created_at"],
    )


async def _members(conn: Connection, project_id: uuid.UUID) -> list[Member]:
    rows = await conn.fetch(
        f"{_MEMBER_SELECT} WHERE m.project_id = $1 ORDER BY m.created_at, u.email", project_id
    )
    return [_member(row) for row in rows]


async def _one_member(conn: Connection, project_id: uuid.UUID, user_id: uuid.UUID) -> Member | None:
    row = await conn.fetchrow(
        f"{_MEMBER_SELECT} WHERE m.project_id = $1 AND m.user_id = $2", project_id, user_id
    )
    return None if row is None else _member(row)


async def _add_member(
    conn: Connection, project_id: uuid.UUID, user_id: uuid.UUID, role: ProjectRole, now: int
) -> Member:
    inserted = await conn.fetchval(
        """INSERT INTO project_members (project_id, user_id, role, created_at)
           VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true""",
        project_id,
        user_id,
        role.value,
        now,
    )
    if inserted is None:
        raise Conflict("already_member", "The user is already a member of this project")
    added = await _one_member(conn, project_id, user_id)
    assert added is not None
    return added


async def _other_maintainers(conn: Connection, project_id: uuid.UUID, user_id: uuid.UUID) -> int:
    # Locking every maintainer row serialises concurrent demotions and removals.
    rows = await conn.fetch(
        """SELECT user_id FROM project_members WHERE project_id = $1 AND role = 'maintainer'
           ORDER BY user_id FOR UPDATE""",
        project_id,
    )
    return sum(1 for row in rows if row["user_id"] != user_id)


async def _keep_a_maintainer(
    conn: Connection, project_id: uuid.UUID, current: Member, target: ProjectRole | None
) -> None:
    losing = current.role is ProjectRole.MAINTAINER and target is not ProjectRole.MAINTAINER
    if losing and not await _other_maintainers(conn, project_id, uuid.UUID(current.user_id)):
        raise Conflict("last_maintainer", "A project must keep at least one maintainer")


async def _set_member_role(
    conn: Connection, project_id: uuid.UUID, user_id: uuid.UUID, role: ProjectRole
) -> Member | None:
    current = await _one_member(conn, project_id, user_id)
    if current is None:
        return None
    await _keep_a_maintainer(conn, project_id, current, role)
    await conn.execute(
        "UPDATE project_members SET role = $3 WHERE project_id = $1 AND user_id = $2",
        project_id,
        user_id,
        role.value,
    )
    return replace(current, role=role)


async def _remove_member(conn: Connection, project_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    current = await _one_member(conn, project_id, user_id)
    if current is None:
        return False
    await _keep_a_maintainer(conn, project_id, current, None)
    await conn.execute(
        "DELETE FROM project_members WHERE project_id = $1 AND user_id = $2", project_id, user_id
    )
    return True


async def _user(conn: Connection, user_id: uuid.UUID) -> User | None:
    row = await conn.fetchrow("SELECT * FROM users WHERE id = $1", user_id)
    return None if row is None else user_from_row(row)


async def _candidates(conn: Connection, project_id: uuid.UUID) -> list[User]:
    rows = await conn.fetch(
        """SELECT * FROM users u
           WHERE u.role IN ('developer', 'qa_viewer') AND u.status IN ('active', 'invited')
             AND NOT EXISTS (SELECT 1 FROM project_members m
                             WHERE m.project_id = $1 AND m.user_id = u.id)
           ORDER BY u.email""",
        project_id,
    )
    return [user_from_row(row) for row in rows]


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

    async def member_of(self, user_id: str) -> frozenset[str]:
        """The ids of the projects the user is a member of, whatever the role."""
        key = as_uuid(user_id)
        return frozenset() if key is None else await self._db.run(_member_of, key)

    async def page(
        self,
        where: ProjectFilter,
        *,
        viewer: str,
        sort: str,
        descending: bool,
        limit: int | None,
        offset: int,
    ) -> tuple[list[ProjectRow], int]:
        """A page of projects (``limit`` None = all) with ``viewer``'s membership on each."""
        return await self._db.run(_page, where, viewer, sort, descending, limit, offset)

    async def create(self, new: NewProject) -> Project:
        return await self._db.run(_create, new)

    async def update(
        self, project_id: str, changes: ProjectChanges, *, cancel_reason: str, now: int
    ) -> tuple[Project, int] | None:
        """Apply ``changes``; a new source cancels queued/scheduled builds (how many returned).

        The canceled builds get an event with ``cancel_reason``.
        """
        key = as_uuid(project_id)
        if key is None:
            return None
        return await self._db.transaction(_update, key, changes, cancel_reason, now)

    async def counts(self, project_id: str) -> tuple[int, int]:
        """How many pipelines and builds the project has."""
        key = as_uuid(project_id)
        return (0, 0) if key is None else await self._db.run(_counts, key)

    async def delete(self, project_id: str) -> Deletion:
        """Delete the project and its builds; 409 ``active_builds`` if one is unfinished,
        nothing (``ARTIFACTS_LEFT``) while one of its builds still has an artifact."""
        key = as_uuid(project_id)
        return Deletion.NOT_FOUND if key is None else await self._db.transaction(_delete, key)

    async def repository(self, repository_id: str) -> Repository | None:
        key = as_uuid(repository_id)
        return None if key is None else await self._db.run(_repository_by_id, key)

    async def local_repository(
        self, *, local_path: str, full_name: str, default_branch: str | None, now: int
    ) -> Repository:
        """The ``local_git`` repository at this canonical path, created on first use."""
        return await self._db.run(_local_repository, local_path, full_name, default_branch, now)

    async def members(self, project_id: str) -> list[Member]:
        key = as_uuid(project_id)
        return [] if key is None else await self._db.run(_members, key)

    async def member(self, project_id: str, user_id: str) -> Member | None:
        project_key, user_key = as_uuid(project_id), as_uuid(user_id)
        if project_key is None or user_key is None:
            return None
        return await self._db.run(_one_member, project_key, user_key)

    async def add_member(
        self, project_id: str, user_id: str, role: ProjectRole, now: int
    ) -> Member:
        """Insert a membership row; 409 ``already_member`` when there is one."""
        return await self._db.run(_add_member, uuid.UUID(project_id), uuid.UUID(user_id), role, now)

    async def set_member_role(
        self, project_id: str, user_id: str, role: ProjectRole
    ) -> Member | None:
        """Change a member's role; None if not a member, 409 ``last_maintainer``."""
        project_key, user_key = as_uuid(project_id), as_uuid(user_id)
        if project_key is None or user_key is None:
            return None
        return await self._db.transaction(_set_member_role, project_key, user_key, role)

    async def remove_member(self, project_id: str, user_id: str) -> bool:
        """Delete a membership row; False if not a member, 409 ``last_maintainer``."""
        project_key, user_key = as_uuid(project_id), as_uuid(user_id)
        if project_key is None or user_key is None:
            return False
        return await self._db.transaction(_remove_member, project_key, user_key)

    async def user(self, user_id: str) -> User | None:
        """A user who might become a member (any status)."""
        key = as_uuid(user_id)
        return None if key is None else await self._db.run(_user, key)

    async def candidates(self, project_id: str) -> list[User]:
        """Developer and qa_viewer users, active or invited, not yet members."""
        key = as_uuid(project_id)
        return [] if key is None else await self._db.run(_candidates, key)
