"""Two daemons on one database: a short-lived token or pending sign-in that one issues, the
other accepts, and a single-use one only once, whichever daemon sees it first.

Daemon A is the usual app of these tests; daemon B is a second store, runtime and app on
the same database, with the same clock, encryption key and artifact directory.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from quart_trio import QuartTrio

from oore.domain.users import Role, UserStatus
from oore.http.app import create_app
from oore.runtime import Runtime, open_runtime
from oore.scheduling import SchedulingConfig
from oore.services.artifact_storage import ArtifactsConfig
from oore.services.events import EventsConfig
from oore.services.logs import LogConfig
from oore.services.network import NetworkDefaults
from oore.services.scm import ScmConfig
from oore.store import Store, open_store
from tests.http.artifacts_kit import download, running_job, upload
from tests.http.builds_kit import Setup, repo, setup
from tests.http.conftest import REMOTE, Api, FakeClock
from tests.http.setup_kit import proxy_ready, vouch
from tests.http.sse_kit import serving
from tests.oidc_kit import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    OidcProvider,
    oidc_provider,
)
from tests.scm_kit import APP_SLUG, FakeScm, fake_scm

__all__ = ["fake_scm", "oidc_provider", "repo", "setup"]

WEBHOOK_URL = "https://ci.example.com/v1/webhooks/github"
REDIRECT_URL = "https://ci.example.com/settings/integrations"


@pytest.fixture
def clock() -> FakeClock:
    """The OpenID Provider signs ID tokens with the real time, so the daemons start there."""
    return FakeClock(int(time.time()))


@pytest.fixture
def scm_config(fake_scm: FakeScm) -> ScmConfig:
    return fake_scm.scm_config


@pytest.fixture
async def other_app(
    database_url: str,
    runtime: Runtime,
    clock: FakeClock,
    scheduling_config: SchedulingConfig,
    log_config: LogConfig,
    artifacts_config: ArtifactsConfig,
    network_defaults: NetworkDefaults,
    scm_config: ScmConfig,
    events_config: EventsConfig,
) -> AsyncIterator[QuartTrio]:
    """Daemon B: its own pool and runtime on daemon A's database (A is started first)."""
    async with (
        open_store(database_url, pool_size=4) as store,
        open_runtime(
            store,
            clock,
            scheduling_config,
            log_config,
            artifacts_config,
            network_defaults,
            scm_config=scm_config,
            events_config=events_config,
        ) as other,
    ):
        yield create_app(other.app_services(store))


@pytest.fixture
def other(other_app: QuartTrio) -> Api:
    return Api(other_app)


