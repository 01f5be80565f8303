"""SQL for source integrations, their installations and the repositories they bring.

Credentials arrive here already encrypted (``*_enc`` text); this module never sees them
in the clear.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from oore.domain.ids import new_id
from oore.domain.integrations import (
    AuthMode,
    Installation,
    Integration,
    IntegrationProvider,
    IntegrationRepository,
    IntegrationStatus,
    Problem,
    RemoteRepository,
)
from oore.errors import Conflict
from oore.store.database import Connection, Database
from oore.store.projects import _cancel_waiting, as_uuid, like_pattern


def integration_from_row(row: Any) -> Integration:
    problem = None
    if row["problem_code"] is not None:
        problem = Problem(row["problem_code"], row["problem_message"] or "", row["problem_at"] or 0)
    return Integration(
        id=str(row["id"]),
        provider=IntegrationProvider(row["provider"]),
        host_url=row["host_url"],
        auth_mode=AuthMode(row["auth_mode"]),
        status=IntegrationStatus(row["status"]),
        display_name=row["display_name"],
        app_id=row["app_id"],
        app_slug=row["app_slug"],
        created_by=None if row["created_by"] is None else str(row["created_by"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        problem=problem,
        last_webhook_at=row["last_webhook_at"],
    )


def installation_from_row(row: Any) -> Installation:
    return Installation(
        id=str(row["id"]),
        integration_id=str(row["integration_id"]),
        external_id=row["external_id"],
        account_name=row["account_name"],
        account_type=row["account_type"],
        created_at=row["created_at"],
    )


def repository_from_row(row: Any) -> IntegrationRepository:
    return IntegrationRepository(
        id=str(row["id"]),
        installation_id=str(row["installation_id"]),
        external_id=row["external_id"],
        full_name=row["full_name"],
        default_branch=row["default_branch"],
        is_private=row["is_private"],
        avatar_url=row["avatar_url"],
        created_at=row["created_at"],
        updated_at=row["updated_at"] or row["created_at"],
    )


@dataclass(frozen=True)
class NewIntegration:
    provider: IntegrationProvider
    auth_mode: AuthMode
    status: IntegrationStatus
    now: int
    host_url: str | None = None
    display_name: str | None = None
    app_id: str | None = None
    app_slug: str | None = None
    credentials_enc: str | None = None
    webhook_secret_enc: str | None = None
    created_by: str | None = None


@dataclass(frozen=True)
class IntegrationFilter:
    provider: str | None = None
    search: str | None = None
    sort: str | None = None
    descending: bool = True


@dataclass(frozen=True)
class IntegrationCounts:
    installations: int
    repositories: int


@dataclass(frozen=True)
class RepositoryOwner:
    """A repository with the integration it belongs to."""

    repository: IntegrationRepository
    integration: Integration


@dataclass(frozen=True)
class StoredCredentials:
    credentials_enc: str | None
    webhook_secret_enc: str | None


_SORTS = {
    "name": "lower(COALESCE(i.display_name, i.app_slug, ''))",
    "provider": "i.provider",
    "status": "i.status",
}
_REPOSITORY_COLUMNS = """r.id, r.installation_id, r.external_id, r.full_name, r.default_branch,
    r.is_private, r.avatar_url, r.created_at, r.updated_at"""


async def _create(conn: Connection, new: NewIntegration) -> Integration:
    row = await conn.fetchrow(
        """INSERT INTO integrations (id, provider, host_url, auth_mode, status, display_name,
               app_id, app_slug, credentials_enc, webhook_secret_enc, created_by, created_at,
               updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING *""",
        new_id(),
        new.provider.value,
        new.host_url,
        new.auth_mode.value,
        new.status.value,
        new.display_name,
        new.app_id,
        new.app_slug,
        new.credentials_enc,
        new.webhook_secret_enc,
        None if new.created_by is None else uuid.UUID(new.created_by),
        new.now,
    )
    return integration_from_row(row)


async def _get(conn: Connection, key: uuid.UUID) -> Integration | None:
    row = await conn.fetchrow("SELECT * FROM integrations WHERE id = $1", key)
    return None if row is None else integration_from_row(row)


async def _credentials(conn: Connection, key: uuid.UUID) -> StoredCredentials | None:
    row = await conn.fetchrow(
        "SELECT credentials_enc, webhook_secret_enc FROM integrations WHERE id = $1", key
    )
    return None if row is None else StoredCredentials(row[0], row[1])


async def _page(
    conn: Connection, where: IntegrationFilter, limit: int, offset: int
) -> tuple[list[Integration], int, int]:
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    clauses = ["true"]
    if where.provider is not None:
        clauses.append(f"i.provider = {arg(where.provider)}")
    if where.search is not None:
        pattern = arg(like_pattern(where.search))
        clauses.append(
            f"(i.display_name ILIKE {pattern} OR i.app_slug ILIKE {pattern}"
            f" OR i.host_url ILIKE {pattern} OR i.provider ILIKE {pattern})"
        )
    condition = " AND ".join(clauses)
    counted = await conn.fetchrow(
        f"""SELECT count(*) AS total, count(*) FILTER (WHERE i.status = 'active') AS active
            FROM integrations i WHERE {condition}""",
        *args,
    )
    order = _SORTS.get(where.sort or "", "i.updated_at")
    direction = "DESC" if where.descending else "ASC"
    rows = await conn.fetch(
        f"""SELECT i.* FROM integrations i WHERE {condition}
            ORDER BY {order} {direction}, i.id {direction}
            LIMIT {arg(limit)} OFFSET {arg(offset)}""",
        *args,
    )
    return [integration_from_row(r) for r in rows], counted["total"], counted["active"]


async def _counts(conn: Connection, key: uuid.UUID) -> IntegrationCounts:
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM integration_installations WHERE integration_id = $1)
                      AS installations,
                  (SELECT count(*) FROM repositories r
                     JOIN integration_installations n ON n.id = r.installation_id
                    WHERE n.integration_id = $1) AS repositories""",
        key,
    )
    return IntegrationCounts(row["installations"], row["repositories"])


