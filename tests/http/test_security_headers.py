"""Every page the daemon serves carries the security headers, and CORS never reflects an
origin that is not allowed: walked over every GET route of the app (with its parameters
filled in), the web UI, the integration flow pages, error answers, preflights and the lean
listener's answers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers

from oore.domain.tokens import new_token
from oore.http.app import create_app
from oore.runtime import Runtime
from oore.services.network import LOCAL_ORIGINS
from oore.store import Store
from tests.http.artifacts_kit import running_job
from tests.http.builds_kit import Setup, repo, setup
from tests.http.conftest import Api
from tests.http.lean.test_log_stream import exchange
from tests.http.sse_kit import served

__all__ = ["repo", "served", "setup"]

ALLOWED = "http://localhost:3000"
DISALLOWED = [
    "null",
    "http://localhost.evil.com",
    "http://localhost:3000.evil.com",
    "https://ci.example.com.evil.com",
    "https://evil-ci.example.com",
    "http://localhost:3000/",
    "HTTP://LOCALHOST:3000",
    "http://localhost:3000 http://evil.com",
    "https://evil.example",
]
ID = "00000000-0000-4000-8000-000000000000"
_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text('<!doctype html><script src="/assets/a.js"></script>')
    (root / "assets" / "a.js").write_text("1")
    return root


@pytest.fixture
def app(store: Store, runtime: Runtime, dist: Path) -> QuartTrio:
    return create_app(runtime.app_services(store), ui_dist=dist)


def assert_hardened(headers: Headers | dict[str, str], where: str) -> None:
    got = {k.lower(): v for k, v in headers.items()}
    assert got.get("x-content-type-options") == "nosniff", where
    assert got.get("referrer-policy") == "no-referrer", where
    policy = got.get("content-security-policy", "")
    assert "default-src" in policy, where
    assert got.get("x-frame-options") == "DENY" or "frame-ancestors 'none'" in policy, where


def assert_not_reflected(headers: Headers | dict[str, str], origin: str, where: str) -> None:
    got = {k.lower(): v for k, v in headers.items()}
    allowed = got.get("access-control-allow-origin")
    assert allowed is None, f"{where}: {origin!r} was answered with {allowed!r}"
    assert "access-control-allow-credentials" not in got, where


def get_paths(app: QuartTrio) -> list[str]:
    """Every GET route of the app, its parameters filled with an unknown id or token."""
    paths = set()
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()):
            continue
        path = _PARAM.sub(lambda m: new_token() if m.group(1) == "token" else ID, rule.rule)
        paths.add(path)
    return sorted(paths)


async def test_every_get_route_is_hardened_and_never_reflects_a_foreign_origin(
    app: QuartTrio, api: Api, owner_token: str
) -> None:
    paths = [*get_paths(app), "/", "/builds/1", "/assets/a.js", "/assets/missing.js", "/v1/nope"]
    assert "/v1/integrations/github/create" in paths and "/install/artifact/" in " ".join(paths)
    for n, path in enumerate(paths):
        origin = DISALLOWED[n % len(DISALLOWED)]
        for token in (None, owner_token):
            reply = await api.get(path, token=token, headers={"Origin": origin})
            where = f"GET {path} ({reply.status})"
            assert reply.status < 500, where
            assert_hardened(reply.headers, where)
            assert_not_reflected(reply.headers, origin, where)
    # The allowed origin is reflected, and only it.
    reply = await api.get("/v1/users/me", token=owner_token, headers={"Origin": ALLOWED})
    assert reply.headers["Access-Control-Allow-Origin"] == ALLOWED


@pytest.mark.parametrize("origin", DISALLOWED)
async def test_preflights_and_errors_never_reflect_a_foreign_origin(api: Api, origin: str) -> None:
    for method, path in (("GET", "/v1/users/me"), ("POST", "/v1/projects"), ("PUT", "/nope")):
        preflight = await api.call(
            "OPTIONS",
            path,
            headers={"Origin": origin, "Access-Control-Request-Method": method},
        )
        assert_not_reflected(preflight.headers, origin, f"preflight {path}")
        assert "Access-Control-Allow-Methods" not in preflight.headers
        assert_hardened(preflight.headers, f"preflight {path}")
    for reply in (
        await api.get("/v1/users/me", headers={"Origin": origin}),  # 401
        await api.post("/v1/projects", json={}, headers={"Origin": origin}),  # 403 origin
        await api.call("DELETE", "/healthz", headers={"Origin": origin}),  # 405
        await api.get("/v1/users/me", token=new_token(), headers={"Origin": origin}),
    ):
        assert reply.status >= 400
        assert_not_reflected(reply.headers, origin, f"error {reply.status}")
        assert_hardened(reply.headers, f"error {reply.status}")


async def test_the_default_origins_are_exact(api: Api) -> None:
    for origin in LOCAL_ORIGINS:
        reply = await api.get("/healthz", headers={"Origin": origin})
        assert reply.headers["Access-Control-Allow-Origin"] == origin


async def test_pages_that_hold_a_secret_are_not_stored(setup: Setup) -> None:
    job = await running_job(setup)
    artifact = await job.publish("app.txt", b"payload")
    link = await job.link(artifact["id"])
    assert link.status == 200
    for reply in (
        link,
        await setup.api.post(
            f"/v1/artifacts/{artifact['id']}/scoped-token", json={}, token=setup.token
        ),
        await setup.api.post(f"/v1/builds/{job.build_id}/stream-token", token=setup.token),
        await setup.api.post("/v1/auth/local/login", json={}),
    ):
        assert reply.status == 200, reply.body
        assert "no-store" in reply.headers.get("Cache-Control", ""), reply.body
        assert_hardened(reply.headers, "a secret-bearing answer")
    scoped = await setup.api.post(
        f"/v1/artifacts/{artifact['id']}/scoped-token", json={}, token=setup.token
    )
    redeemed = await setup.api.get(f"/install/artifact/{scoped.body['token']}")
    assert redeemed.status == 307
    assert "no-store" in redeemed.headers["Cache-Control"]
    assert_hardened(redeemed.headers, "a redeemed install link")
    path = "/" + link.body["download_url"].split("/", 3)[3]
    download = await setup.api.get(path)
    assert download.status == 200 and "no-store" in download.headers["Cache-Control"]
    assert_hardened(download.headers, "a download")


@pytest.mark.parametrize("origin", ["null", "http://localhost.evil.com", ALLOWED])
async def test_the_lean_listener_answers_are_hardened_and_exact(served: str, origin: str) -> None:
    for target in (
        f"/v1/builds/{ID}/logs/stream",
        f"/v1/builds/{ID}/logs/stream?token={new_token()}",
    ):
        answer = await exchange(served, target, {"Origin": origin})
        assert answer.status == 401
        headers = dict(answer.headers)
        assert_hardened(headers, target)
        if origin == ALLOWED:
            assert headers["access-control-allow-origin"] == ALLOWED
        else:
            assert_not_reflected(headers, origin, target)
