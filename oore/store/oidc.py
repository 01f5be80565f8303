"""SQL for the OpenID Provider configuration row."""

from __future__ import annotations

from typing import Any

from oore.domain.oidc import OidcConfig
from oore.store.database import Connection, Database


def _config(row: Any) -> OidcConfig:
    return OidcConfig(
        issuer_url=row["issuer_url"],
        client_id=row["client_id"],
        client_secret_enc=row["client_secret_enc"],
        configured_at=row["configured_at"],
        updated_at=row["updated_at"],
    )


async def _get(conn: Connection) -> OidcConfig | None:
    row = await conn.fetchrow("SELECT * FROM oidc_config")
    return None if row is None else _config(row)


class OidcStore:
    """The single OIDC configuration row."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self) -> OidcConfig | None:
        """The stored configuration, or None before any was saved."""
        return await self._db.run(_get)
