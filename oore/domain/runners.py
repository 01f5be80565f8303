"""Runners as the API shows them (contract §2.8, §5)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from oore.domain.text import name_problem
from oore.errors import InvalidInput

PROTOCOL_VERSION = 4
MAX_WAIT_SECONDS = 60
MAX_LABELS = 32
MAX_LABEL_CHARS = 64
_LABEL = re.compile(r"[A-Za-z0-9_.:/-]+")
# What a Mac reports as ``capabilities.os``: oore's own agent sends Python's
# ``platform.system().lower()`` ("darwin"), the Rust runner of contract §5.1 "macos".
MACOS_OS_NAMES = ("darwin", "macos")


class RunnerStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    BUSY = "busy"
    DRAINING = "draining"


@dataclass(frozen=True)
class Runner:
    id: str
    name: str
    status: RunnerStatus
    capabilities: Any
    labels: tuple[str, ...]
    max_concurrent: int
    draining: bool
    last_heartbeat_at: int | None
    registered_by: str | None
    created_at: int
    updated_at: int
    current_builds: tuple[str, ...] = ()  # the builds it holds now (assigned or running)

    @property
    def direct_macos(self) -> bool:
        """Whether the instance's runner pause (``direct_macos_runner_paused``) holds it."""
        return is_direct_macos(self.capabilities)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "status": self.status.value,
            "capabilities": self.capabilities,
            "labels": list(self.labels),
            "max_concurrent": self.max_concurrent,
            "draining": self.draining,
            "current_builds": list(self.current_builds),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if self.last_heartbeat_at is not None:
            body["last_heartbeat_at"] = self.last_heartbeat_at
        if self.registered_by is not None:
            body["registered_by"] = self.registered_by
        return body


def is_direct_macos(capabilities: Any) -> bool:
    """A direct macOS runner: one whose last reported capabilities say ``os`` is macOS
    (``darwin`` or ``macos``, any case). Labels do not count: they route builds, and a
    runner claims for itself, so what it says it runs on is what the pause is about."""
    if not isinstance(capabilities, dict):
        return False
    os_name = capabilities.get("os")
    return isinstance(os_name, str) and os_name.strip().lower() in MACOS_OS_NAMES


def check_runner_name(name: str) -> str:
    """Trimmed, 1..255 bytes; 400 ``invalid_name`` otherwise."""
    trimmed = name.strip()
    if not trimmed or len(trimmed) > 255 or len(trimmed.encode("utf-8", "replace")) > 255:
        raise InvalidInput("invalid_name", "Runner name must be 1..255 bytes")
    if (problem := name_problem(trimmed)) is not None:
        raise InvalidInput("invalid_name", f"Runner name {problem}")
    return trimmed


def label_problem(label: str) -> str | None:
    """What is wrong with one runner label (the rule runners and pipelines share), or None."""
    if not 1 <= len(label) <= MAX_LABEL_CHARS:
        return f"must be 1 to {MAX_LABEL_CHARS} characters (got {len(label)})"
    if not _LABEL.fullmatch(label):
        return f"may hold only letters, digits and _ . : / -, got {label!r}"
    return None


def check_labels(labels: list[str]) -> tuple[str, ...]:
    """Up to 32 labels of ``[A-Za-z0-9_.:/-]{1,64}``, de-duplicated and sorted."""
    if len(labels) > MAX_LABELS:
        raise InvalidInput("invalid_labels", f"At most {MAX_LABELS} labels")
    for label in labels:
        problem = label_problem(label)
        if problem is not None:
            raise InvalidInput("invalid_labels", f"A label {problem}")
    return tuple(sorted(set(labels)))


def enrollment_label(labels: tuple[str, ...]) -> str:
    """The name of an enrollment token created without one: its labels, within 255 chars."""
    text = ", ".join(labels)
    return text if len(text) <= 255 else text[:254] + "…"
