"""Shared fixtures: one embedded PostgreSQL per test session, one database per test.

The schema is migrated once into a template database; each test gets a file-level copy
(``CREATE DATABASE ... TEMPLATE``), so tests are isolated and start from a real schema.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

import pytest
import trio

from oore.store import Store, open_store
from oore.store.admin import (
    clone_database,
    drop_database,
    recreate_database,
    relax_durability,
)
from oore.store.embedded import EmbeddedPostgres
from oore.timeslice import request_slice

TEMPLATE = "oore_template"
T = TypeVar("T")
MEMORY_DIR = Path("/dev/shm")
MEMORY_DIR_ROOM = 2 << 30  # bytes free that /dev/shm must have to hold the test servers


def scratch_dir(prefix: str) -> Path:
    """A new directory for a test PostgreSQL server's files, in memory where the machine
    has room there (``/dev/shm``): on a disk each ``CREATE DATABASE`` of a test waits for
    the checkpoints it makes, ten times as long (0.3-0.5 s against 30 ms here). A server
    that is killed loses nothing it would not lose on a disk with ``fsync`` off.
    Elsewhere (no ``/dev/shm``, or a small one, as in a container), the system's
    temporary directory. The caller removes it."""
    memory: str | None = None
    with suppress(OSError):
        room = shutil.disk_usage(MEMORY_DIR).free
        if room >= MEMORY_DIR_ROOM and os.access(MEMORY_DIR, os.W_OK | os.X_OK):
            memory = str(MEMORY_DIR)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=memory))


class PostgresForTests:
    """The session's PostgreSQL server and a way to name databases on it."""

    def __init__(self, server: EmbeddedPostgres, uri: str) -> None:
        self.server = server
        self.admin_url = uri
        self._counter = itertools.count()

    def url(self, database: str) -> str:
        base, _, query = self.admin_url.partition("?")
        root = base.rsplit("/", 1)[0]
        return f"{root}/{database}?{query}" if query else f"{root}/{database}"

    def new_name(self) -> str:
        return f"t{os.getpid()}_{next(self._counter)}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresForTests]:
    external = os.environ.get("OORE_TEST_DATABASE_URL")
    root: Path | None = None
    if external:
        pg = PostgresForTests(EmbeddedPostgres(Path("/nonexistent")), external)
    else:
        root = scratch_dir("oore-test-pg-")
        server = EmbeddedPostgres(root / "pg")
        pg = PostgresForTests(server, server.start())

    async def prepare() -> None:
        if not external:
            await relax_durability(pg.admin_url)
        await recreate_database(pg.admin_url, TEMPLATE)
        async with open_store(pg.url(TEMPLATE)):
            pass

    try:
        trio.run(prepare)
        yield pg
    finally:
        pg.server.stop()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database_url(postgres: PostgresForTests) -> Iterator[str]:
    """A fresh, migrated database for this test only."""
    name = postgres.new_name()
    trio.run(clone_database, postgres.admin_url, TEMPLATE, name)
    try:
        yield postgres.url(name)
    finally:
        trio.run(drop_database, postgres.admin_url, name)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    async with open_store(database_url, pool_size=4) as opened:
        yield opened


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL server of the test's own, which it may kill or restart.

    Kept outside pytest's temporary root: another pytest run may make that private
    (0700) at any moment, cutting the server's own user off.
    """
    root = scratch_dir("oore-outage-")
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "pg")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def in_a_thread(work: Callable[[], T]) -> T:
    """``work()``, run on a thread of its own (what it asks of the kernel for its thread
    ends with it); what it raised is raised here."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(work())
        except BaseException as exc:  # handed to the caller, not lost with the thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]


def kernel_takes_short_slices() -> bool:
    """Whether this kernel runs a normal task in the slice it asks for (Linux 6.12 and
    later): asked from a thread of its own."""
    return in_a_thread(request_slice)
