"""Retention: how long artifacts, logs and builds are kept, and what a cleanup run did
(contract §2.14, §4.2, §12).

The instance has one set of settings (stored, else the defaults, where
``artifact_retention_days`` is the daemon's ``OORED_ARTIFACT_TTL_DAYS``); a project may
override any of its policy fields. A number is a count of days (or of builds) of at
least 1; null keeps forever. Past ``build_retention_days`` or beyond the newest
``keep_last_builds``, the ``target`` says what goes: ``artifacts_only`` deletes the
build's artifacts and moves it to ``expired``, ``full`` deletes the build itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from oore.errors import InvalidInput

DAY_SECONDS = 86400
DEFAULT_INTERVAL_SECS = 3600
MIN_INTERVAL_SECS = 60
MAX_NUMBER = 1_000_000  # days or builds: more than anyone keeps, small enough for integers
BATCH = 100  # rows per cleanup query (§12)
RUN_BUDGET_SECS = 30.0  # a run stops starting new batches after this (§12)
MAX_REPORTED_ERRORS = 20
EXPIRED_REASON = "retention: artifacts expired"
ACTOR = "system:retention"

NUMBER_FIELDS = (
    "artifact_retention_days",
    "log_retention_days",
    "build_retention_days",
    "keep_last_builds",
)
POLICY_FIELDS = (*NUMBER_FIELDS, "target")
GLOBAL_FIELDS = (*POLICY_FIELDS, "cleanup_interval_secs")


class Target(StrEnum):
    """What goes when a build is past the build limits."""

    ARTIFACTS_ONLY = "artifacts_only"
    FULL = "full"


@dataclass(frozen=True)
class Policy:
    """The rules that apply to one project's builds."""

    artifact_retention_days: int | None = None
    log_retention_days: int | None = None
    build_retention_days: int | None = None
    keep_last_builds: int | None = None
    target: Target = Target.ARTIFACTS_ONLY

    def to_json(self) -> dict[str, Any]:
        return {
            "artifact_retention_days": self.artifact_retention_days,
            "log_retention_days": self.log_retention_days,
            "build_retention_days": self.build_retention_days,
            "keep_last_builds": self.keep_last_builds,
            "target": self.target.value,
        }


@dataclass(frozen=True)
class RetentionSettings:
    """The instance's settings: the policy of every project without an override."""

    policy: Policy
    cleanup_interval_secs: int = DEFAULT_INTERVAL_SECS
    updated_at: int | None = None  # None: nothing stored, these are the defaults

    @property
    def source(self) -> str:
        return "default" if self.updated_at is None else "database"

    def to_json(self) -> dict[str, Any]:
        body = {
            **self.policy.to_json(),
            "cleanup_interval_secs": self.cleanup_interval_secs,
            "source": self.source,
        }
        if self.updated_at is not None:
            body["updated_at"] = self.updated_at
        return body


def default_settings(artifact_ttl_days: int | None) -> RetentionSettings:
    """The settings before any are saved: artifacts kept ``artifact_ttl_days`` (the
    daemon's ``OORED_ARTIFACT_TTL_DAYS``), everything else forever, every hour."""
    return RetentionSettings(Policy(artifact_retention_days=artifact_ttl_days))


@dataclass(frozen=True)
class ProjectOverride:
    """The policy fields a project sets for itself (a field left out follows the
    instance; a number set to None keeps forever in this project)."""

    fields: Mapping[str, Any] = field(default_factory=dict)
    updated_at: int | None = None

    def apply(self, policy: Policy) -> Policy:
        """``policy`` with this project's fields in place of the instance's."""
        changes: dict[str, Any] = {k: v for k, v in self.fields.items() if k in NUMBER_FIELDS}
        if "target" in self.fields:
            changes["target"] = Target(self.fields["target"])
        return replace(policy, **changes)

    def to_json(self) -> dict[str, Any]:
        return {name: self.fields[name] for name in POLICY_FIELDS if name in self.fields}


def _invalid(name: str, message: str) -> InvalidInput:
    return InvalidInput("validation_error", f"{name} {message}")