async def _add_installation(
    conn: Connection,
    integration_id: uuid.UUID,
    external_id: str,
    account_name: str,
    account_type: str | None,
    now: int,
) -> Installation:
    row = await conn.fetchrow(
        """INSERT INTO integration_installations (id, integration_id, external_id,
               account_name, account_type, created_at)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (integration_id, external_id) DO UPDATE
               SET account_name = EXCLUDED.account_name,
                   account_type = EXCLUDED.account_type
           RETURNING *""",
        new_id(),
        integration_id,
        external_id,
        account_name,
        account_type,
        now,
    )
    return installation_from_row(row)


async def _installations(conn: Connection, integration_id: uuid.UUID) -> list[Installation]:
    rows = await conn.fetch(
        """SELECT * FROM integration_installations WHERE integration_id = $1
           ORDER BY account_name, created_at""",
        integration_id,
    )
    return [installation_from_row(r) for r in rows]


async def _upsert_repositories(
    conn: Connection,
    installation_id: uuid.UUID,
    host_url: str | None,
    repositories: list[RemoteRepository],
    prune: bool,
    now: int,
) -> list[IntegrationRepository]:
    provider = await conn.fetchval(
        """SELECT i.provider FROM integration_installations n
           JOIN integrations i ON i.id = n.integration_id WHERE n.id = $1""",
        installation_id,
    )
    if provider is None:
        return []
    stored: list[IntegrationRepository] = []
    for repo in repositories:
        row = await conn.fetchrow(
            f"""INSERT INTO repositories AS r (id, provider, full_name, host_url, default_branch,
                    created_at, installation_id, external_id, is_private, avatar_url,
                    updated_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $6)
                ON CONFLICT (installation_id, external_id) WHERE installation_id IS NOT NULL
                DO UPDATE SET full_name = EXCLUDED.full_name, host_url = EXCLUDED.host_url,
                    default_branch = EXCLUDED.default_branch,
                    is_private = EXCLUDED.is_private, avatar_url = EXCLUDED.avatar_url,
                    updated_at = EXCLUDED.updated_at
                RETURNING {_REPOSITORY_COLUMNS}""",
            new_id(),
            provider,
            repo.full_name,
            host_url,
            repo.default_branch,
            now,
            installation_id,
            repo.external_id,
            repo.is_private,
            repo.avatar_url,
        )
        stored.append(repository_from_row(row))
    if prune:
        # Repositories the provider no longer lists go, unless a project builds from them.
        await conn.execute(
            """DELETE FROM repositories r WHERE r.installation_id = $1
                 AND NOT (r.external_id = ANY($2::text[]))
                 AND NOT EXISTS (SELECT 1 FROM projects p WHERE p.repository_id = r.id)""",
            installation_id,
            [repo.external_id for repo in repositories],
        )
    return stored


