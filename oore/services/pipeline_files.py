"""What a build takes from its repository's ``.oore.yaml`` at trigger time.

The server reads the file at the build's commit when it can (a local git repository) so
that the file's ``runner_labels`` route the build (added to the pipeline's) and its
``timeout`` bounds the build (under the server's own bound). When the file cannot be read
here, is absent or invalid, nothing is taken: the runner reads the checkout, enforces the
same keys itself and fails a build whose file is invalid.
"""

from __future__ import annotations

from typing import Any

import trio

from oore.domain.pipeline_config import (
    MAX_REPOSITORY_YAML_BYTES,
    config_files,
    parse_repository_yaml,
)
from oore.domain.projects import Pipeline, Project, RepositoryProvider
from oore.scheduling import FILE_TIMEOUT_KEY
from oore.services.git import read_file


async def apply_file_settings(
    snapshot: dict[str, Any], project: Project, pipeline: Pipeline, commit_sha: str | None
) -> None:
    """Add the file's runner labels and timeout to a new build's snapshot, when readable."""
    repository = project.repository
    if (
        repository is None
        or repository.provider is not RepositoryProvider.LOCAL_GIT
        or not repository.local_path
        or commit_sha is None
    ):
        return
    for name in config_files(pipeline.config_path, pipeline.config_path_explicit):
        raw = await read_file(repository.local_path, commit_sha, name, MAX_REPOSITORY_YAML_BYTES)
        if raw is None:
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return
        config, _ = await trio.to_thread.run_sync(parse_repository_yaml, text)
        if config is None:
            return
        labels = set(snapshot.get("runner_labels") or ()) | set(config.runner_labels)
        if labels:
            snapshot["runner_labels"] = sorted(labels)
        if config.timeout is not None:
            snapshot[FILE_TIMEOUT_KEY] = config.timeout
        return
