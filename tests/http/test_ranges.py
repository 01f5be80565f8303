"""Byte ranges of downloads (RFC 9110 §14)."""

from __future__ import annotations

import pytest

from oore.http.ranges import ByteRange, Unsatisfiable, byte_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=10-", 100, (10, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=-1000", 100, (0, 99)),
        ("bytes=90-1000", 100, (90, 99)),
        ("bytes=99-99", 100, (99, 99)),
        ("Bytes = 5 - 6", 100, (5, 6)),
    ],
)
def test_satisfiable_ranges(header: str, size: int, expected: tuple[int, int]) -> None:
    found = byte_range(header, size)
    assert isinstance(found, ByteRange)
    assert (found.start, found.end) == expected
    assert found.length == expected[1] - expected[0] + 1
    assert found.content_range() == f"bytes {expected[0]}-{expected[1]}/{size}"


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=100-", 100),
        ("bytes=150-200", 100),
        ("bytes=-0", 100),
        ("bytes=0-", 0),
        ("bytes=-5", 0),
    ],
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    found = byte_range(header, size)
    assert isinstance(found, Unsatisfiable)
    assert found.content_range() == f"bytes */{size}"


@pytest.mark.parametrize(
    "header",
    [None, "", "bytes", "items=0-5", "bytes=a-b", "bytes=5-2", "bytes=-", "bytes=0-1,5-6", "0-5"],
)
def test_headers_that_mean_the_whole_body(header: str | None) -> None:
    assert byte_range(header, 100) is None
