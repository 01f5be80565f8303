"""Requests a browser page may not make (DNS rebinding, cross-site forgery), the limit on
local login, and the headers every response carries."""

from __future__ import annotations

from typing import Any

import pytest

from oore.domain.users import LOCAL_LOGIN_PER_IP_LIMIT, LOCAL_LOGIN_WINDOW
from tests.http.conftest import Api, FakeClock, Reply

LOGIN = "/v1/auth/local/login"
NETWORK = "/v1/settings/external-access/network"
FOREIGN = {"Host": "evil.example:8787", "Origin": "http://evil.example:8787"}


async def login(api: Api, headers: dict[str, str] | None = None) -> Reply:
    return await api.post(LOGIN, json={}, headers=headers)


async def test_a_rebound_name_gets_no_session_and_no_project(api: Api) -> None:
    refused = await login(api, FOREIGN)
    assert (refused.status, refused.code) == (400, "invalid_host")
    assert "session_token" not in refused.body
    token = (await login(api)).body["session_token"]
    project = await api.post(
        "/v1/projects",
        json={"name": "rebound", "local_repository_path": "/tmp"},
        token=token,
        headers={"Host": "evil.example:8787"},
    )
    assert (project.status, project.code) == (400, "invalid_host")
    read = await api.get("/v1/users/me", token=token, headers={"Host": "evil.example"})
    assert (read.status, read.code) == (400, "invalid_host")


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:8787",
        "app.localhost:8787",
        "127.0.0.1:8787",
        "127.0.0.2",
        "[::1]:8787",
        "192.168.1.20:8787",
        "[fd00::5]",
        "LOCALHOST.",
        "ci.example.com",  # the host of a configured allowed origin
    ],
)
async def test_loopback_names_ip_literals_and_configured_names_are_served(
    api: Api, host: str
) -> None:
    reply = await login(api, {"Host": host})
    assert reply.status == 200, reply.body


@pytest.mark.parametrize(
    "host", ["evil.example", "ci.example.com.evil.example", "", "a b", "x:y", "evil.example:99999"]
)
async def test_other_and_malformed_hosts_are_400(api: Api, host: str) -> None:
    reply = await api.get("/healthz", headers={"Host": host})
    assert (reply.status, reply.code) == (400, "invalid_host")


async def test_the_public_url_is_served_from_the_moment_it_is_saved(
    api: Api, owner_token: str
) -> None:
    host = {"Host": "builds.example.org"}
    assert (await api.get("/healthz", headers=host)).code == "invalid_host"
    origin = "https://builds.example.org"
    body: dict[str, Any] = {"public_url": origin, "allowed_origins": [origin]}
    saved = await api.call("PUT", NETWORK, json=body, token=owner_token)
    assert saved.status == 200, saved.body
    assert (await api.get("/healthz", headers=host)).status == 200
    # ... and no longer once it is taken away again.
    await api.call("PUT", NETWORK, json={"allowed_origins": []}, token=owner_token)
    assert (await api.get("/healthz", headers=host)).code == "invalid_host"
    assert (await api.get("/healthz", headers={"Host": "ci.example.com"})).code == "invalid_host"


async def test_webhooks_arrive_by_any_name(api: Api) -> None:
    reply = await api.post("/v1/webhooks/github", json={}, headers={"Host": "hooks.tunnel.example"})
    assert reply.code != "invalid_host"
    assert reply.status != 403


@pytest.mark.parametrize(
    "origin", ["http://evil.example:8787", "http://localhost:9999", "null", "https://localhost"]
)
async def test_state_changes_from_other_origins_are_403(api: Api, origin: str) -> None:
    reply = await login(api, {"Origin": origin})
    assert (reply.status, reply.code) == (403, "origin_not_allowed")


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost:3000",  # a default allowed origin
        "https://ci.example.com",  # a configured one
        "http://localhost",  # the server's own (the test client's Host is localhost)
    ],
)
async def test_state_changes_from_allowed_origins_pass(api: Api, origin: str) -> None:
    reply = await login(api, {"Origin": origin})
    assert reply.status == 200, reply.body


async def test_reads_from_other_origins_pass_without_cors(api: Api) -> None:
    reply = await api.get("/healthz", headers={"Origin": "http://evil.example"})
    assert reply.status == 200
    assert "Access-Control-Allow-Origin" not in reply.headers


async def test_local_login_is_rate_limited(api: Api, clock: FakeClock) -> None:
    for _ in range(LOCAL_LOGIN_PER_IP_LIMIT):
        assert (await login(api)).status == 200
    limited = await login(api)
    assert (limited.status, limited.code) == (429, "local_login_rate_limited")
    clock.advance(LOCAL_LOGIN_WINDOW)
    assert (await login(api)).status == 200


async def test_every_response_is_hardened(api: Api) -> None:
    for reply in (await api.get("/healthz"), await api.get("/v1/users/me"), await login(api)):
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert reply.headers["Referrer-Policy"] == "no-referrer"
        assert reply.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"]
