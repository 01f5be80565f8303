"""Which database URLs reach the embedded PostgreSQL of a data directory."""

from __future__ import annotations

from pathlib import Path

from oore.store.embedded import reaches_embedded


def test_only_a_url_through_the_clusters_own_socket_directory_reaches_it(
    tmp_path: Path,
) -> None:
    pgdata = tmp_path / "pg"
    pgdata.mkdir()
    assert reaches_embedded(f"postgresql://postgres:@/postgres?host={pgdata}", pgdata)
    assert reaches_embedded(f"postgresql://postgres:@/postgres?host={tmp_path}/./pg", pgdata)
    elsewhere = tmp_path / "other"
    assert not reaches_embedded(f"postgresql://postgres:@/postgres?host={elsewhere}", pgdata)
    assert not reaches_embedded("postgresql://postgres@db.example:5432/oore", pgdata)
    assert not reaches_embedded(f"postgresql://postgres@{pgdata}/oore", pgdata)
    twice = f"postgresql://postgres:@/postgres?host={pgdata}&host=/srv/db"
    assert not reaches_embedded(twice, pgdata)
