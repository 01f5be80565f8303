"""Previews before a build: the pipeline files of a repository at a ref (§2.5) and the
changelog a build of a pipeline would carry (§2.7)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio

from oore.domain.pipeline_config import (
    DEFAULT_CONFIG_FILES,
    MAX_REPOSITORY_YAML_BYTES,
    parse_repository_yaml,
    repository_yaml_too_large,
    validate_config_path,
)
from oore.domain.previews import (
    MAX_CHANGELOG_COMMITS,
    MAX_LISTING_BYTES,
    MAX_WORKFLOW_FILES,
    FileAt,
    TreeEntry,
    changelog_markdown,
    workflow_candidates,
    workflow_config_json,
)
from oore.domain.rbac import ProjectPermission
from oore.domain.text import name_problem
from oore.domain.users import Session
from oore.errors import InvalidInput, InvalidRequest, NotFound
from oore.services.access import Access
from oore.services.sources import SourceReader, Sources
from oore.store import Store


@dataclass(frozen=True)
class WorkflowFile:
    path: str
    valid: bool
    errors: list[str] = field(default_factory=list)
    config: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"path": self.path, "valid": self.valid, "errors": self.errors}
        if self.config is not None:
            body["config"] = self.config
        return body


@dataclass(frozen=True)
class WorkflowPreview:
    ref: str
    commit_sha: str
    path: str | None
    workflows: list[WorkflowFile]
    truncated: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "commit_sha": self.commit_sha,
            "path": self.path,
            "workflows": [workflow.to_json() for workflow in self.workflows],
            "truncated": self.truncated,
        }


@dataclass(frozen=True)
class ChangelogPreview:
    base_commit: str | None
    target_commit: str
    markdown: str

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"target_commit": self.target_commit, "markdown": self.markdown}
        if self.base_commit is not None:
            body["base_commit"] = self.base_commit
        return body


def _text_param(label: str, value: str | None) -> str | None:
    if value is not None and (problem := name_problem(value)) is not None:
        raise InvalidInput("invalid_input", f"{label} {problem}")
    return value


def _too_large(found: FileAt) -> str:
    if found.size is not None:
        return repository_yaml_too_large(found.size)
    limit = MAX_REPOSITORY_YAML_BYTES // 1024
    return f"the file is larger than {limit} KiB, the most a pipeline file may be"


def _in(path: str | None, name: str) -> str:
    return name if path is None else f"{path}/{name}"


class Previews:
    """Use cases of the two preview endpoints."""

    def __init__(self, store: Store, access: Access, sources: Sources) -> None:
        self._store = store
        self._access = access
        self._sources = sources

    # -- repository workflows -------------------------------------------------------------

    async def workflows(
        self, session: Session, project_id: str, *, ref: str | None, path: str | None
    ) -> WorkflowPreview:
        """``GET /v1/projects/{id}/repository-workflows``: the pipeline files at or under
        ``path`` (the repository root by default) at ``ref`` (the default branch), each
        parsed, with every environment value hidden."""
        project = (
            await self._access.project(session, project_id, ProjectPermission.MANAGE_PIPELINES)
        ).project
        _text_param("ref", ref)
        if path is not None and (problem := validate_config_path(path)) is not None:
            raise InvalidInput("invalid_config_path", problem.replace("config_path", "path", 1))
        reader = await self._sources.reader(project)
        assert project.repository is not None
        ref = ref or project.default_branch or project.repository.default_branch
        if ref is None:
            raise InvalidInput("invalid_input", "Give a ref: the project has no default branch")
        commit = await reader.resolve(ref)
        pipelines, _ = await self._store.pipelines.page(
            project.id, search=None, sort="name", descending=False, limit=None, offset=0
        )
        named = [p.config_path for p in pipelines if p.config_path_explicit and p.config_path]
        listing = await reader.listing(commit, path, MAX_LISTING_BYTES)
        shown, more = workflow_candidates(listing, path, named)
        files: dict[str, FileAt | None] = {}
        listed = {entry.path for entry in shown}
        asked_file = path is not None and not shown and not listing.truncated
        if (listing.truncated and (path is None or path not in listed)) or asked_file:
            # The listing was cut, or may not list a file asked for: the places a build
            # reads are looked up one by one.
            wanted = [path] if path is not None else []
            wanted += [_in(path, name) for name in DEFAULT_CONFIG_FILES]
            wanted += [p for p in named if path is None or p.startswith(path + "/")]
            for name in dict.fromkeys(wanted):
                if name in listed or len(shown) >= MAX_WORKFLOW_FILES:
                    continue
                found = await reader.file(commit, name, MAX_REPOSITORY_YAML_BYTES)
                if found is not None:
                    files[name] = found
                    shown.append(TreeEntry(name, found.size))
                    if name == path:
                        break  # a file was asked for
            shown.sort(key=lambda entry: (entry.path.count("/"), entry.path))
        workflows = [
            await self._workflow(reader, commit, entry, files.get(entry.path)) for entry in shown
        ]
        return WorkflowPreview(ref, commit, path, workflows, more or listing.truncated)

    async def _workflow(
        self, reader: SourceReader, commit: str, entry: TreeEntry, found: FileAt | None
    ) -> WorkflowFile:
        if entry.size is not None and entry.size > MAX_REPOSITORY_YAML_BYTES:
            return WorkflowFile(entry.path, False, [repository_yaml_too_large(entry.size)])
        if found is None:
            found = await reader.file(commit, entry.path, MAX_REPOSITORY_YAML_BYTES)
        if found is None:
            return WorkflowFile(entry.path, False, ["the file could not be read"])
        if found.data is None:
            return WorkflowFile(entry.path, False, [_too_large(found)])
        try:
            text = found.data.decode("utf-8")
        except UnicodeDecodeError:
            return WorkflowFile(entry.path, False, ["the file is not UTF-8 text"])
        config, problems = await trio.to_thread.run_sync(parse_repository_yaml, text)
        if config is None:
            return WorkflowFile(entry.path, False, problems)
        return WorkflowFile(entry.path, True, [], workflow_config_json(config))

    # -- changelog ------------------------------------------------------------------------

    async def changelog(
        self,
        session: Session,
        project_id: str,
        *,
        pipeline_id: str | None,
        branch: str | None,
        commit_sha: str | None,
    ) -> ChangelogPreview:
        """``GET /v1/projects/{id}/builds/changelog-preview``: the commits since the commit
        of the pipeline's last succeeded build, as the Markdown a build can carry."""
        project = (
            await self._access.project(session, project_id, ProjectPermission.TRIGGER_BUILD)
        ).project
        if pipeline_id is None:
            raise InvalidRequest(details="pipeline_id: required")
        pipeline = await self._store.pipelines.get(pipeline_id)
        if pipeline is None or pipeline.project_id != project.id:
            raise NotFound("not_found", "Pipeline not found")
        _text_param("branch", branch)
        _text_param("commit_sha", commit_sha)
        if branch is None and commit_sha is None:
            raise InvalidInput("invalid_input", "Give a branch or a commit_sha")
        reader = await self._sources.reader(project)
        if commit_sha is not None:
            target = await reader.resolve(commit_sha)
        else:
            assert branch is not None
            target = await reader.resolve(branch, branch=True)
        last = await self._store.builds.last_succeeded_commit(pipeline.id)
        if last is None:
            return ChangelogPreview(None, target, "")
        try:
            base = await reader.resolve(last)
        except InvalidInput as exc:
            if exc.code != "invalid_ref":
                raise
            return ChangelogPreview(None, target, "")  # that commit is gone (a force push)
        if base == target:
            return ChangelogPreview(base, target, "")
        commits = await reader.commits(base, target, MAX_CHANGELOG_COMMITS)
        if commits is None:
            return ChangelogPreview(base, target, "")
        return ChangelogPreview(base, target, changelog_markdown(commits.commits, commits.total))
