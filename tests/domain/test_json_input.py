"""JSON from outside: depth, integer range, non-finite numbers and lone surrogates."""

from __future__ import annotations

import json

import pytest

from oore.domain.json_input import INT_MAX, INT_MIN, MAX_DEPTH, JsonInputError, decode_json


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (nested(100_000), "nested deeper"),
        (b'{"a":' * 1000 + b"1" + b"}" * 1000, "nested deeper"),
        (nested(MAX_DEPTH + 1), "nested deeper"),
        (b'{"n": 1' + b"0" * 5000 + b"}", "64-bit range"),
        (b'{"n": %d}' % (INT_MAX + 1), "64-bit range"),
        (b'{"n": %d}' % (INT_MIN - 1), "64-bit range"),
        (b'{"n": NaN}', "NaN"),
        (b'{"n": -Infinity}', "Infinity"),
        (b'{"n": 1e400}', "out of range"),
        (b'{"s": "a\\ud800"}', "surrogate"),
        (b'{"\\udfff": 1}', "surrogate"),
        (b"\xff\xfe{", "not valid JSON"),
        (b"{", "not valid JSON"),
    ],
)
def test_unacceptable_documents_are_refused_with_the_reason(raw: bytes, why: str) -> None:
    with pytest.raises(JsonInputError, match=why):
        decode_json(raw)
    with pytest.raises(JsonInputError, match=why):
        decode_json(raw.decode("utf-8", "replace") if raw.startswith(b"\xff") else raw.decode())


@pytest.mark.parametrize(
    "value",
    [
        json.loads(nested(MAX_DEPTH)),
        {"n": INT_MAX, "m": INT_MIN, "f": 1.5e300},
        {"s": "\U0001f600 and \\ud800 as text", "sha": "12345678901234567890123"},
        {"s": "a\u0000b"},  # NUL is JSON text; where it is not allowed is the field's rule
        [[1, 2, 3]] * 100,
    ],
)
def test_acceptable_documents_decode_as_json_does(value: object) -> None:
    raw = json.dumps(value)
    assert decode_json(raw.encode()) == value
    assert decode_json(raw) == value
