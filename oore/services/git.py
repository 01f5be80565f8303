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


async def read_file(repo: str, commit: str, path: str, max_bytes: int) -> bytes | None:
    """A file's bytes at a commit of a local repository; None when it is not a regular file
    there, cannot be read, or is larger than ``max_bytes`` (then the runner, which reads the
    checkout, reports the problem)."""
    if commit.startswith("-") or path.startswith("-"):
        return None
    listed = await git(repo, "ls-tree", "-z", "--long", commit, "--", path)
    # "<mode> blob <sha> <size>\t<path>\0": only that path, a regular file of a bounded size.
    entry, _, name = listed.stdout.removesuffix(b"\0").partition(b"\t")
    fields = entry.split() if listed.returncode == 0 and name == path.encode() else []
    if len(fields) != 4 or fields[0] not in (b"100644", b"100755") or fields[1] != b"blob":
        return None
    if not fields[3].isdigit() or int(fields[3]) > max_bytes:
        return None
    found = await git(repo, "cat-file", "blob", fields[2].decode())
    return found.stdout if found.returncode == 0 else None
