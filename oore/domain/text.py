"""Rules for short text a client names things with (project, pipeline, runner, token names).

A name is one line of visible text: no control characters (NUL included), no lone
surrogates (not text at all) and no bidirectional overrides or isolates, which can make a
name display as something other than what it holds (the "Trojan Source" trick). Longer
free text (descriptions, messages) may also hold tabs and line breaks.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, lone surrogates, the bidi embeddings/overrides and isolates.
_NOT_IN_A_NAME = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
# The same, less tab, line feed and carriage return.
_NOT_IN_TEXT = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]"
)

MAX_NAME_CHARS = 255
MAX_TEXT_CHARS = 4096


def name_problem(value: str, *, max_chars: int = MAX_NAME_CHARS) -> str | None:
    """What is wrong with ``value`` as a one-line name, or None (blank is the caller's rule)."""
    if len(value) > max_chars:
        return f"must be at most {max_chars} characters (got {len(value)})"
    found = _NOT_IN_A_NAME.search(value)
    if found is not None:
        return f"must not contain the character U+{ord(found.group()):04X}"
    return None


def text_problem(value: str, *, max_chars: int = MAX_TEXT_CHARS) -> str | None:
    """Like :func:`name_problem` for multi-line text: tabs and line breaks are allowed."""
    if len(value) > max_chars:
        return f"must be at most {max_chars} characters (got {len(value)})"
    found = _NOT_IN_TEXT.search(value)
    if found is not None:
        return f"must not contain the character U+{ord(found.group()):04X}"
    return None
