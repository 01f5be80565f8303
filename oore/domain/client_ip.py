"""The effective client address (contract §0.3)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

_FORWARD_HEADERS = ("cf-connecting-ip", "forwarded", "x-forwarded-for", "x-real-ip")


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address from a header value or peer (quotes, brackets and a port allowed)."""
    text = text.strip().strip('"')
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _candidates(name: str, value: str) -> list[str]:
    if name == "forwarded":
        found = []
        for element in value.split(","):
            for pair in element.split(";"):
                key, _, val = pair.strip().partition("=")
                if key.lower() == "for" and val:
                    found.append(val)
        return found
    if name == "x-forwarded-for":
        return [part for part in value.split(",") if part.strip()]
    return [value]


def is_loopback(address: str | None) -> bool:
    ip = parse_ip(address) if address else None
    return ip is not None and ip.is_loopback


def effective_client_ip(peer: str | None, headers: Mapping[str, str]) -> str | None:
    """Peer address, unless the peer is loopback and a forwarding header names someone else."""
    if not is_loopback(peer):
        return peer
    first: str | None = None
    for name in _FORWARD_HEADERS:
        value = headers.get(name)
        if not value:
            continue
        for candidate in _candidates(name, value):
            ip = parse_ip(candidate)
            if ip is None:
                continue
            if first is None:
                first = str(ip)
            if not ip.is_loopback:
                return str(ip)
    return first or peer
