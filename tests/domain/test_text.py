"""Names and free text from clients: length, control characters, bidi overrides."""

from __future__ import annotations

import pytest

from oore.domain.text import MAX_NAME_CHARS, name_problem, text_problem


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("x" * (MAX_NAME_CHARS + 1), "at most 255 characters"),
        ("a\x00b", "U+0000"),
        ("a\x07b", "U+0007"),
        ("a\nb", "U+000A"),
        ("a\x85b", "U+0085"),
        ("a\ud800b", "U+D800"),
        ("invoice\u202efdp.exe", "U+202E"),
        ("a\u2066b", "U+2066"),
    ],
)
def test_a_name_is_one_line_of_visible_text(value: str, why: str) -> None:
    problem = name_problem(value)
    assert problem is not None and why in problem


@pytest.mark.parametrize("value", ["app", "x" * MAX_NAME_CHARS, "Café ☕ 应用", "עברית"])
def test_ordinary_names_pass(value: str) -> None:
    assert name_problem(value) is None


def test_free_text_may_hold_line_breaks_but_not_other_controls() -> None:
    assert text_problem("line one\n\tline two\r\n") is None
    assert text_problem("a\x00b") is not None
    assert text_problem("a\u202eb") is not None
    assert text_problem("x" * 5000) is not None
