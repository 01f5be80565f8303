"""Check out a build's repository into a fresh directory with the real ``git``."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from oore.runner.processes import end_group

GIT_CANCEL_GRACE = 5.0
MAX_ERROR_CHARS = 2000


class CheckoutError(Exception):
    """git could not produce the requested tree; the message says what git said."""


@dataclass(frozen=True)
class Checkout:
    path: Path
    commit_sha: str


async def checkout(
    repo_url: str, dest: Path, *, commit_sha: str | None, branch: str | None
) -> Checkout:
    """Clone ``repo_url`` (a local path or a URL) into ``dest`` (which must not exist).

    The tree is checked out detached at ``commit_sha``, else at the tip of ``branch``,
    else at the remote's default branch. Answers the commit actually checked out.
    Raises CheckoutError with git's own message when a git command fails.
    """
    for what, value in (("repository", repo_url), ("commit", commit_sha), ("branch", branch)):
        if value is not None and (not value or value.startswith("-")):
            raise CheckoutError(f"invalid {what} {value!r}")
    await _git(["clone", "--quiet", "--", repo_url, str(dest)], cwd=None, what="git clone")
    target = commit_sha or (f"refs/remotes/origin/{branch}" if branch else None)
    if target is not None:
        await _git(["checkout", "--quiet", "--detach", target, "--"], cwd=dest, what="git checkout")
    head = await _git(["rev-parse", "--verify", "HEAD"], cwd=dest, what="git rev-parse")
    return Checkout(dest, head.strip())


async def _git(args: Sequence[str], *, cwd: Path | None, what: str) -> str:
    """Run git; its stdout, or CheckoutError carrying its stderr."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    try:
        result = await trio.run_process(
            ["git", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            start_new_session=True,
            deliver_cancel=_end_git,
        )
    except OSError as exc:
        raise CheckoutError(f"{what} could not start: {exc}") from exc
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip()[-MAX_ERROR_CHARS:]
        raise CheckoutError(f"{what} failed (exit {result.returncode}): {message}")
    return result.stdout.decode(errors="replace")


async def _end_git(process: trio.Process) -> None:
    await end_group(process, GIT_CANCEL_GRACE)
