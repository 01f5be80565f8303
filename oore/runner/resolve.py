"""Which execution config a build runs (contract §8.1, policy ``file_first_ui_fallback``).

The explicit ``config_path`` when ``config_path_explicit``, else ``.oore.yaml`` then
``.oore.yml``; when none of those files exists, the snapshot's ``ui_execution_config``.
A file that exists but cannot be read or is invalid fails the build: it never falls back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oore.domain.pipeline_config import (
    MAX_REPOSITORY_YAML_BYTES,
    ExecutionConfig,
    parse_execution_config,
    parse_repository_yaml,
    repository_yaml_too_large,
)

DEFAULT_FILES = (".oore.yaml", ".oore.yml")
UI_SOURCE = "the pipeline's UI execution config"


@dataclass(frozen=True)
class ResolvedConfig:
    config: ExecutionConfig
    source: str  # the file's path in the repository, or UI_SOURCE


class ConfigError(Exception):
    """The build's config cannot be used; ``problems`` lists why, one line each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"invalid configuration in {source}: {'; '.join(problems)}")


def candidate_files(snapshot: Mapping[str, Any]) -> tuple[str, ...]:
    """The repository files to look for, in order."""
    path = snapshot.get("config_path")
    if snapshot.get("config_path_explicit") and isinstance(path, str) and path.strip():
        return (path,)
    return DEFAULT_FILES


def resolve_config(checkout: Path, snapshot: Mapping[str, Any]) -> ResolvedConfig:
    """The config of a build checked out at ``checkout``; raises ConfigError. Blocking I/O."""
    root = checkout.resolve()
    for name in candidate_files(snapshot):
        path = checkout / name
        if not path.exists() and not path.is_symlink():
            continue
        if not path.resolve().is_relative_to(root):
            raise ConfigError(name, ["the file points outside the repository"])
        try:
            with path.open("rb") as file:
                # One byte past the bound is enough to know the file is too large.
                raw = file.read(MAX_REPOSITORY_YAML_BYTES + 1)
            if len(raw) > MAX_REPOSITORY_YAML_BYTES:
                raise ConfigError(name, [repository_yaml_too_large(path.stat().st_size)])
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(name, [f"cannot read the file: {exc}"]) from exc
        config, problems = parse_repository_yaml(text)
        if config is None:
            raise ConfigError(name, problems)
        return ResolvedConfig(config, name)
    if "ui_execution_config" not in snapshot:
        raise ConfigError(
            UI_SOURCE,
            [
                f"no {' or '.join(candidate_files(snapshot))} in the repository "
                "and no UI execution config in the build's snapshot"
            ],
        )
    config, problems = parse_execution_config(snapshot["ui_execution_config"])
    if config is None:
        raise ConfigError(UI_SOURCE, problems)
    return ResolvedConfig(config, UI_SOURCE)
