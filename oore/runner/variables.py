"""A build's variables on the runner: its environment, and the values its log must hide.

The runner masks, before any line leaves the machine, the values of the server-side
secrets it was handed and of the repository file's ``env`` entries marked
``secret: true`` (values of at least 4 characters). A file's secret is known only here,
so this is the one place it can be masked; the server masks its own secrets again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from oore.domain.logs import LogLine, mask_secrets
from oore.domain.pipeline_config import EnvVar
from oore.domain.variables import BuildVariable, MergedEnv, maskable, merge_env, ui_env_of
from oore.runner.client import LogChunk


class LogMask:
    """Masks the secrets it knows in a batch of log lines (also across the lines)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = maskable(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        self._secrets = maskable((*self._secrets, *secrets))

    def __call__(self, chunks: Sequence[LogChunk]) -> list[LogChunk]:
        if not self._secrets:
            return list(chunks)
        lines = [LogLine(chunk.sequence, chunk.content, chunk.stream) for chunk in chunks]
        masked = mask_secrets(lines, self._secrets)
        return [
            LogChunk(line.sequence, line.content, chunk.stream)
            for line, chunk in zip(masked, chunks, strict=True)
        ]


def server_secrets(variables: Iterable[BuildVariable]) -> list[str]:
    return [var.value for var in variables if var.secret]


def file_secrets(env: Iterable[EnvVar]) -> list[str]:
    return [var.value for var in env if var.secret]


def pipeline_env(
    snapshot: Mapping[str, Any],
    variables: Sequence[BuildVariable],
    file_env: Sequence[EnvVar] | None,
) -> tuple[list[EnvVar], MergedEnv]:
    """The pipeline's part of the steps' environment (see :func:`merge_env`), as EnvVars
    for :func:`oore.runner.executor.build_environment`, and the merge itself."""
    merged = merge_env(
        ui_env_of(snapshot),
        variables,
        None if file_env is None else [(var.key, var.value) for var in file_env],
    )
    return [EnvVar(key, value) for key, value in merged.env.items()], merged
