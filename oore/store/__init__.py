"""The store: the only package that holds SQL or talks to PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from oore.errors import ApiError
from oore.store.api_tokens import ApiTokenStore
from oore.store.artifact_tokens import ArtifactTokenStore
from oore.store.artifacts import ArtifactStore
from oore.store.audit import AuditEntry, AuditStore
from oore.store.builds import BuildStore
from oore.store.cluster import ClusterStore
from oore.store.database import Connection, Database, Revive, open_database
from oore.store.instance import InstanceStore
from oore.store.integration_states import IntegrationStateStore
from oore.store.integrations import IntegrationStore
from oore.store.ios_signing import IosSigningStore
from oore.store.migrations import applied_versions, known_migrations, migrate
from oore.store.notifications import NotificationStore
from oore.store.oidc import OidcStore
from oore.store.pending_signins import PendingSignInStore
from oore.store.pipelines import PipelineStore
from oore.store.projects import ProjectStore
from oore.store.retention import RetentionStore
from oore.store.runners import RunnerStore
from oore.store.settings import SettingsStore
from oore.store.signing import SigningStore
from oore.store.stream_tokens import StreamTokenStore
from oore.store.url_tokens import UrlTokenStore
from oore.store.users import UserStore
from oore.store.variables import VariableStore
from oore.store.webhooks import WebhookStore

__all__ = ["AuditEntry", "Store", "open_store"]


@dataclass(frozen=True)
class Readiness:
    database: bool
    migrations: bool


class Store:
    """One object per aggregate, sharing one pool."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.instance = InstanceStore(db)
        self.users = UserStore(db)
        self.api_tokens = ApiTokenStore(db)
        self.audit = AuditStore(db)
        self.oidc = OidcStore(db)
        self.settings = SettingsStore(db)
        self.projects = ProjectStore(db)
        self.pipelines = PipelineStore(db)
        self.builds = BuildStore(db)
        self.runners = RunnerStore(db)
        self.artifacts = ArtifactStore(db)
        self.artifact_tokens = ArtifactTokenStore(db)
        self.webhooks = WebhookStore(db)
        self.integrations = IntegrationStore(db)
        self.variables = VariableStore(db)
        self.ios_signing = IosSigningStore(db)
        self.signing = SigningStore(db)
        self.cluster = ClusterStore(db)
        self.stream_tokens = StreamTokenStore(db)
        self.url_tokens = UrlTokenStore(db)
        self.integration_states = IntegrationStateStore(db)
        self.pending_signins = PendingSignInStore(db)
        self.retention = RetentionStore(db)
        self.notifications = NotificationStore(db)

    async def readiness(self) -> Readiness:
        """Can we reach the database, and is its schema the one this code expects?"""
        try:
            applied = await applied_versions(self.db)
        except ApiError:  # the store logged the cause
            return Readiness(database=False, migrations=False)
        expected = [m.version for m in known_migrations()]
        return Readiness(database=True, migrations=applied == expected)

    async def connection_limit(self) -> int:
        """How many connections the server takes from users like this one, all told."""
        return await self.db.run(_connection_limit)


async def _connection_limit(conn: Connection) -> int:
    limit: int = await conn.fetchval(
        """SELECT current_setting('max_connections')::int
                  - current_setting('superuser_reserved_connections')::int"""
    )
    return limit


@asynccontextmanager
async def open_store(
    url: str,
    *,
    pool_size: int = 10,
    revive: Revive | None = None,
    watch_interval: float | None = None,
    short_slices: bool = False,
) -> AsyncIterator[Store]:
    """Connect, migrate under the advisory lock, and yield the store.

    ``revive`` and ``watch_interval``: how the database rides out an outage;
    ``short_slices``: for the server processes of its sessions (see
    :mod:`oore.store.database`).
    """
    async with open_database(
        url,
        pool_size=pool_size,
        revive=revive,
        watch_interval=watch_interval,
        short_slices=short_slices,
    ) as db:
        await migrate(db)
        yield Store(db)
