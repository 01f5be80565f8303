"""JSON from outside (request bodies, runner frames, webhook payloads): decoded within bounds.

A document nested deeper than :data:`MAX_DEPTH`, an integer outside the signed 64-bit
range, a number that does not fit a float (``1e400``), ``NaN``/``Infinity`` and strings
holding a lone UTF-16 surrogate (``"\\ud800"``, which is no text at all) are refused with
:class:`JsonInputError` instead of surfacing later as a recursion, conversion or
database failure. The common document pays only for a few scans of its bytes in C; the
walk over the decoded value happens only when those scans say it might be needed, and
the common document is decoded by orjson.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

MAX_DEPTH = 64
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1

# A run of 19 digits or more may be an integer beyond 64 bits; shorter ones never are.
# Found by mapping every digit byte to "0" and every other byte to " ": a regular
# expression without a literal to look for tries a match at every position, about 20
# times slower on a runner's log frame.
_DIGITS_ONLY = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN = b"0" * 19
# A \uD800-\uDFFF escape: a surrogate, paired (fine) or alone (refused after decoding).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_TEXT = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def has_long_digit_run(text: str | bytes) -> bool:
    """Whether ``text`` holds 19 digits in a row (so a number in it may pass 64 bits)."""
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    return _LONG_RUN in raw.translate(_DIGITS_ONLY)


class JsonInputError(ValueError):
    """The document is not JSON this server accepts; the message (a predicate) says why."""


def decode_json(raw: bytes | str) -> Any:
    """The decoded document; :class:`JsonInputError` when it is not acceptable."""
    if isinstance(raw, bytes):
        long_digits = has_long_digit_run(raw)
        surrogates = _SURROGATE_ESCAPE.search(raw) is not None
        containers = raw.count(b"[") + raw.count(b"{")
    else:
        long_digits = has_long_digit_run(raw)
        surrogates = _SURROGATE_ESCAPE_TEXT.search(raw) is not None
        containers = raw.count("[") + raw.count("{")
    if not long_digits and not surrogates and containers <= MAX_DEPTH:
        # The common document: orjson refuses what the bounds refuse (NaN, 1e400, lone
        # surrogates); when it refuses, the slower decoder below says why, as it always has.
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        data = json.loads(
            raw,
            parse_int=_bounded_int if long_digits else None,
            parse_float=_finite_float,
            parse_constant=_no_constant,
        )
    except JsonInputError:
        raise
    except RecursionError:
        raise JsonInputError(f"is nested deeper than {MAX_DEPTH} levels") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise JsonInputError("is not valid JSON") from None
    except ValueError as exc:  # anything else the decoder refuses
        raise JsonInputError(f"is not valid JSON ({exc})") from None
    if containers > MAX_DEPTH or surrogates:
        _check_value(data, check_strings=surrogates)
    return data


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 19:
        raise JsonInputError("holds an integer out of the 64-bit range")
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise JsonInputError("holds an integer out of the 64-bit range")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonInputError("holds a number out of range")
    return value


def _no_constant(name: str) -> Any:
    raise JsonInputError(f"holds {name}, which is not JSON")


def _check_value(data: Any, *, check_strings: bool) -> None:
    """Refuse nesting deeper than MAX_DEPTH and, when asked, strings with lone surrogates."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if check_strings and _SURROGATE.search(value):
                raise JsonInputError("holds a lone UTF-16 surrogate (\\ud800-\\udfff) in a string")
            continue
        if isinstance(value, dict):
            if check_strings:
                stack.extend((key, depth) for key in value)
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > MAX_DEPTH:
            raise JsonInputError(f"is nested deeper than {MAX_DEPTH} levels")
        stack.extend(
            (child, depth + 1)
            for child in children
            if isinstance(child, dict | list) or (check_strings and isinstance(child, str))
        )
