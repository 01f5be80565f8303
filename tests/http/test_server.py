"""The connection layer's pure parts: the cap arithmetic and the request-head checks."""

from __future__ import annotations

import pytest

from oore.http.server import connection_cap, framing_problem


def test_cap_leaves_the_reserve_free_and_never_exceeds_what_fits() -> None:
    assert connection_cap(None, open_files=1024, reserved=266) == 758
    assert connection_cap(100, open_files=1024, reserved=266) == 100
    assert connection_cap(5000, open_files=1024, reserved=266) == 758
    assert connection_cap(None, open_files=100, reserved=266) == 1


@pytest.mark.parametrize(
    "host", [b"localhost", b"localhost:8787", b"[::1]:8787", b"10.0.0.1", b"ci.example.org"]
)
def test_host_names_and_addresses_pass(host: bytes) -> None:
    assert framing_problem([(b"host", host)]) is None


@pytest.mark.parametrize("host", [b"a\xffb", b"a b", b"a\x00b", b"a/b", b"a@b", b"\xc3\xa9.org"])
def test_host_outside_an_authority_is_a_problem(host: bytes) -> None:
    assert framing_problem([(b"host", host)]) == "Host is not a valid host name"


def test_two_body_framings_are_a_problem() -> None:
    headers = [(b"host", b"x"), (b"content-length", b"5"), (b"transfer-encoding", b"chunked")]
    assert framing_problem(headers) == "Content-Length and Transfer-Encoding together"
    assert framing_problem(headers[:2]) is None
    assert framing_problem([headers[0], headers[2]]) is None
