"""Shared by the runner tests: real git repositories and a look at real processes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_USER = ["-c", "user.email=runner@test.invalid", "-c", "user.name=Runner Test"]


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo``; its stdout."""
    result = subprocess.run(
        ["git", "-C", str(repo), *GIT_USER, *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


def make_repo(path: Path, files: dict[str, str], *, branch: str = "main") -> str:
    """A fresh repository at ``path`` with ``files`` committed; the commit's sha."""
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "--initial-branch", branch)
    return commit(path, files, "first")


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    """Write ``files`` and commit them; the new commit's sha."""
    for name, text in files.items():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", message)
    return git(repo, "rev-parse", "HEAD")


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not: it runs nothing any more)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def our_zombie(pid: int) -> bool:
    """Whether ``pid`` is a zombie this test process failed to reap."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] == "Z" and int(fields[1]) == os.getpid()
