"""Reading a local git repository: bounded listings, files with their size, commit ranges."""

from __future__ import annotations

from pathlib import Path

import pytest

from oore.domain.previews import TreeEntry
from oore.errors import InternalError
from oore.services.git import commit_range, file_at, list_files
from tests.http.builds_kit import git, repo

__all__ = ["repo"]


async def test_a_listing_is_cut_at_its_bound_between_entries(repo: Path) -> None:
    for n in range(40):
        (repo / f"file-{n:02d}.txt").write_text("x" * n)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "files")
    whole = await list_files(str(repo), "HEAD", None, 1 << 20)
    assert not whole.truncated and len(whole.entries) == 41
    assert TreeEntry("file-07.txt", 7) in whole.entries
    cut = await list_files(str(repo), "HEAD", None, 1000)
    assert cut.truncated and 0 < len(cut.entries) < 41
    assert list(cut.entries) == list(whole.entries[: len(cut.entries)])
    assert (await list_files(str(repo), "HEAD", "file-01.txt", 1000)).entries == (
        TreeEntry("file-01.txt", 1),
    )


async def test_a_file_over_the_bound_gives_only_its_size(repo: Path) -> None:
    assert await file_at(str(repo), "HEAD", "README", 100) is not None
    found = await file_at(str(repo), "HEAD", "README", 3)
    assert found is not None and (found.data, found.size) == (None, 6)
    assert await file_at(str(repo), "HEAD", "missing", 100) is None


async def test_a_range_gives_the_newest_commits_and_the_count(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD")
    for n in range(5):
        git(repo, "commit", "-q", "--allow-empty", "-m", f"title {n}\n\nbody {n}")
    found = await commit_range(str(repo), base, "HEAD", 2)
    assert found.total == 5
    assert [(c.title, c.author) for c in found.commits] == [("title 4", "t"), ("title 3", "t")]
    with pytest.raises(InternalError):
        await commit_range(str(repo), "0" * 40, "HEAD", 2)
