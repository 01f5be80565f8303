"""Project and pipeline variables and secrets, and how they meet a build's own env.

A variable belongs to a project (every pipeline of it sees it) or to one pipeline; a
pipeline's variable overrides the project's of the same name. A *secret* is a variable
whose value nobody reads back: it is encrypted at rest, answered by no API, handed only
to the runner holding a build in its claim, and masked in the build's logs.

How a build's environment is put together, lowest first (see :func:`merge_env`):
the runner's own environment, the pipeline's server-side variables (the UI config's
``env``, then project variables, then pipeline variables), then the repository file's
``env``, then oore's ``OORE_*`` and ``CI``, then a step's own ``env``. The file's ``env``
and its steps' ``env`` override plain variables only: a server-side secret of the same
name keeps its value and the log says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from typing import Any

from oore.domain.logs import MIN_SECRET_CHARS
from oore.domain.pipeline_config import Step
from oore.errors import InvalidInput

MAX_VARIABLES = 128  # per project, and per pipeline (contract §8.2 env bound)
MAX_NAME_CHARS = 128
MAX_VALUE_CHARS = 4096
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Variable:
    """A stored variable as the API shows it: ``value`` is None for a secret."""

    id: str
    project_id: str
    pipeline_id: str | None
    name: str
    value: str | None
    secret: bool
    created_at: int
    updated_at: int

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "secret": self.secret,
            "scope": "pipeline" if self.pipeline_id else "project",
            "project_id": self.project_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if self.pipeline_id:
            out["pipeline_id"] = self.pipeline_id
        if not self.secret:
            out["value"] = self.value
        return out


@dataclass(frozen=True)
class BuildVariable:
    """A variable as the runner holding a build receives it."""

    name: str
    value: str = field(repr=False)
    secret: bool

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "secret": self.secret}


@dataclass(frozen=True)
class VariableInput:
    name: str
    value: str
    secret: bool


def check_name(name: object) -> str:
    """A valid variable name; 400 ``invalid_input`` otherwise."""
    if not isinstance(name, str) or not name:
        raise InvalidInput("invalid_input", "name is required")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidInput("invalid_input", f"name must be at most {MAX_NAME_CHARS} characters")
    if not NAME.fullmatch(name):
        raise InvalidInput(
            "invalid_input",
            "name must be letters, digits and underscores, not starting with a digit",
        )
    return name


def check_input(name: object, value: object, secret: object) -> VariableInput:
    """A variable to store; 400 ``invalid_input`` for a bad name, value or flag."""
    checked = check_name(name)
    if not isinstance(value, str):
        raise InvalidInput("invalid_input", "value must be a string")
    if len(value) > MAX_VALUE_CHARS:
        raise InvalidInput("invalid_input", f"value must be at most {MAX_VALUE_CHARS} characters")
    if "\x00" in value:
        raise InvalidInput("invalid_input", "value must not contain NUL")
    if not isinstance(secret, bool):
        raise InvalidInput("invalid_input", "secret must be true or false")
    return VariableInput(checked, value, secret)


def build_variables(
    project: Iterable[BuildVariable], pipeline: Iterable[BuildVariable]
) -> tuple[BuildVariable, ...]:
    """A build's server-side variables: the pipeline's override the project's by name."""
    merged = {var.name: var for var in project}
    merged.update((var.name, var) for var in pipeline)
    return tuple(sorted(merged.values(), key=lambda var: var.name))


def parse_build_variables(data: object) -> tuple[BuildVariable, ...] | None:
    """The ``variables`` of a claim answer; None when malformed."""
    if not isinstance(data, list):
        return None
    found: list[BuildVariable] = []
    for entry in data:
        if not isinstance(entry, dict):
            return None
        name, value, secret = entry.get("name"), entry.get("value"), entry.get("secret")
        if not (isinstance(name, str) and isinstance(value, str) and isinstance(secret, bool)):
            return None
        found.append(BuildVariable(name, value, secret))
    return tuple(found)


def maskable(values: Iterable[str]) -> tuple[str, ...]:
    """The values worth masking (at least MIN_SECRET_CHARS non-blank), longest first."""
    kept = {value for value in values if len(value.strip()) >= MIN_SECRET_CHARS}
    return tuple(sorted(kept, key=len, reverse=True))


@dataclass(frozen=True)
class MergedEnv:
    env: dict[str, str]
    # Names the repository file set but a server-side secret kept: said in the log.
    kept_secrets: tuple[str, ...]
    # The names of the server-side secrets, which no step's own env may override either.
    secret_names: frozenset[str] = frozenset()


def merge_env(
    ui_env: Sequence[tuple[str, str]],
    server: Sequence[BuildVariable],
    file_env: Sequence[tuple[str, str]] | None,
) -> MergedEnv:
    """The pipeline's variables for a build, before the runner's and oore's own.

    ``ui_env`` is the pipeline's UI-config env (plain), ``server`` its project and
    pipeline variables, ``file_env`` the repository file's env (None when the build runs
    the UI config). The file overrides plain values; a secret keeps its value.
    """
    env = dict(ui_env)
    secret_names: set[str] = set()
    for var in server:
        env[var.name] = var.value
        if var.secret:
            secret_names.add(var.name)
    kept: list[str] = []
    for key, value in file_env or ():
        if key in secret_names:
            kept.append(key)
            continue
        env[key] = value
    return MergedEnv(env, tuple(kept), frozenset(secret_names))


def keep_secrets_in_steps(
    steps: Sequence[Step], secret_names: AbstractSet[str]
) -> tuple[list[Step], list[tuple[str, str]]]:
    """``steps`` without the env entries that would override a server-side secret, and
    the (step name, variable name) pairs dropped, for the log to say so."""
    kept: list[tuple[str, str]] = []
    result: list[Step] = []
    for step in steps:
        dropped = [var.key for var in step.env if var.key in secret_names]
        if not dropped:
            result.append(step)
            continue
        kept.extend((step.name, name) for name in dropped)
        env = tuple(var for var in step.env if var.key not in secret_names)
        result.append(replace(step, env=env))
    return result, kept


def ui_env_of(snapshot: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The ``env`` of the UI execution config in a build's snapshot."""
    ui = snapshot.get("ui_execution_config")
    env = ui.get("env") if isinstance(ui, dict) else None
    if not isinstance(env, list):
        return []
    return [
        (entry["key"], entry["value"])
        for entry in env
        if isinstance(entry, dict)
        and isinstance(entry.get("key"), str)
        and isinstance(entry.get("value"), str)
    ]
