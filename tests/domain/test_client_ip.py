from __future__ import annotations

import pytest

from oore.domain.client_ip import effective_client_ip, is_loopback


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        ("10.0.0.5", {"x-forwarded-for": "127.0.0.1"}, "10.0.0.5"),
        ("127.0.0.1", {}, "127.0.0.1"),
        ("127.0.0.1", {"x-forwarded-for": "127.0.0.1, 203.0.113.9"}, "203.0.113.9"),
        ("::1", {"forwarded": 'for="[2001:db8::1]:443";proto=https'}, "2001:db8::1"),
        ("127.0.0.1", {"cf-connecting-ip": "198.51.100.2", "x-real-ip": "1.2.3.4"}, "198.51.100.2"),
        ("127.0.0.1", {"x-real-ip": "127.0.0.2"}, "127.0.0.2"),
        ("127.0.0.1", {"x-forwarded-for": "garbage"}, "127.0.0.1"),
    ],
)
def test_effective_client_ip(peer: str, headers: dict[str, str], expected: str) -> None:
    assert effective_client_ip(peer, headers) == expected


def test_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1")
    assert not is_loopback("192.0.2.1") and not is_loopback(None) and not is_loopback("x")
