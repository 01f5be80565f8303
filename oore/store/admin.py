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
    """Create ``name`` as a file-level copy of ``template`` (fast; template must be idle)."""
    await _execute(admin_url, [f"CREATE DATABASE {_ident(name)} TEMPLATE {_ident(template)}"])


async def drop_database(admin_url: str, name: str) -> None:
    """Drop ``name``, disconnecting anyone still attached."""
    await _execute(admin_url, [f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)"])
