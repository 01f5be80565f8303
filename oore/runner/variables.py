"""A build's variables on the runner: its environment, and the values its log must hide.

The runner masks, before any line leaves the machine, the values of the server-side
secrets it was handed and of the repository file's ``env`` entries marked
``secret: true`` (values of at least 4 characters). A file's secret is known only here,
so this is the one place it can be masked; the server masks its own secrets again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
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
            replace(chunk, content=line.content) for line, chunk in zip(masked, chunks, strict=True)
        ]

    def held_back(self, chunks: Sequence[LogChunk]) -> int:
        """How many of the last ``chunks`` to keep for the next batch: those from where
        the batch's text ends with the beginning of a secret (which the next lines may
        finish), so that no part of a secret leaves in one batch and the rest in another."""
        text = "".join(chunk.content for chunk in chunks)
        start = len(text)
        for secret in self._secrets:
            for needle in dict.fromkeys((secret, secret.replace("\n", ""))):
                start = min(start, _cut_start(text, needle))
        if start == len(text):
            return 0
        offset = 0
        for index, chunk in enumerate(chunks):
            offset += len(chunk.content)
            if offset > start:
                return len(chunks) - index
        return 0


def _cut_start(text: str, needle: str) -> int:
    """Where the longest end of ``text`` that begins ``needle`` (without being all of it)
    starts; ``len(text)`` when there is none."""
    if len(needle) < 2:
        return len(text)
    first = max(0, len(text) - len(needle) + 1)
    position = text.find(needle[0], first)
    while position != -1:
        if needle.startswith(text[position:]):
            return position
        position = text.find(needle[0], position + 1)
    return len(text)


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