def _number(name: str, value: Any, *, minimum: int = 1, nullable: bool = True) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "a whole number or null" if nullable else "a whole number"
        raise _invalid(name, f"must be {kind}")
    if not minimum <= value <= MAX_NUMBER:
        raise _invalid(name, f"must be at least {minimum} (and at most {MAX_NUMBER})")
    return value


def _target(value: Any) -> Target:
    try:
        return Target(value) if isinstance(value, str) else Target("")
    except ValueError:
        raise _invalid("target", "must be artifacts_only or full") from None


def _check_names(fields: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for name in fields:
        if name not in allowed:
            raise InvalidInput("validation_error", f"{name} is not a retention setting")


def parse_settings_update(
    current: RetentionSettings, fields: Mapping[str, Any]
) -> RetentionSettings:
    """The instance settings after a ``PUT``: the fields given replace the current ones,
    those left out keep theirs. 400 ``validation_error`` naming the first bad field."""
    _check_names(fields, GLOBAL_FIELDS)
    policy = current.policy
    changes: dict[str, Any] = {}
    for name in NUMBER_FIELDS:
        if name in fields:
            changes[name] = _number(name, fields[name])
    if "target" in fields:
        changes["target"] = _target(fields["target"])
    interval = current.cleanup_interval_secs
    if "cleanup_interval_secs" in fields:
        checked = _number(
            "cleanup_interval_secs",
            fields["cleanup_interval_secs"],
            minimum=MIN_INTERVAL_SECS,
            nullable=False,
        )
        assert checked is not None
        interval = checked
    return RetentionSettings(replace(policy, **changes), interval, current.updated_at)


def parse_override(fields: Mapping[str, Any]) -> ProjectOverride:
    """A project's override from a ``PUT`` body, which replaces any earlier one.
    400 ``validation_error`` naming the first bad field."""
    _check_names(fields, POLICY_FIELDS)
    kept: dict[str, Any] = {}
    for name in NUMBER_FIELDS:
        if name in fields:
            kept[name] = _number(name, fields[name])
    if "target" in fields:
        kept["target"] = _target(fields["target"]).value
    return ProjectOverride(kept)


def effective_policy(
    settings: RetentionSettings | None, override: ProjectOverride | None, ttl_days: int | None
) -> Policy:
    """A project's policy: its override over the instance's saved settings (else the
    defaults, with ``ttl_days`` as the artifact retention)."""
    policy = (settings or default_settings(ttl_days)).policy
    return policy if override is None else override.apply(policy)


def artifact_expiry(policy: Policy, now: int) -> int | None:
    """When an artifact made now runs out under ``policy`` (None: never)."""
    days = policy.artifact_retention_days
    return None if days is None else now + days * DAY_SECONDS


@dataclass(frozen=True)
class CleanupReport:
    """What one cleanup run did; ``next_run_at`` is filled in when it is shown."""

    started_at: int
    finished_at: int
    duration_ms: int
    artifacts_deleted: int = 0
    bytes_freed: int = 0
    builds_expired: int = 0
    builds_deleted: int = 0
    log_lines_deleted: int = 0
    errors: tuple[str, ...] = ()

    @property
    def outcome(self) -> str:
        """``ok``, or ``partial`` when something was left for the next run."""
        return "partial" if self.errors else "ok"

    def to_json(self, next_run_at: int) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_ms": self.duration_ms,
            "artifacts_deleted": self.artifacts_deleted,
            "bytes_freed": self.bytes_freed,
            "builds_expired": self.builds_expired,
            "builds_deleted": self.builds_deleted,
            "log_lines_deleted": self.log_lines_deleted,
            "errors": list(self.errors),
            "next_run_at": next_run_at,
        }


def next_run_at(last: CleanupReport | None, interval: int, first_run_at: int) -> int:
    """When the next run is due: ``interval`` after the last one started (so a changed
    interval applies at once), or ``first_run_at`` before any run."""
    return first_run_at if last is None else last.started_at + interval
