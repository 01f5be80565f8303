"""What scheduling needs from the layers above it, as protocols (it imports no service)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from oore.domain.builds import Build
from oore.domain.logs import LogLine


class Clock(Protocol):
    """Wall-clock time for timestamps that leave the process (Unix seconds)."""

    def now(self) -> int: ...


class Metrics(Protocol):
    """Counters told of claims and of builds leaving a runner's hands."""

    def build_claimed(self, build: Build) -> None: ...

    def build_finished(self, build: Build) -> None: ...

    def logs_stored(self, lines: Sequence[LogLine]) -> None:
        """(Read by the log service through ``Scheduling.metrics``.)"""


class Events(Protocol):
    """The event hub: told of every committed build and runner change, never blocks."""

    def build_changed(self, build: Build) -> None: ...

    def runner_changed(self, runner_id: str, *, deleted: bool = False) -> None: ...