async def _repositories(
    conn: Connection,
    integration_id: uuid.UUID | None,
    search: str | None,
    provider: str | None,
    limit: int,
    offset: int,
) -> tuple[list[IntegrationRepository], int]:
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    clauses = ["r.installation_id IS NOT NULL"]
    if integration_id is not None:
        clauses.append(f"n.integration_id = {arg(integration_id)}")
    if provider is not None:
        clauses.append(f"r.provider = {arg(provider)}")
    if search is not None:
        clauses.append(f"r.full_name ILIKE {arg(like_pattern(search))}")
    source = "repositories r JOIN integration_installations n ON n.id = r.installation_id"
    condition = " AND ".join(clauses)
    total = await conn.fetchval(f"SELECT count(*) FROM {source} WHERE {condition}", *args)
    rows = await conn.fetch(
        f"""SELECT {_REPOSITORY_COLUMNS} FROM {source} WHERE {condition}
            ORDER BY r.full_name, r.id LIMIT {arg(limit)} OFFSET {arg(offset)}""",
        *args,
    )
    return [repository_from_row(r) for r in rows], total


async def _repository(conn: Connection, key: uuid.UUID) -> RepositoryOwner | None:
    row = await conn.fetchrow(
        f"""SELECT {_REPOSITORY_COLUMNS}, n.integration_id AS owner FROM repositories r
            JOIN integration_installations n ON n.id = r.installation_id WHERE r.id = $1""",
        key,
    )
    if row is None:
        return None
    owner = await _get(conn, row["owner"])
    assert owner is not None
    return RepositoryOwner(repository_from_row(row), owner)


async def _set_repository_secret(
    conn: Connection, key: uuid.UUID, secret_enc: str, now: int
) -> bool:
    done = await conn.fetchval(
        """UPDATE repositories SET webhook_secret_enc = $2, webhook_secret_rotated_at = $3,
               updated_at = $3 WHERE id = $1 RETURNING true""",
        key,
        secret_enc,
        now,
    )
    return bool(done)


async def _update(
    conn: Connection,
    key: uuid.UUID,
    status: IntegrationStatus | None,
    credentials_enc: str | None,
    display_name: str | None,
    now: int,
) -> Integration | None:
    row = await conn.fetchrow(
        """UPDATE integrations SET status = COALESCE($2, status),
               credentials_enc = COALESCE($3, credentials_enc),
               display_name = COALESCE($4, display_name), updated_at = $5
           WHERE id = $1 RETURNING *""",
        key,
        None if status is None else status.value,
        credentials_enc,
        display_name,
        now,
    )
    return None if row is None else integration_from_row(row)


async def _record_problem(conn: Connection, key: uuid.UUID, problem: Problem) -> None:
    await conn.execute(
        """UPDATE integrations SET status = 'error', problem_code = $2, problem_message = $3,
               problem_at = $4, updated_at = $4 WHERE id = $1""",
        key,
        problem.code,
        problem.message,
        problem.at,
    )


async def _clear_problem(conn: Connection, key: uuid.UUID, now: int) -> None:
    await conn.execute(
        """UPDATE integrations SET status = 'active', problem_code = NULL,
               problem_message = NULL, problem_at = NULL, updated_at = $2
           WHERE id = $1 AND problem_code IS NOT NULL""",
        key,
        now,
    )


