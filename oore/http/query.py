"""Query-string parsing shared by list endpoints; undecodable values are 400 invalid_request.

Text values holding a control character (NUL included) or a lone surrogate, and integers
outside the signed 64-bit range (what the database stores), count as undecodable.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from quart import request

from oore.domain.json_input import INT_MAX, INT_MIN
from oore.errors import InvalidInput, InvalidRequest

_UNUSABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Enough characters for any 64-bit integer with a sign; a longer one is out of range.
_MAX_INT_CHARS = 20


def query_str(name: str) -> str | None:
    """A trimmed query value, or None when absent or blank; 400 ``invalid_request`` when it
    holds a control character or a lone surrogate."""
    return text_value(name, request.args.get(name))


def query_int(name: str) -> int | None:
    """An integer query value; one that is not an integer, or is outside the signed 64-bit
    range, is 400 ``invalid_request``."""
    return int_value(name, request.args.get(name))


def text_value(name: str, value: str | None) -> str | None:
    """:func:`query_str` of a value already taken from a query string."""
    if value is None:
        return None
    if _UNUSABLE.search(value):
        raise InvalidRequest(details=f"{name}: control characters are not allowed")
    value = value.strip()
    return value or None


def int_value(name: str, raw: str | None) -> int | None:
    """:func:`query_int` of a value already taken from a query string."""
    value = text_value(name, raw)
    if value is None:
        return None
    try:
        number = int(value[: _MAX_INT_CHARS + 1])
    except ValueError:
        raise InvalidRequest(details=f"{name}: not an integer") from None
    if len(value) > _MAX_INT_CHARS or not INT_MIN <= number <= INT_MAX:
        raise InvalidRequest(details=f"{name}: out of the 64-bit range")
    return number


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
