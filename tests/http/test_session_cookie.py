"""The browser's session as an HttpOnly cookie: how it is set, accepted, ended, and why a
page on another origin cannot use it."""

from __future__ import annotations

import dataclasses
import logging
import time
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from quart_trio import QuartTrio

from oore.domain.users import Role, UserStatus
from oore.http.app import create_app
from oore.runtime import Runtime
from oore.store import Store
from tests.http.builds_kit import make_setup, repo
from tests.http.conftest import LOOPBACK, REMOTE, Api, FakeClock, Reply
from tests.http.setup_kit import proxy_ready, vouch
from tests.http.sse_kit import Stream, read_stream, served, until
from tests.oidc_kit import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, OidcProvider, oidc_provider

__all__ = ["oidc_provider", "repo", "served"]

# A client that stops reading a stream early leaves httpx's body generators to the
# garbage collector, which warns; the server side is what is under test here.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

LOGIN = "/v1/auth/local/login"
COOKIE_MODE = {"X-Oore-Session": "cookie"}
OWN = "http://localhost"  # the test client's own origin (Host: localhost)


@pytest.fixture
def clock() -> FakeClock:
    """The OpenID Provider signs ID tokens with the real time, so the service starts there."""
    return FakeClock(int(time.time()))


@pytest.fixture
def browser(app: QuartTrio) -> Api:
    """A client that sends only the cookies a test gives it."""
    api = Api(app)
    api.client = app.test_client(use_cookies=False)
    return api


def set_cookie(reply: Reply) -> dict[str, Any]:
    """The ``oore_session`` cookie the reply sets, with its attributes."""
    headers = reply.headers.get_all("Set-Cookie")
    assert len(headers) == 1, headers
    jar: SimpleCookie = SimpleCookie()
    jar.load(headers[0])
    morsel = jar["oore_session"]
    attributes = {key.lower() for key in headers[0].replace(" ", "").split(";")}
    return {
        "value": morsel.value,
        "httponly": "httponly" in attributes,
        "secure": "secure" in attributes,
        "samesite": morsel["samesite"],
        "path": morsel["path"],
        "expires": morsel["expires"],
        "max-age": morsel["max-age"],
    }


async def cookie_login(api: Api) -> str:
    reply = await api.post(LOGIN, json={}, headers=COOKIE_MODE)
    assert reply.status == 200, reply.body
    token: str = set_cookie(reply)["value"]
    return token


def with_cookie(token: str, **headers: str) -> dict[str, str]:
    return {"Cookie": f"oore_session={token}", **headers}


async def test_cookie_sign_in_sets_an_httponly_strict_cookie_and_keeps_the_token_out_of_json(
    browser: Api,
) -> None:
    reply = await browser.post(LOGIN, json={}, headers=COOKIE_MODE)
    assert reply.status == 200, reply.body
    assert "session_token" not in reply.body
    assert set(reply.body) == {"expires_at", "user"}
    assert reply.body["user"]["role"] == "owner"
    cookie = set_cookie(reply)
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain http on loopback, cookie_secure not set
    assert cookie["expires"]
    assert cookie["value"] not in str(reply.body)
    assert reply.headers["Cache-Control"] == "no-store"
    me = await browser.get("/v1/users/me", headers=with_cookie(cookie["value"]))
    assert me.status == 200 and me.body["user"]["role"] == "owner"


async def test_without_the_header_sign_in_answers_the_token_and_sets_no_cookie(
    browser: Api,
) -> None:
    reply = await browser.post(LOGIN, json={})
    assert reply.status == 200 and "session_token" in reply.body
    assert "Set-Cookie" not in reply.headers


async def test_the_cookie_is_secure_over_https_or_when_configured(
    browser: Api, store: Store, runtime: Runtime
) -> None:
    over_https = await browser.client.post(
        LOGIN, json={}, headers=COOKIE_MODE, scheme="https", scope_base={"client": LOOPBACK}
    )
    assert over_https.status_code == 200
    assert "Secure" in over_https.headers["Set-Cookie"]
    configured = Api(
        create_app(dataclasses.replace(runtime.app_services(store), cookie_secure=True))
    )
    reply = await configured.post(LOGIN, json={}, headers=COOKIE_MODE)
    assert set_cookie(reply)["secure"]


async def test_a_forged_cross_origin_post_with_the_cookie_is_refused(
    browser: Api, repo: Path
) -> None:
    token = await cookie_login(browser)
    body = {"name": "forged", "local_repository_path": str(repo)}
    for origin in ("https://evil.example", "null", "http://localhost.evil.example"):
        forged = await browser.post(
            "/v1/projects", json=body, headers=with_cookie(token, Origin=origin)
        )
        assert (forged.status, forged.code) == (403, "origin_not_allowed"), origin
    # A request carrying only the cookie and no Origin at all is refused as well.
    bare = await browser.post("/v1/projects", json=body, headers=with_cookie(token))
    assert (bare.status, bare.code) == (403, "origin_not_allowed")
    listed = await browser.get("/v1/projects", headers=with_cookie(token))
    assert listed.status == 200 and listed.body["projects"] == []
    # The UI's own page names its origin, and may.
    own = await browser.post("/v1/projects", json=body, headers=with_cookie(token, Origin=OWN))
    assert own.status == 201, own.body


