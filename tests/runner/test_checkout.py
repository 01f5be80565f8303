"""Checkout with the real git from local repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from oore.runner.checkout import CheckoutError, checkout
from tests.runner.kit import commit, git, make_repo


async def test_checkout_at_a_given_commit(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    first = make_repo(repo, {".oore.yaml": "version: 1\n", "app.txt": "v1\n"})
    commit(repo, {"app.txt": "v2\n"}, "second")

    tree = await checkout(str(repo), tmp_path / "work", commit_sha=first, branch="main")

    assert tree.commit_sha == first
    assert (tmp_path / "work" / "app.txt").read_text() == "v1\n"
    assert (tmp_path / "work" / ".oore.yaml").exists()


async def test_checkout_of_a_branch_tip_without_a_commit(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {"app.txt": "main\n"})
    git(repo, "checkout", "--quiet", "-b", "feature")
    tip = commit(repo, {"app.txt": "feature\n"}, "on feature")
    git(repo, "checkout", "--quiet", "main")

    tree = await checkout(str(repo), tmp_path / "work", commit_sha=None, branch="feature")

    assert tree.commit_sha == tip
    assert (tmp_path / "work" / "app.txt").read_text() == "feature\n"


async def test_checkout_from_a_bare_repository_at_its_default_branch(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    sha = make_repo(repo, {"app.txt": "x\n"})
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(repo), str(bare))

    tree = await checkout(str(bare), tmp_path / "work", commit_sha=None, branch=None)

    assert tree.commit_sha == sha


async def test_a_missing_repository_fails_with_what_git_said(tmp_path: Path) -> None:
    with pytest.raises(CheckoutError, match=r"git clone failed \(exit \d+\): .*does not exist"):
        await checkout(str(tmp_path / "nope"), tmp_path / "work", commit_sha=None, branch=None)


async def test_an_unknown_commit_fails(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {"app.txt": "x\n"})
    with pytest.raises(CheckoutError, match="git checkout failed"):
        await checkout(str(repo), tmp_path / "work", commit_sha="0" * 40, branch=None)


async def test_option_like_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckoutError, match="invalid repository"):
        await checkout("--upload-pack=touch x", tmp_path / "w", commit_sha=None, branch=None)
