"""Local git repositories, read with the ``git`` command (never from the store)."""

from __future__ import annotations

import subprocess

import trio

from oore.domain.previews import CommitRange, CommitSummary, FileAt, Listing, TreeEntry, title_of
from oore.errors import InternalError, InvalidInput

GIT_TIMEOUT = 30.0
READ_CHUNK = 64 * 1024
# A changelog's commits with their whole messages: far more than their titles ever take.
MAX_LOG_BYTES = 4 * 1024 * 1024


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


async def git_output(repo: str, *args: str, max_bytes: int) -> tuple[bytes, bool]:
    """The standard output of ``git -C repo args``, at most ``max_bytes`` of it (git is
    stopped past that), and whether it was cut; 500 ``git_error`` when git fails."""
    output = bytearray()
    cut = False
    try:
        with trio.fail_after(GIT_TIMEOUT):
            process = await trio.lowlevel.open_process(
                ["git", "-C", repo, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            try:
                assert process.stdout is not None
                while chunk := await process.stdout.receive_some(READ_CHUNK):
                    output += chunk
                    if len(output) > max_bytes:
                        cut = True
                        process.kill()
                        break
                await process.stdout.aclose()
                await process.wait()
            except BaseException:
                process.kill()
                with trio.CancelScope(shield=True):
                    if process.stdout is not None:
                        await process.stdout.aclose()
                    await process.wait()  # killed: reaped at once
                raise
    except (OSError, trio.TooSlowError) as exc:
        raise InternalError("git_error", f"git could not run: {exc}") from None
    if not cut and process.returncode != 0:
        raise InternalError("git_error", f"git {args[0]} failed (exit {process.returncode})")
    return bytes(output[:max_bytes]) if cut else bytes(output), cut


def _blob_entry(raw: bytes) -> tuple[str, str, int] | None:
    """``(path, object, size)`` of one ``ls-tree --long`` entry naming a regular file."""
    entry, _, name = raw.partition(b"\t")
    fields = entry.split()
    if len(fields) != 4 or fields[0] not in (b"100644", b"100755") or fields[1] != b"blob":
        return None
    if not fields[3].isdigit():
        return None
    try:
        return name.decode(), fields[2].decode(), int(fields[3])
    except UnicodeDecodeError:
        return None


async def list_files(repo: str, commit: str, path: str | None, max_bytes: int) -> Listing:
    """The regular files at or under ``path`` (the whole tree without one) at a commit; a
    listing longer than ``max_bytes`` keeps the entries read before it was cut."""
    if commit.startswith("-"):
        return Listing(())
    args = ["ls-tree", "-r", "-z", "--long", commit]
    if path is not None:
        args += ["--", path]
    output, cut = await git_output(repo, *args, max_bytes=max_bytes)
    records = output.split(b"\0")
    if cut or records[-1]:
        records = records[:-1]  # a record the bound cut in two
    entries = [found for record in records if (found := _blob_entry(record)) is not None]
    return Listing(tuple(TreeEntry(name, size) for name, _, size in entries), truncated=cut)


async def file_at(repo: str, commit: str, path: str, max_bytes: int) -> FileAt | None:
    """A file at a commit of a local repository: None when it is not a regular file there,
    only its size when it is larger than ``max_bytes``."""
    if commit.startswith("-") or path.startswith("-"):
        return None
    listed = await git(repo, "ls-tree", "-z", "--long", commit, "--", path)
    found = _blob_entry(listed.stdout.removesuffix(b"\0")) if listed.returncode == 0 else None
    if found is None or found[0] != path:
        return None
    _, blob, size = found
    if size > max_bytes:
        return FileAt(None, size)
    read = await git(repo, "cat-file", "blob", blob)
    return FileAt(read.stdout, size) if read.returncode == 0 else None


async def commit_range(repo: str, base: str, target: str, limit: int) -> CommitRange:
    """The commits of ``target`` that ``base`` lacks (``git log base..target``): the newest
    ``limit`` of them, newest first, and how many there are."""
    if base.startswith("-") or target.startswith("-"):
        return CommitRange((), 0)
    span = f"{base}..{target}"
    counted = await git(repo, "rev-list", "--count", span)
    if counted.returncode != 0 or not counted.stdout.strip().isdigit():
        message = counted.stderr.decode(errors="replace").strip()
        raise InternalError("git_error", f"git rev-list failed: {message}")
    output, cut = await git_output(
        repo,
        "log",
        "-z",
        f"--max-count={limit}",
        "--format=%H%x1f%an%x1f%B",
        span,
        "--",
        max_bytes=MAX_LOG_BYTES,
    )
    records = output.split(b"\0")
    commits = []
    for record in records[:-1] if cut else records:
        sha, _, rest = record.decode(errors="replace").partition("\x1f")
        author, separator, message = rest.partition("\x1f")
        if separator:
            commits.append(CommitSummary(sha.strip(), title_of(message), author))
    return CommitRange(tuple(commits), int(counted.stdout))
