"""Wall-clock time for timestamps that leave the process (Unix seconds)."""

from __future__ import annotations

import time
from typing import Protocol


class WallClock(Protocol):
    def now(self) -> int: ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> int:
        return int(time.time())
