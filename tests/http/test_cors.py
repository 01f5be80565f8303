from __future__ import annotations

import pytest

from tests.http.conftest import Api


async def test_preflight_from_an_allowed_origin(api: Api) -> None:
    reply = await api.call(
        "OPTIONS",
        "/v1/users/me",
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"},
    )
    assert reply.status == 204
    assert reply.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert reply.headers["Access-Control-Allow-Credentials"] == "true"
    assert reply.headers["Access-Control-Allow-Methods"] == "GET, POST, PUT, PATCH, DELETE, OPTIONS"
    assert reply.headers["Access-Control-Allow-Headers"] == "Content-Type, Authorization"


async def test_other_origins_get_no_cors_headers(api: Api) -> None:
    reply = await api.get("/healthz", headers={"Origin": "https://evil.example"})
    assert reply.status == 200
    assert "Access-Control-Allow-Origin" not in reply.headers
    preflight = await api.call(
        "OPTIONS",
        "/v1/users/me",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers


async def test_simple_request_from_a_configured_origin(api: Api) -> None:
    reply = await api.get("/healthz", headers={"Origin": "https://ci.example.com"})
    assert reply.headers["Access-Control-Allow-Origin"] == "https://ci.example.com"
    assert "Origin" in reply.headers["Vary"]


async def test_errors_carry_cors_headers_too(api: Api) -> None:
    reply = await api.get("/v1/users/me", headers={"Origin": "http://localhost:3000"})
    assert reply.status == 401
    assert reply.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"


@pytest.mark.parametrize(
    "path",
    [
        "/metrics",
        "/v1/integrations/github/create?state=x",
        "/v1/integrations/github/callback?code=c&state=x",
        "/v1/integrations/github/installed",
        "/v1/integrations/gitlab/callback?code=c&state=x",
    ],
)
async def test_machine_and_provider_pages_are_outside_cors(api: Api, path: str) -> None:
    reply = await api.get(path, headers={"Origin": "http://localhost:3000"})
    assert reply.status != 404
    assert "Access-Control-Allow-Origin" not in reply.headers
