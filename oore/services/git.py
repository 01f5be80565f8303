"""Local git repositories, read with the ``git`` command (never from the store)."""

from __future__ import annotations

import subprocess

import trio

from oore.errors import InternalError, InvalidInput

GIT_TIMEOUT = 30.0


async def git(repo: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run ``git -C repo args`` and return the finished process (it may have failed)."""
    try:
        with trio.fail_after(GIT_TIMEOUT):
            return await trio.run_process(
                ["git", "-C", repo, *args], capture_stdout=True, capture_stderr=True, check=False
            )
    except (OSError, trio.TooSlowError) as exc:
        raise InternalError("git_error", f"git could not run: {exc}") from None


async def resolve_commit(repo: str, ref: str) -> str:
    """The commit a branch (or other ref) of a local repository points at.

    400 ``invalid_ref`` when the ref does not exist; 500 ``git_error`` when git fails.
    """
    if ref.startswith("-"):
        raise InvalidInput("invalid_ref", f"Ref {ref!r} is not valid")
    found = await git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if found.returncode == 1:
        raise InvalidInput("invalid_ref", f"Ref {ref!r} does not exist in the repository")
    if found.returncode != 0:
        message = found.stderr.decode(errors="replace").strip()
        raise InternalError("git_error", f"git rev-parse failed: {message}")
    return found.stdout.decode().strip()
