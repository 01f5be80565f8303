"""Numbered ``.sql`` migrations, applied at start in one transaction under an advisory lock."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from oore.store.database import Connection, Database

# Any constant works; it only has to be the same for every oored sharing a database.
MIGRATION_LOCK_KEY = 0x6F6F7265

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def known_migrations() -> list[Migration]:
    """The migrations shipped with the package, in version order."""
    found = []
    for entry in resources.files("oore.store").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return found


async def _apply(conn: Connection, migrations: list[Migration]) -> list[int]:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version integer PRIMARY KEY,
               name text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    applied = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
    newly = []
    for migration in migrations:
        if migration.version in applied:
            continue
        await conn.execute(migration.sql)
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            migration.version,
            migration.name,
        )
        newly.append(migration.version)
    return newly


async def migrate(db: Database, *, up_to: int | None = None) -> list[int]:
    """Bring the schema up to date (or to version ``up_to``, for upgrade tests); returns
    the versions applied now (maybe none)."""
    wanted = [m for m in known_migrations() if up_to is None or m.version <= up_to]
    return await db.transaction(_apply, wanted)


async def _applied(conn: Connection) -> list[int]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return []
    rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    return [row["version"] for row in rows]


async def applied_versions(db: Database) -> list[int]:
    """Versions recorded in ``schema_migrations``."""
    return await db.run(_applied)
