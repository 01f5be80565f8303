"""Projects, their source repositories and pipelines as the API shows them (§2.5, §2.6)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from oore.domain.rbac import ProjectRole


class RepositoryProvider(StrEnum):
    GITHUB = "github"
    GITLAB = "gitlab"
    LOCAL_GIT = "local_git"


@dataclass(frozen=True)
class Repository:
    id: str
    provider: RepositoryProvider
    full_name: str
    host_url: str | None
    local_path: str | None
    default_branch: str | None

    @property
    def clone_url(self) -> str:
        """What a runner clones: the local path, or ``<host_url>/<full_name>.git`` (§4.6)."""
        if self.local_path is not None:
            return self.local_path
        return f"{(self.host_url or '').rstrip('/')}/{self.full_name}.git"


@dataclass(frozen=True)
class Project:
    id: str
    name: str
    description: str | None
    repository: Repository | None
    default_branch: str | None
    settings: dict[str, Any]
    created_by: str
    created_at: int
    updated_at: int

    def to_json(
        self, role: ProjectRole | None, *, repository_fields: bool = True
    ) -> dict[str, Any]:
        """The wire shape; ``current_user_role`` only when the caller's role is known."""
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "settings": self.settings,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if self.description:
            body["description"] = self.description
        if self.default_branch:
            body["default_branch"] = self.default_branch
        if self.repository is not None:
            body["repository_id"] = self.repository.id
            if repository_fields:
                body["repository_full_name"] = self.repository.full_name
                body["repository_provider"] = self.repository.provider.value
        if role is not None:
            body["current_user_role"] = role.value
        return body


@dataclass(frozen=True)
class Pipeline:
    """A pipeline; the config parts are kept as their validated wire JSON."""

    id: str
    project_id: str
    name: str
    config_path: str
    config_path_explicit: bool
    execution_config: dict[str, Any]
    trigger_config: dict[str, Any]
    concurrency: dict[str, Any]
    runner_labels: tuple[str, ...]
    enabled: bool
    created_at: int
    updated_at: int

    @property
    def platforms(self) -> list[str]:
        found = self.execution_config.get("platforms")
        return [str(p) for p in found] if isinstance(found, list) else []

    @property
    def cancel_previous(self) -> bool:
        return bool(self.concurrency.get("cancel_previous"))

    def to_json(self, *, redact_env: bool = False) -> dict[str, Any]:
        execution = self.execution_config
        if redact_env and isinstance(execution.get("env"), list):
            execution = {
                **execution,
                "env": [{**entry, "value": "[REDACTED]"} for entry in execution["env"]],
            }
        return {
            "id": self.id,
            "project_id": self.project_id,
            "name": self.name,
            "config_path": self.config_path,
            "config_path_explicit": self.config_path_explicit,
            "execution_config": execution,
            "trigger_config": self.trigger_config,
            "concurrency": self.concurrency,
            "runner_labels": list(self.runner_labels),
            "enabled": self.enabled,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
