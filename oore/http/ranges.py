"""HTTP byte ranges (RFC 9110 §14): one range is served, anything else the whole body."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start`` to ``end`` inclusive of a body of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


class Unsatisfiable:
    """A well-formed range that selects no byte of the body (answer 416)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def content_range(self) -> str:
        return f"bytes */{self.size}"


def byte_range(header: str | None, size: int) -> ByteRange | Unsatisfiable | None:
    """What a ``Range`` header asks of a body of ``size`` bytes.

    None means "send everything": no header, another unit, a malformed header, or several
    ranges (which this server does not combine; RFC 9110 lets it ignore them).
    """
    if header is None:
        return None
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in specs:
        return None
    match = _SPEC.match(specs)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            return Unsatisfiable(size)
        return ByteRange(max(0, size - suffix), size - 1, size)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        return Unsatisfiable(size)
    return ByteRange(start, min(end, size - 1), size)
