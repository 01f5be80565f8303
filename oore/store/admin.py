"""Database administration for tests and benchmarks: fresh databases and template copies."""

from __future__ import annotations

import re

import asyncpg

from oore.store.database import open_database

_SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _ident(name: str) -> str:
    if not _SAFE_NAME.match(name):
        raise ValueError(f"unsafe database name {name!r}")
    return f'"{name}"'


async def _execute(admin_url: str, statements: list[str]) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    async with open_database(admin_url, pool_size=2) as db:
        await db.bridge.call(run)


async def recreate_database(admin_url: str, name: str) -> None:
    """Drop ``name`` if it exists and create it empty."""
    await _execute(
        admin_url,
        [f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)", f"CREATE DATABASE {_ident(name)}"],
    )


async def clone_database(admin_url: str, template: str, name: str) -> None:
    """Create ``name`` as a file-level copy of ``template`` (template must be idle).

    ``FILE_COPY`` copies the template's files and checkpoints, where the default
    ``WAL_LOG`` writes every page of it through the WAL: for a small template such as a
    freshly migrated schema the copy is about twice as fast, and dropping it later is
    cheaper too."""
    await _execute(
        admin_url,
        [f"CREATE DATABASE {_ident(name)} TEMPLATE {_ident(template)} STRATEGY FILE_COPY"],
    )


async def relax_durability(admin_url: str) -> None:
    """For a throwaway test server only: no fsync, no full-page writes, no waiting for
    the WAL on commit. A crash of the server may then lose or corrupt data, which a test
    server started for one run can afford; creating and dropping a database per test
    stops waiting on the disk."""
    await _execute(
        admin_url,
        [
            "ALTER SYSTEM SET fsync = off",
            "ALTER SYSTEM SET full_page_writes = off",
            "ALTER SYSTEM SET synchronous_commit = off",
            "SELECT pg_reload_conf()",
        ],
    )


async def drop_database(admin_url: str, name: str) -> None:
    """Drop ``name``, disconnecting anyone still attached."""
    await _execute(admin_url, [f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)"])