async def test_the_header_wins_over_the_cookie(browser: Api, owner_token: str, repo: Path) -> None:
    token = await cookie_login(browser)
    wrong = await browser.get("/v1/users/me", token="ab" * 32, headers=with_cookie(token))
    assert (wrong.status, wrong.code) == (401, "invalid_session")
    # A Bearer request is no browser's doing: it needs no Origin, cookie or not.
    created = await browser.post(
        "/v1/projects",
        json={"name": "by-header", "local_repository_path": str(repo)},
        token=owner_token,
        headers=with_cookie(token),
    )
    assert created.status == 201, created.body


async def test_logout_ends_the_session_and_clears_the_cookie(browser: Api) -> None:
    token = await cookie_login(browser)
    out = await browser.post("/v1/auth/logout", headers=with_cookie(token, Origin=OWN))
    assert out.status == 200 and out.body == {"ok": True}
    cleared = set_cookie(out)
    assert cleared["value"] == "" and cleared["max-age"] == "0"
    after = await browser.get("/v1/users/me", headers=with_cookie(token))
    assert (after.status, after.code) == (401, "invalid_session")
    # A stale cookie is cleared too, with the usual 401.
    stale = await browser.post("/v1/auth/logout", headers=with_cookie(token, Origin=OWN))
    assert (stale.status, stale.code) == (401, "invalid_session")
    assert set_cookie(stale)["value"] == ""
    forged = await browser.post("/v1/auth/logout", headers=with_cookie(token))
    assert forged.code == "origin_not_allowed"


async def test_trusted_proxy_sign_in_can_use_the_cookie(
    browser: Api, api: Api, runtime: Runtime
) -> None:
    await proxy_ready(api, runtime)
    reply = await browser.post(
        "/v1/auth/trusted-proxy/login",
        headers={**vouch("owner@example.com"), **COOKIE_MODE},
        peer=REMOTE,
    )
    assert reply.status == 200, reply.body
    assert "session_token" not in reply.body
    token = set_cookie(reply)["value"]
    me = await browser.get("/v1/users/me", headers=with_cookie(token), peer=REMOTE)
    assert me.body["user"]["email"] == "owner@example.com"


async def test_oidc_sign_in_can_use_the_cookie(
    browser: Api,
    owner_token: str,
    oidc_provider: OidcProvider,
    store: Store,
    clock: FakeClock,
) -> None:
    saved = await browser.call(
        "PUT",
        "/v1/settings/external-access/oidc",
        json={
            "issuer_url": oidc_provider.issuer,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
        token=owner_token,
    )
    assert saved.status == 200, saved.body
    await store.users.create(
        email="dev@example.com",
        role=Role.DEVELOPER,
        status=UserStatus.INVITED,
        subject=None,
        now=clock.now(),
    )
    started = await browser.get(f"/v1/auth/oidc/start?redirect_uri={REDIRECT_URI}")
    assert started.status == 200, started.body
    code, state = await oidc_provider.authorize(started.body["authorization_url"], "dev-sub")
    reply = await browser.post(
        "/v1/auth/oidc/callback",
        json={"code": code, "state": state},
        headers={**COOKIE_MODE, "Origin": OWN},
    )
    assert reply.status == 200, reply.body
    assert "session_token" not in reply.body
    assert reply.body["user"]["email"] == "dev@example.com"
    token = set_cookie(reply)["value"]
    me = await browser.get("/v1/users/me", headers=with_cookie(token))
    assert me.body["user"]["role"] == "developer"


async def test_the_log_stream_and_the_api_work_with_the_cookie_and_never_log_it(
    api: Api, owner_token: str, served: str, repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    setup = await make_setup(api, owner_token, repo)
    build = await setup.trigger()
    runner = await setup.runner()
    assert await runner.claim() is not None
    assert (await runner.report(build["id"], "running")).status == 200
    lines = [{"sequence": n, "content": f"line {n}", "stream": "stdout"} for n in range(3)]
    assert (await runner.logs(build["id"], lines)).status == 200
    async with httpx.AsyncClient(base_url=served, timeout=10) as client:
        signed = await client.post(LOGIN, json={}, headers=COOKIE_MODE)
        assert signed.status_code == 200 and "session_token" not in signed.json()
        token = client.cookies["oore_session"]
        assert token not in signed.text and token not in str(signed.url)
        me = await client.get("/v1/users/me")
        assert me.status_code == 200
        stream = Stream()
        url = f"/v1/builds/{build['id']}/logs/stream"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_stream, client, url, {}, stream)
            await until(lambda: len(stream.named("log")) >= 3)
            await runner.report(build["id"], "succeeded", exit_code=0)
            await until(lambda: stream.ended)
        assert stream.status == 200
        assert [event.json()["content"] for event in stream.named("log")] == [
            "line 0",
            "line 1",
            "line 2",
        ]
        assert stream.named("done")[0].data == "build_finished"
        forged = await client.post(
            f"/v1/builds/{build['id']}/rerun", headers={"Origin": "https://evil.example"}
        )
        assert forged.status_code == 403
        out = await client.post("/v1/auth/logout", headers={"Origin": served})
        assert out.status_code == 200 and "oore_session" not in client.cookies
    server_side = [
        record for record in caplog.records if not record.name.startswith(("httpx", "httpcore"))
    ]
    assert server_side  # the daemon did log these requests' work
    logged = "\n".join(f"{record.getMessage()} {record.__dict__!r}" for record in server_side)
    assert token not in logged
