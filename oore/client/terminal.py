"""What goes to a terminal and what goes to a pipe: colours, tables and a progress bar."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import TextIO

# CSI sequences (colours, cursor moves), OSC sequences (titles, links), character set
# choices and the other two-byte escapes.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()*+][0-~]|\x1b[@-Z\\-_]"
)


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    """Plain aligned columns; the last column is not padded."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


class Progress:
    """A one-line bar on ``stream`` (redrawn at most ten times a second), or nothing when
    ``stream`` is not a terminal."""

    WIDTH = 30

    def __init__(self, stream: TextIO, label: str, total: int | None) -> None:
        self.stream = stream
        self.label = label
        self.total = total
        self.done = 0
        self.enabled = is_tty(stream)
        self._drawn = 0.0

    def render(self) -> str:
        if self.total:
            share = min(1.0, self.done / self.total)
            filled = int(share * self.WIDTH)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            return (
                f"{self.label} [{bar}] {share * 100:3.0f}% "
                f"{human_size(self.done)}/{human_size(self.total)}"
            )
        return f"{self.label} {human_size(self.done)}"

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.enabled and now - self._drawn >= 0.1:
            self._drawn = now
            self.stream.write("\r" + self.render())
            self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\r" + self.render() + "\n")
            self.stream.flush()
