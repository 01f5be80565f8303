"""The in-memory rate limits: the local-login/OIDC-start window and the credential-guess
lockout, on a clock the test moves."""

from __future__ import annotations

import pytest

from oore.domain.rate_limit import GuessLimiter, WindowLimiter, client_key
from oore.errors import TooManyRequests

ATTACKER = "203.0.113.7"
NEIGHBOUR = "198.51.100.9"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        return self.now


def fail(limiter: GuessLimiter, client: str | None, times: int) -> None:
    for _ in range(times):
        limiter.failed(client)


def test_a_client_is_locked_out_at_the_limit_and_told_when_to_come_back() -> None:
    clock = Clock()
    limiter = GuessLimiter(clock)
    fail(limiter, ATTACKER, 19)
    assert limiter.refusal(ATTACKER, ["Bearer guess"]) is None
    limiter.failed(ATTACKER)
    clock.now += 15
    refusal = limiter.refusal(ATTACKER, ["Bearer guess"])
    assert isinstance(refusal, TooManyRequests)
    assert (refusal.status, refusal.code, refusal.retry_after) == (429, "too_many_attempts", 45)
    assert limiter.refused == 1
    # Nothing presented: nothing to refuse. Another client: untouched.
    assert limiter.refusal(ATTACKER, []) is None
    assert limiter.refusal(NEIGHBOUR, ["Bearer guess"]) is None
    clock.now += 45
    assert limiter.refusal(ATTACKER, ["Bearer guess"]) is None
    assert not limiter.anyone_locked


def test_failures_spread_wider_than_the_window_never_lock() -> None:
    clock = Clock()
    limiter = GuessLimiter(clock)
    for _ in range(100):
        limiter.failed(ATTACKER)
        clock.now += 4  # 15 a minute: under 20 in any 60 s
    assert limiter.refusal(ATTACKER, ["Bearer guess"]) is None
    assert limiter.failed_checks == 100


def test_a_credential_that_checked_out_still_works_from_a_locked_address() -> None:
    limiter = GuessLimiter(Clock())
    limiter.succeeded("Bearer users-session")
    limiter.succeeded(None)
    fail(limiter, ATTACKER, 20)
    assert limiter.refusal(ATTACKER, ["Bearer users-session"]) is None
    assert limiter.refusal(ATTACKER, ["Bearer guess", "Bearer users-session"]) is None
    assert limiter.refusal(ATTACKER, ["Bearer guess"]) is not None


def test_memory_is_bounded_oldest_forgotten_first() -> None:
    limiter = GuessLimiter(Clock(), limit=3, clients=2, vouched=2)
    fail(limiter, "192.0.2.1", 2)
    fail(limiter, "192.0.2.2", 2)
    fail(limiter, "192.0.2.3", 2)  # the first is forgotten: its two failures with it
    limiter.failed("192.0.2.1")
    assert limiter.refusal("192.0.2.1", ["x"]) is None
    limiter.failed("192.0.2.3")
    assert limiter.refusal("192.0.2.3", ["x"]) is not None
    for credential in ("a", "b", "a", "c"):  # "a" used again: "b" is the oldest
        limiter.succeeded(credential)
    fail(limiter, "192.0.2.9", 3)
    assert limiter.refusal("192.0.2.9", ["a"]) is None
    assert limiter.refusal("192.0.2.9", ["c"]) is None
    assert limiter.refusal("192.0.2.9", ["b"]) is not None


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        (None, "unknown"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_clients_are_addresses_and_ipv6_hosts_their_slash_64(address: str | None, key: str) -> None:
    assert client_key(address) == key


def test_one_ipv6_host_cannot_spread_guesses_over_its_prefix() -> None:
    limiter = GuessLimiter(Clock())
    for n in range(20):
        limiter.failed(f"2001:db8::{n + 1:x}")
    assert limiter.refusal("2001:db8::ffff", ["guess"]) is not None
    assert limiter.refusal("2001:db8:0:1::1", ["guess"]) is None


def test_window_limiter_counts_what_it_refuses() -> None:
    limiter = WindowLimiter(60, 3, 2, "local_login_rate_limited", "slow down")
    limiter.admit("a", 0)
    limiter.admit("a", 0)
    with pytest.raises(TooManyRequests):
        limiter.admit("a", 1)
    limiter.admit("b", 1)
    with pytest.raises(TooManyRequests):
        limiter.admit("c", 1)
    stats = limiter.statistics("local_login")
    assert (stats.per_client, stats.overall, stats.window, stats.refused) == (2, 3, 60, 2)
