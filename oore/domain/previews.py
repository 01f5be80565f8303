"""Previews of a repository before a build: its pipeline files and the changes since the
last good build (contract §2.5, §2.7, §12).

Plain rules over what a provider answered: which files of a listing are pipeline files,
how a parsed file is shown without its environment values, and how commits become the
Markdown changelog a build is triggered with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from oore.domain.pipeline_config import (
    DEFAULT_CONFIG_FILES,
    REDACTED,
    EnvVar,
    ExecutionConfig,
)

MAX_WORKFLOW_FILES = 16
MAX_LISTING_BYTES = 512 * 1024
CHANGELOG_PREVIEW_CHARS = 3900
# Commits read for a changelog: more than a capped changelog can ever show (a line takes at
# least eight bytes), so the cap, not this bound, decides what is left out.
MAX_CHANGELOG_COMMITS = CHANGELOG_PREVIEW_CHARS // 8 + 1

# ASCII punctuation that means something in Markdown (CommonMark lets any of it be escaped).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&])")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]+")


@dataclass(frozen=True)
class TreeEntry:
    """A regular file of a repository listing; ``size`` in bytes when the provider says."""

    path: str
    size: int | None = None


@dataclass(frozen=True)
class Listing:
    """The files under a path at a commit; ``truncated`` when the listing was cut at its bound."""

    entries: tuple[TreeEntry, ...]
    truncated: bool = False


@dataclass(frozen=True)
class FileAt:
    """A file read at a commit: its bytes, or only its size when it is over the bound."""

    data: bytes | None
    size: int | None


@dataclass(frozen=True)
class CommitSummary:
    sha: str
    title: str
    author: str


@dataclass(frozen=True)
class CommitRange:
    """The newest commits of ``base..target`` (newest first) and how many there are in all."""

    commits: tuple[CommitSummary, ...]
    total: int


def title_of(message: str) -> str:
    """A commit's title: the first line of its message."""
    return message.strip().split("\n", 1)[0].strip()


# -- repository workflows ---------------------------------------------------------------------


def is_pipeline_file(path: str) -> bool:
    return path.rsplit("/", 1)[-1] in DEFAULT_CONFIG_FILES


def _depth_order(path: str) -> tuple[int, str]:
    return path.count("/"), path


def workflow_candidates(
    listing: Listing, path: str | None, named: Iterable[str] = ()
) -> tuple[list[TreeEntry], bool]:
    """The files a preview shows (at most :data:`MAX_WORKFLOW_FILES`) and whether more were
    left out. ``path`` naming a file of the listing shows that file; otherwise every
    ``.oore.yaml``/``.oore.yml`` under it (the shallowest first) and the ``named`` files
    (the explicit ``config_path`` of the pipelines) that exist under it."""
    by_path = {entry.path: entry for entry in listing.entries}
    if path is not None and path in by_path:
        return [by_path[path]], False
    prefix = "" if path is None else path + "/"
    wanted = {p for p in by_path if p.startswith(prefix) and is_pipeline_file(p)}
    wanted |= {p for p in named if p.startswith(prefix) and p in by_path}
    ordered = sorted(wanted, key=_depth_order)
    shown = [by_path[p] for p in ordered[:MAX_WORKFLOW_FILES]]
    return shown, len(ordered) > MAX_WORKFLOW_FILES


def _env_json(env: Sequence[EnvVar]) -> list[dict[str, Any]]:
    return [
        {"key": var.key, "value": REDACTED, **({"secret": True} if var.secret else {})}
        for var in env
    ]


def workflow_config_json(config: ExecutionConfig) -> dict[str, Any]:
    """A parsed pipeline file as a preview shows it: every environment value hidden."""
    body = config.to_json()
    body["env"] = _env_json(config.env)
    if config.steps:
        body["steps"] = [
            {
                "name": step.name,
                "run": step.command,
                "env": _env_json(step.env),
                **({"timeout": step.timeout} if step.timeout is not None else {}),
                "continue_on_error": step.continue_on_error,
                "if": f"{step.when}()",
            }
            for step in config.steps
        ]
    if config.runner_labels:
        body["runner_labels"] = list(config.runner_labels)
    if config.timeout is not None:
        body["timeout"] = config.timeout
    return body


# -- changelog ------------------------------------------------------------------------------


def escape_markdown(text: str) -> str:
    """``text`` as literal Markdown on one line: control characters become spaces and every
    character Markdown gives a meaning to is backslash-escaped."""
    flat = _CONTROL.sub(" ", text).strip()
    return _MARKDOWN_SPECIAL.sub(r"\\\1", flat)


def changelog_line(commit: CommitSummary) -> str:
    title = escape_markdown(commit.title) or "(no message)"
    author = escape_markdown(commit.author) or "unknown"
    return f"- {title} — {author}"


def more_changes(count: int) -> str:
    return f"…and {count} more change{'' if count == 1 else 's'}"


def _size(text: str) -> int:
    return len(text.encode("utf-8", "replace"))


def changelog_markdown(
    commits: Sequence[CommitSummary], total: int, limit: int = CHANGELOG_PREVIEW_CHARS
) -> str:
    """One line per commit (newest first), at most ``limit`` UTF-8 bytes in all (so at most
    as many characters, and always a valid build ``changelog``): when not every one of the
    ``total`` commits fits, the last line says how many were left out."""
    total = max(total, len(commits))
    every = [changelog_line(commit) for commit in commits]
    if total == len(every) and _size("\n".join(every)) <= limit:
        return "\n".join(every)
    # Not all fit: as many as fit with the closing line after them.
    lines: list[str] = []
    used = 0
    for line in every:
        after = used + _size(line) + (1 if lines else 0)
        if after + 1 + _size(more_changes(total - len(lines) - 1)) > limit:
            break
        lines.append(line)
        used = after
    return "\n".join([*lines, more_changes(total - len(lines))])