async def status_of(url: str) -> tuple[int, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        reply = await client.get(url)
        try:
            return reply.status_code, reply.json().get("code")
        except ValueError:
            return reply.status_code, reply.text


async def test_a_stream_token_from_one_daemon_streams_once_from_any(
    setup: Setup, app: QuartTrio, other_app: QuartTrio, other: Api
) -> None:
    build = await setup.trigger()
    runner = await setup.runner()
    assert await runner.claim() is not None
    assert (await runner.report(build["id"], "running")).status == 200
    assert (await runner.report(build["id"], "succeeded", exit_code=0)).status == 200
    path = f"/v1/builds/{build['id']}/logs/stream"
    async with serving(app) as served_a, serving(other_app) as served_b:
        minted = await setup.api.post(f"/v1/builds/{build['id']}/stream-token", token=setup.token)
        assert minted.status == 200, minted.body
        token = minted.body["token"]
        first = await status_of(f"{served_b}{path}?token={token}")
        assert first[0] == 200 and "event: done" in first[1]
        assert await status_of(f"{served_a}{path}?token={token}") == (401, "invalid_stream_token")
        assert await status_of(f"{served_b}{path}?token={token}") == (401, "invalid_stream_token")
        # Minted by B (for a session A issued), redeemed by A; a build mismatch too.
        other_build = await setup.trigger()
        minted = await other.post(f"/v1/builds/{other_build['id']}/stream-token", token=setup.token)
        assert minted.status == 200, minted.body
        mismatch = await status_of(f"{served_a}{path}?token={minted.body['token']}")
        assert mismatch == (403, "stream_token_build_mismatch")


async def test_the_stream_token_caps_count_every_daemons_tokens(setup: Setup, other: Api) -> None:
    builds = [await setup.trigger() for _ in range(17)]
    codes = []
    for n, build in enumerate(builds):
        daemon = setup.api if n % 2 == 0 else other
        reply = await daemon.post(f"/v1/builds/{build['id']}/stream-token", token=setup.token)
        codes.append((reply.status, reply.code))
    assert codes == [(200, None)] * 16 + [(429, "stream_token_limit")]
    # A new token for a build replaces the unused one, whichever daemon minted it.
    again = await other.post(f"/v1/builds/{builds[0]['id']}/stream-token", token=setup.token)
    assert again.status == 200, again.body


async def test_local_storage_urls_from_one_daemon_work_on_the_other(
    setup: Setup, other: Api
) -> None:
    job = await running_job(setup)
    reserved = await job.reserve("app.txt")
    assert reserved.status == 200, reserved.body
    upload_url = reserved.body["upload_url"]
    stored = await upload(other, upload_url, b"payload")
    assert stored.status == 200, stored.body
    replay = await upload(setup.api, upload_url, b"again")
    assert (replay.status, replay.code) == (401, "invalid_upload_token")  # single use
    done = await job.finish(reserved.body["artifact"]["id"], "complete")
    assert done.status == 200, done.body
    link = await job.link(reserved.body["artifact"]["id"])
    assert link.status == 200, link.body
    for daemon in (other, other, setup.api):  # reusable until it expires, anywhere
        fetched = await download(daemon, link.body["download_url"])
        assert (fetched.status, fetched.body) == (200, b"payload")


async def test_an_oidc_sign_in_started_on_one_daemon_completes_once_on_the_other(
    api: Api,
    store: Store,
    clock: FakeClock,
    other: Api,
    owner_token: str,
    oidc_provider: OidcProvider,
) -> None:
    await store.users.create(
        email="dev@example.com",
        role=Role.DEVELOPER,
        status=UserStatus.INVITED,
        subject=None,
        now=clock.now(),
    )
    await configure_oidc(api, owner_token, oidc_provider)
    started = await api.get(f"/v1/auth/oidc/start?redirect_uri={REDIRECT_URI}")
    assert started.status == 200, started.body
    code, state = await oidc_provider.authorize(started.body["authorization_url"], "dev-sub")
    body = {"code": code, "state": state}
    signed_in = await other.post("/v1/auth/oidc/callback", json=body)
    assert signed_in.status == 200, signed_in.body
    assert signed_in.body["user"]["email"] == "dev@example.com"
    for daemon in (api, other):
        replay = await daemon.post("/v1/auth/oidc/callback", json=body)
        assert (replay.status, replay.code) == (400, "invalid_state")
    # Reconfiguring on B drops what A started.
    started = await api.get(f"/v1/auth/oidc/start?redirect_uri={REDIRECT_URI}")
    code, state = await oidc_provider.authorize(started.body["authorization_url"], "dev-sub")
    await configure_oidc(other, owner_token, oidc_provider)
    dropped = await api.post("/v1/auth/oidc/callback", json={"code": code, "state": state})
    assert (dropped.status, dropped.code) == (400, "invalid_state")


async def configure_oidc(api: Api, owner_token: str, provider: OidcProvider) -> None:
    """Point the instance at the test's OpenID Provider, through this daemon's API."""
    saved = await api.call(
        "PUT",
        "/v1/settings/external-access/oidc",
        json={
            "issuer_url": provider.issuer,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
        token=owner_token,
    )
    assert saved.status == 200, saved.body


async def test_an_integration_state_sealed_by_one_daemon_is_used_once_by_either(
    api: Api, runtime: Runtime, other: Api, fake_scm: FakeScm
) -> None:
    await proxy_ready(api, runtime)
    login = await api.post(
        "/v1/auth/trusted-proxy/login", headers=vouch("owner@example.com"), peer=REMOTE
    )
    assert login.status == 200, login.body
    started = await api.post(
        "/v1/integrations/github/start",
        json={"webhook_url": WEBHOOK_URL, "redirect_url": REDIRECT_URL},
        token=login.body["session_token"],
    )
    assert started.status == 200, started.body
    state = quote(parse_qs(urlsplit(started.body["create_url"]).query)["state"][0], safe="")
    back = await other.get(f"/v1/integrations/github/callback?code=good-code&state={state}")
    assert back.status == 303, back.body
    assert back.headers["Location"] == f"{fake_scm.base}/gh-web/apps/{APP_SLUG}/installations/new"
    for daemon in (api, other):
        again = await daemon.get(f"/v1/integrations/github/callback?code=good-code&state={state}")
        assert again.status == 200 and "invalid" in again.body  # single use
    # The install cookie B sealed is honoured by A, once.
    cookie = back.headers["Set-Cookie"].split(";", 1)[0]
    installed = await api.get("/v1/integrations/github/installed", headers={"Cookie": cookie})
    assert installed.status == 200 and "installed=true" in installed.body
    replayed = await other.get("/v1/integrations/github/installed", headers={"Cookie": cookie})
    assert replayed.status == 200 and "installed=true" not in replayed.body
