"""Builds: states, the transitions between them and the wire shapes (contract §2.7, §4)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from oore.errors import Conflict

MAX_ATTEMPTS = 3
CHANGELOG_MAX_BYTES = 4000


class BuildStatus(StrEnum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    ASSIGNED = "assigned"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    TIMED_OUT = "timed_out"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def active(self) -> bool:
        """Bound to a runner: assigned or running."""
        return self in (BuildStatus.ASSIGNED, BuildStatus.RUNNING)


TERMINAL = frozenset(
    {
        BuildStatus.SUCCEEDED,
        BuildStatus.FAILED,
        BuildStatus.CANCELED,
        BuildStatus.TIMED_OUT,
        BuildStatus.EXPIRED,
    }
)

# Contract §4.1, plus two moves of ours: a running build whose runner was lost goes back
# to the queue (running → queued), and one lost too often fails (assigned → failed).
TRANSITIONS: dict[BuildStatus, frozenset[BuildStatus]] = {
    BuildStatus.QUEUED: frozenset(
        {
            BuildStatus.SCHEDULED,
            BuildStatus.ASSIGNED,
            BuildStatus.CANCELED,
            BuildStatus.EXPIRED,
            BuildStatus.FAILED,
        }
    ),
    BuildStatus.SCHEDULED: frozenset(
        {BuildStatus.ASSIGNED, BuildStatus.QUEUED, BuildStatus.CANCELED, BuildStatus.EXPIRED}
    ),
    BuildStatus.ASSIGNED: frozenset(
        {
            BuildStatus.RUNNING,
            BuildStatus.QUEUED,
            BuildStatus.CANCELED,
            BuildStatus.TIMED_OUT,
            BuildStatus.FAILED,
        }
    ),
    BuildStatus.RUNNING: frozenset(
        {
            BuildStatus.SUCCEEDED,
            BuildStatus.FAILED,
            BuildStatus.CANCELED,
            BuildStatus.TIMED_OUT,
            BuildStatus.QUEUED,
        }
    ),
    BuildStatus.SUCCEEDED: frozenset({BuildStatus.EXPIRED}),
    BuildStatus.FAILED: frozenset({BuildStatus.EXPIRED}),
    BuildStatus.CANCELED: frozenset({BuildStatus.EXPIRED}),
    BuildStatus.TIMED_OUT: frozenset({BuildStatus.EXPIRED}),
    BuildStatus.EXPIRED: frozenset(),
}

RUNNER_REPORTABLE = frozenset({BuildStatus.RUNNING, BuildStatus.SUCCEEDED, BuildStatus.FAILED})


def check_transition(current: BuildStatus, target: BuildStatus) -> None:
    """409 ``invalid_transition`` unless ``current → target`` is allowed."""
    if target not in TRANSITIONS[current]:
        raise Conflict("invalid_transition", f"Cannot move a build from {current} to {target}")


def ending_for_runner(status: BuildStatus, actor: str | None, reason: str | None) -> str:
    """How a build ended, told to the runner that held it ("The build was canceled by x")."""
    verbs = {
        BuildStatus.CANCELED: "was canceled",
        BuildStatus.TIMED_OUT: "timed out",
        BuildStatus.EXPIRED: "expired",
    }
    text = f"The build {verbs.get(status, status.value)}"
    if actor and not actor.startswith(("system", "runner:")):
        return f"{text} by {actor}"
    return f"{text} ({reason})" if reason else text


def concurrent_modification() -> Conflict:
    return Conflict("concurrent_modification", "The build changed while this request ran")


class TriggerType(StrEnum):
    MANUAL = "manual"
    WEBHOOK = "webhook"
    API = "api"
    SCHEDULE = "schedule"


@dataclass(frozen=True)
class LiveBuilds:
    """How many builds are in each live status, and the queued ones by required labels."""

    by_status: dict[BuildStatus, int]
    queued_by_labels: dict[tuple[str, ...], int]


@dataclass(frozen=True)
class StepResult:
    name: str
    status: str
    started_at: int
    finished_at: int
    duration_ms: int
    exit_code: int | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_ms": self.duration_ms,
        }
        if self.exit_code is not None:
            body["exit_code"] = self.exit_code
        return body


@dataclass(frozen=True)
class BuildEvent:
    id: str
    build_id: str
    from_status: BuildStatus | None
    to_status: BuildStatus
    actor: str | None
    reason: str | None
    created_at: int

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "build_id": self.build_id,
            "to_status": self.to_status.value,
            "created_at": self.created_at,
        }
        if self.from_status is not None:
            body["from_status"] = self.from_status.value
        if self.actor is not None:
            body["actor"] = self.actor
        if self.reason is not None:
            body["reason"] = self.reason
        return body


@dataclass(frozen=True)
class WaitingReason:
    """Why no runner can take a queued build now (shown on the build, logged once)."""

    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def waiting_reason(
    required: Iterable[str], *, anyone_online: bool, labels_held: bool
) -> WaitingReason | None:
    """Why no runner can take a build that needs the ``required`` labels, given whether any
    runner is online (and not draining) and whether one of those holds all the labels."""
    need = sorted(set(required))
    wanted = ", ".join(need)
    if not anyone_online:
        message = "no runner is online"
        if need:
            message += f" (the build needs the labels {wanted})"
        return WaitingReason("no_runner_online", message)
    if not labels_held:
        return WaitingReason("no_runner_with_labels", f"no online runner has the labels {wanted}")
    return None


INSTANCE_PAUSED = "instance_paused"


def runner_policy_block(*, paused: bool, macos_held: bool, other_held: bool) -> str | None:
    """``runner_policy_block_reason`` of a queued build (contract §4.7): ``instance_paused``
    while the runner pause is on and the only online runners with its labels are direct
    macOS ones (with none online at all, ``waiting_reason`` tells that instead)."""
    return INSTANCE_PAUSED if paused and macos_held and not other_held else None


@dataclass(frozen=True)
class Build:
    id: str
    project_id: str
    pipeline_id: str
    build_number: int
    status: BuildStatus
    trigger_type: TriggerType
    trigger_actor: str | None
    trigger_event: str | None
    trigger_ref: str | None
    commit_sha: str | None
    branch: str | None
    changelog: str | None
    source_build_id: str | None
    config_snapshot: dict[str, Any]
    required_labels: tuple[str, ...]
    runner_id: str | None
    step_results: tuple[StepResult, ...] | None
    exit_code: int | None
    attempt: int
    lease_expires_at: int | None
    queued_at: int
    started_at: int | None
    finished_at: int | None
    created_at: int
    updated_at: int
    context: dict[str, Any] = field(default_factory=dict)
    # The runner that last held the build; kept when it ends and when the runner is deleted.
    last_runner_id: str | None = None
    # Queued builds in list/detail only: why no runner can take it now (None: one can).
    waiting: WaitingReason | None = None
    # Queued builds only: the runner policy that holds it back (``instance_paused``).
    block_reason: str | None = None

    def log_fields(self) -> dict[str, object]:
        """What names this build in the daemon's log lines (the project by name if known)."""
        return {
            "build_id": self.id,
            "project": self.context.get("project_name") or self.project_id,
            "number": self.build_number,
        }

    def to_json(self, *, redact: bool = False, with_context: bool = False) -> dict[str, Any]:
        """The wire shape of contract §2.7; optional fields are omitted when empty."""
        snapshot = redact_snapshot(self.config_snapshot) if redact else self.config_snapshot
        body: dict[str, Any] = {
            "id": self.id,
            "project_id": self.project_id,
            "pipeline_id": self.pipeline_id,
            "build_number": self.build_number,
            "status": self.status.value,
            "trigger_type": self.trigger_type.value,
            "config_snapshot": snapshot,
            "attempt": self.attempt,
            "queued_at": self.queued_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        optional: dict[str, Any] = {
            "trigger_actor": self.trigger_actor,
            "trigger_event": self.trigger_event,
            "trigger_ref": self.trigger_ref,
            "commit_sha": self.commit_sha,
            "branch": self.branch,
            "changelog": self.changelog,
            "source_build_id": self.source_build_id,
            "runner_id": self.runner_id,
            "last_runner_id": self.last_runner_id,
            "exit_code": self.exit_code,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        if self.required_labels:
            body["runner_labels"] = list(self.required_labels)
        if self.step_results:
            body["step_results"] = [step.to_json() for step in self.step_results]
        if self.block_reason is not None and self.status is BuildStatus.QUEUED:
            body["runner_policy_block_reason"] = self.block_reason
        if with_context and self.status is BuildStatus.QUEUED:
            body["waiting_reason"] = None if self.waiting is None else self.waiting.to_json()
        if with_context:
            context = {key: value for key, value in self.context.items() if value is not None}
            if context:
                body["context"] = context
        return body


REDACTED = "[REDACTED]"


def redact_snapshot(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A copy of a config snapshot with every UI env value replaced (contract §2.7)."""
    ui = snapshot.get("ui_execution_config")
    if not isinstance(ui, dict) or not isinstance(ui.get("env"), list):
        return snapshot
    env = [
        {**entry, "value": REDACTED} if isinstance(entry, dict) else entry for entry in ui["env"]
    ]
    return {**snapshot, "ui_execution_config": {**ui, "env": env}}


@dataclass(frozen=True)
class Transition:
    """A compare-and-set status change with the columns that go with it."""

    build_id: str
    expected: BuildStatus
    target: BuildStatus
    actor: str | None
    reason: str | None
    now: int
    exit_code: int | None = None
    steps: Sequence[StepResult] | None = None
    requeue: bool = False
    runner_id: str | None = None


@dataclass(frozen=True)
class QueuedBuild:
    """What the dispatcher needs of a queued build."""

    id: str
    required_labels: frozenset[str]
    queued_at: int
