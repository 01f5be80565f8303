"""What a build takes from its repository's ``.oore.yaml`` at trigger time.

The server reads the file at the build's commit through the project's source reader (a
local git repository, GitHub or GitLab) so that the file's ``runner_labels`` route the
build (added to the pipeline's) and its ``timeout`` bounds the build (under the server's
own bound). When the file is absent, too large, not UTF-8 or invalid, or the provider
cannot be asked just now, nothing is taken and the build is still created: the runner
reads the checkout, enforces the same keys itself and fails a build whose file is invalid.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from oore.domain.pipeline_config import (
    MAX_REPOSITORY_YAML_BYTES,
    ExecutionConfig,
    config_files,
    parse_repository_yaml,
)
from oore.domain.projects import Pipeline
from oore.errors import BadGateway, Conflict
from oore.eventlog import event
from oore.scheduling import FILE_TIMEOUT_KEY
from oore.services.scm import CredentialRejected
from oore.services.sources import SourceReader

log = logging.getLogger(__name__)

# What a provider answers when it cannot be read now: the runner reads the file anyway.
UNREADABLE = (BadGateway, Conflict, *CredentialRejected)


async def apply_file_settings(
    snapshot: dict[str, Any], pipeline: Pipeline, reader: SourceReader, commit_sha: str
) -> None:
    """Add the file's runner labels and timeout to a new build's snapshot, when readable."""
    try:
        config = await _file_config(reader, pipeline, commit_sha)
    except UNREADABLE as exc:
        event(
            log,
            "build.config_file_unread",
            level=logging.WARNING,
            pipeline_id=pipeline.id,
            commit_sha=commit_sha,
            code=exc.code,
        )
        return
    if config is None:
        return
    labels = set(snapshot.get("runner_labels") or ()) | set(config.runner_labels)
    if labels:
        snapshot["runner_labels"] = sorted(labels)
    if config.timeout is not None:
        snapshot[FILE_TIMEOUT_KEY] = config.timeout


async def _file_config(
    reader: SourceReader, pipeline: Pipeline, commit_sha: str
) -> ExecutionConfig | None:
    """The first pipeline file the runner would use, parsed; None when it gives nothing."""
    for name in config_files(pipeline.config_path, pipeline.config_path_explicit):
        found = await reader.file(commit_sha, name, MAX_REPOSITORY_YAML_BYTES)
        if found is None:
            continue
        if found.data is None:
            return None  # too large: the runner fails the build, it never falls back
        try:
            text = found.data.decode("utf-8")
        except UnicodeDecodeError:
            return None
        config, _ = await trio.to_thread.run_sync(parse_repository_yaml, text)
        return config
    return None