async def _delete(conn: Connection, key: uuid.UUID, reason: str, now: int) -> int | None:
    locked = await conn.fetchval("SELECT true FROM integrations WHERE id = $1 FOR UPDATE", key)
    if locked is None:
        return None
    repository_ids = [
        row["id"]
        for row in await conn.fetch(
            """SELECT r.id FROM repositories r
               JOIN integration_installations n ON n.id = r.installation_id
               WHERE n.integration_id = $1""",
            key,
        )
    ]
    ids_text = [str(value) for value in repository_ids]
    projects = [
        row["id"]
        for row in await conn.fetch(
            """SELECT id FROM projects WHERE repository_id = ANY($1::uuid[])
               ORDER BY id FOR UPDATE""",
            repository_ids,
        )
    ]
    active = await conn.fetchval(
        """SELECT count(*) FROM builds WHERE status IN ('assigned', 'running')
             AND config_snapshot->>'repository_id' = ANY($1::text[])""",
        ids_text,
    )
    if active:
        raise Conflict(
            "integration_has_active_builds",
            f"{active} build(s) from this integration are running; cancel them first",
        )
    canceled = 0
    for project_id in projects:
        canceled += await _cancel_waiting(conn, project_id, reason, now)
    await conn.execute(
        "UPDATE projects SET repository_id = NULL, updated_at = $2 WHERE id = ANY($1::uuid[])",
        projects,
        now,
    )
    await conn.execute("DELETE FROM integrations WHERE id = $1", key)
    return canceled


