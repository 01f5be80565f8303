"""Query-string parsing shared by list endpoints; undecodable values are 400 invalid_request."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from quart import request

from oore.errors import InvalidInput, InvalidRequest


def query_str(name: str) -> str | None:
    """A trimmed query value, or None when absent or blank."""
    value = request.args.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def query_int(name: str) -> int | None:
    """An integer query value; a value that is not an integer is 400 ``invalid_request``."""
    value = query_str(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidRequest(details=f"{name}: not an integer") from None


def query_choice(name: str, choices: Collection[str]) -> str | None:
    """One of ``choices`` or None; anything else is 400 ``invalid_input``."""
    value = query_str(name)
    if value is not None and value not in choices:
        raise InvalidInput("invalid_input", f"{name} must be one of: {', '.join(sorted(choices))}")
    return value


@dataclass(frozen=True)
class Page:
    limit: int | None
    offset: int


def query_page(*, default: int, maximum: int, strict: bool = False) -> Page:
    """``limit``/``offset``; ``strict`` refuses limit <= 0 and offset < 0 (400 invalid_input).

    Without ``strict`` a negative limit means "no limit" (contract §2.5 quirk) and a limit
    over the maximum is clamped.
    """
    limit = query_int("limit")
    offset = query_int("offset") or 0
    if strict:
        if limit is not None and limit <= 0:
            raise InvalidInput("invalid_input", "limit must be positive")
        if offset < 0:
            raise InvalidInput("invalid_input", "offset must not be negative")
    offset = max(offset, 0)
    if limit is None:
        return Page(default, offset)
    if limit < 0:
        return Page(None, offset)
    return Page(min(limit, maximum), offset)
