"""Which server a runner talks to, and in what order it moves on."""

from __future__ import annotations

import pytest

from oore.cli import server_urls
from oore.runner.client import ConnectionFailed
from oore.runner.servers import Servers, split_server_urls

A, B, C = "http://a.test", "http://b.test:8787", "https://c.test/oore"
GONE = ConnectionFailed("connection refused")


def test_urls_come_repeated_or_comma_separated_in_the_order_given() -> None:
    assert split_server_urls([f"{A}/", f" {B} , {C},"]) == (A, B, C)
    assert split_server_urls([f"{A},{A}/", B, A]) == (A, B), "repeats are dropped"
    assert split_server_urls([A]) == (A,)
    with pytest.raises(ValueError, match=r"'b\.test' is not an http"):
        split_server_urls([f"{A},b.test"])
    with pytest.raises(ValueError, match="no server URL"):
        split_server_urls([" , "])


def test_the_command_takes_the_servers_from_the_option_else_the_environment() -> None:
    environ = {"OORE_SERVER": f"{B},{C}"}
    assert server_urls([A], environ) == (A,)
    assert server_urls([A, f"{B},{C}"], environ) == (A, B, C)
    assert server_urls(None, environ) == (B, C)


def test_calls_go_to_the_first_url_until_it_cannot_be_reached() -> None:
    said: list[str] = []
    servers = Servers([A, B, C], say=said.append)
    assert servers.home == A
    first = servers.current
    assert first.url == A
    assert servers.unreachable(first, GONE)
    assert servers.current.url == B
    assert said == [f"no answer from {A} ({GONE}); switching to {B}"]
    assert servers.unreachable(servers.current, GONE)
    assert servers.unreachable(servers.current, GONE)
    assert servers.current.url == A, "round robin: after the last comes the first again"
    assert servers.home == A, "the identity stays under the first URL"


def test_calls_failing_together_move_on_once() -> None:
    said: list[str] = []
    servers = Servers([A, B, C], say=said.append)
    # A heartbeat, a claim and a log batch were all on their way to A when it died.
    used = [servers.current, servers.current, servers.current]
    assert [servers.unreachable(server, GONE) for server in used] == [True, False, False]
    assert servers.current.url == B
    assert len(said) == 1
    # A call made before the move reports late: B, in use now, is not to blame.
    assert not servers.unreachable(used[0], GONE)
    assert servers.current.url == B
    assert servers.in_use(servers.current) and not servers.in_use(used[0])


def test_with_one_url_a_failure_moves_nothing_and_says_nothing() -> None:
    said: list[str] = []
    servers = Servers([f"{A}/"], say=said.append)
    first = servers.current
    assert not servers.unreachable(first, GONE)
    assert servers.current == first and first.url == A
    assert said == []