async def _local_integration(
    conn: Connection, repository_id: uuid.UUID, local_path: str, name: str, now: int
) -> Integration:
    """The local_git integration + installation of a canonical path, created on first use,
    and the repository row adopted under it."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "oore-local-git:" + local_path)
    row = await conn.fetchrow(
        """SELECT i.*, n.id AS installation_id FROM integrations i
           JOIN integration_installations n ON n.integration_id = i.id
           WHERE i.provider = 'local_git' AND n.external_id = $1""",
        local_path,
    )
    if row is None:
        integration = await _create(
            conn,
            NewIntegration(
                provider=IntegrationProvider.LOCAL_GIT,
                auth_mode=AuthMode.LOCAL,
                status=IntegrationStatus.ACTIVE,
                display_name=name,
                now=now,
            ),
        )
        installation = await _add_installation(
            conn, uuid.UUID(integration.id), local_path, name, "local", now
        )
        installation_key = uuid.UUID(installation.id)
    else:
        integration = integration_from_row(row)
        installation_key = row["installation_id"]
    await conn.execute(
        """UPDATE repositories SET installation_id = $2, external_id = $3,
               updated_at = COALESCE(updated_at, created_at)
           WHERE id = $1 AND installation_id IS NULL""",
        repository_id,
        installation_key,
        local_path,
    )
    return integration


async def _local_integrations(conn: Connection) -> list[tuple[Integration, str]]:
    rows = await conn.fetch(
        """SELECT i.*, n.external_id AS local_path FROM integrations i
           JOIN integration_installations n ON n.integration_id = i.id
           WHERE i.provider = 'local_git' ORDER BY n.external_id"""
    )
    return [(integration_from_row(r), r["local_path"]) for r in rows]


class IntegrationStore:
    """Integrations, installations and their repositories."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, new: NewIntegration) -> Integration:
        return await self._db.run(_create, new)

    async def get(self, integration_id: str) -> Integration | None:
        key = as_uuid(integration_id)
        return None if key is None else await self._db.run(_get, key)

    async def credentials(self, integration_id: str) -> StoredCredentials | None:
        """The encrypted credential columns."""
        key = as_uuid(integration_id)
        return None if key is None else await self._db.run(_credentials, key)

    async def page(
        self, where: IntegrationFilter, *, limit: int, offset: int
    ) -> tuple[list[Integration], int, int]:
        """A page of integrations, the total and how many of those are active."""
        return await self._db.run(_page, where, limit, offset)

    async def counts(self, integration_id: str) -> IntegrationCounts:
        key = as_uuid(integration_id)
        if key is None:
            return IntegrationCounts(0, 0)
        return await self._db.run(_counts, key)

    async def add_installation(
        self,
        integration_id: str,
        *,
        external_id: str,
        account_name: str,
        account_type: str | None,
        now: int,
    ) -> Installation:
        """Insert the installation, or refresh its account fields when it is known."""
        return await self._db.run(
            _add_installation,
            uuid.UUID(integration_id),
            external_id,
            account_name,
            account_type,
            now,
        )

    async def installations(self, integration_id: str) -> list[Installation]:
        key = as_uuid(integration_id)
        return [] if key is None else await self._db.run(_installations, key)

    async def upsert_repositories(
        self,
        installation_id: str,
        repositories: list[RemoteRepository],
        *,
        host_url: str | None,
        now: int,
        prune: bool = False,
    ) -> list[IntegrationRepository]:
        """Insert or refresh repositories by (installation, external id); ``host_url`` is the
        provider's web URL so a runner can clone ``<host_url>/<full_name>.git``. With
        ``prune``, unlisted repositories no project uses are removed."""
        return await self._db.transaction(
            _upsert_repositories,
            uuid.UUID(installation_id),
            host_url,
            repositories,
            prune,
            now,
        )

    async def repositories(
        self,
        integration_id: str | None,
        *,
        search: str | None,
        limit: int,
        offset: int,
        provider: str | None = None,
    ) -> tuple[list[IntegrationRepository], int]:
        """Repositories (of one integration, or all), ordered by full name, and the total."""
        key = None
        if integration_id is not None:
            key = as_uuid(integration_id)
            if key is None:
                return [], 0
        return await self._db.run(_repositories, key, search, provider, limit, offset)

    async def repository(self, repository_id: str) -> RepositoryOwner | None:
        key = as_uuid(repository_id)
        return None if key is None else await self._db.run(_repository, key)

    async def set_repository_webhook_secret(
        self, repository_id: str, secret_enc: str, now: int
    ) -> bool:
        key = as_uuid(repository_id)
        return key is not None and await self._db.run(_set_repository_secret, key, secret_enc, now)

    async def update(
        self,
        integration_id: str,
        *,
        now: int,
        status: IntegrationStatus | None = None,
        credentials_enc: str | None = None,
        display_name: str | None = None,
    ) -> Integration | None:
        key = as_uuid(integration_id)
        if key is None:
            return None
        return await self._db.run(_update, key, status, credentials_enc, display_name, now)

    async def record_problem(self, integration_id: str, problem: Problem) -> None:
        """Mark the integration ``error`` with a problem the operator sees."""
        await self._db.run(_record_problem, uuid.UUID(integration_id), problem)

    async def clear_problem(self, integration_id: str, now: int) -> None:
        """Back to ``active`` when a problem was standing."""
        await self._db.run(_clear_problem, uuid.UUID(integration_id), now)

    async def delete(self, integration_id: str, *, cancel_reason: str, now: int) -> int | None:
        """Delete it (None when unknown); 409 ``integration_has_active_builds`` while a build
        from one of its repositories is assigned or running. Queued/scheduled builds of the
        linked projects are canceled (how many returned) and the projects unlinked."""
        key = as_uuid(integration_id)
        if key is None:
            return None
        return await self._db.transaction(_delete, key, cancel_reason, now)

    async def local_integration(
        self, *, repository_id: str, local_path: str, name: str, now: int
    ) -> Integration:
        """The local_git integration for a canonical path (created on first use); the
        repository is adopted under its installation."""
        return await self._db.transaction(
            _local_integration, uuid.UUID(repository_id), local_path, name, now
        )

    async def local_integrations(self) -> list[tuple[Integration, str]]:
        """Every local_git integration with its canonical path."""
        return await self._db.run(_local_integrations)
