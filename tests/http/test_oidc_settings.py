"""External-access OIDC settings after setup (contract §10.3): GET/PUT
``/v1/settings/external-access/oidc`` and ``POST .../oidc/test-connection``."""

from __future__ import annotations

import time
from typing import Any

import pytest

from oore.domain.tokens import hash_token, new_token
from oore.domain.users import USER_SESSION_TTL, Role, UserStatus
from oore.store import Store
from tests.http.conftest import Api, FakeClock, Reply, UserFactory
from tests.oidc_kit import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    FaultyProvider,
    OidcProvider,
    faulty_provider,
    oidc_provider,
)

__all__ = ["faulty_provider", "oidc_provider"]

PATH = "/v1/settings/external-access/oidc"
CLOSED_ISSUER = "http://127.0.0.1:9"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(int(time.time()))


async def put(api: Api, token: str | None, **body: Any) -> Reply:
    return await api.call("PUT", PATH, json=body, token=token)


async def test_owner_points_the_instance_at_a_provider(
    api: Api, store: Store, clock: FakeClock, owner_token: str, oidc_provider: OidcProvider
) -> None:
    reply = await put(
        api,
        owner_token,
        issuer_url=oidc_provider.issuer + "/",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    assert reply.status == 200, reply.body
    assert reply.body == {
        "discovered_issuer": oidc_provider.issuer,
        "has_client_secret": True,
        "configured_at": clock.now(),
    }
    shown = await api.get(PATH, token=owner_token)
    assert shown.status == 200, shown.body
    assert shown.body == {
        "issuer_url": oidc_provider.issuer,
        "client_id": CLIENT_ID,
        "has_client_secret": True,
        "authorization_endpoint": f"{oidc_provider.issuer}/auth",
        "token_endpoint": f"{oidc_provider.issuer}/token",
        "userinfo_endpoint": f"{oidc_provider.issuer}/me",
        "jwks_uri": f"{oidc_provider.issuer}/jwks",
        "configured_at": clock.now(),
    }
    entry = (await store.audit.recent(1))[0]
    assert (entry.action, entry.actor_email) == ("oidc_settings_updated", "owner@local")


async def test_an_omitted_secret_is_kept_unless_the_provider_changes(
    api: Api,
    store: Store,
    owner_token: str,
    oidc_provider: OidcProvider,
    faulty_provider: FaultyProvider,
) -> None:
    issuer = oidc_provider.issuer
    saved = await put(
        api, owner_token, issuer_url=issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    assert saved.status == 200
    kept = await put(api, owner_token, issuer_url=issuer, client_id=CLIENT_ID)
    assert kept.status == 200, kept.body
    assert kept.body["has_client_secret"] is True
    moved = await put(api, owner_token, issuer_url=faulty_provider.issuer, client_id=CLIENT_ID)
    assert (moved.status, moved.code) == (400, "oidc_secret_reentry_required")
    renamed = await put(api, owner_token, issuer_url=issuer, client_id="other")
    assert (renamed.status, renamed.code) == (400, "oidc_secret_reentry_required")
    config = await store.oidc.get()
    assert config is not None and (config.issuer_url, config.client_id) == (issuer, CLIENT_ID)


async def test_put_drops_every_pending_sign_in(
    api: Api, owner_token: str, oidc_provider: OidcProvider
) -> None:
    body = {"issuer_url": oidc_provider.issuer, "client_id": CLIENT_ID}
    assert (await put(api, owner_token, **body, client_secret=CLIENT_SECRET)).status == 200
    started = await api.get(f"/v1/auth/oidc/start?redirect_uri={REDIRECT_URI}")
    assert started.status == 200, started.body
    code, state = await oidc_provider.authorize(started.body["authorization_url"], "qa-sub")
    assert (await put(api, owner_token, **body)).status == 200
    reply = await api.post("/v1/auth/oidc/callback", json={"code": code, "state": state})
    assert (reply.status, reply.code) == (400, "invalid_state")


async def test_put_checks(
    api: Api, make_user: UserFactory, owner_token: str, oidc_provider: OidcProvider
) -> None:
    admin = await make_user(Role.ADMIN)
    developer = await make_user(Role.DEVELOPER)
    body = {"issuer_url": oidc_provider.issuer, "client_id": CLIENT_ID}
    reply = await put(api, None, **body)
    assert (reply.status, reply.code) == (401, "missing_auth")
    reply = await put(api, developer.token, **body)
    assert (reply.status, reply.code) == (403, "permission_denied")
    reply = await put(api, admin.token, **body)
    assert (reply.status, reply.code) == (403, "external_access_owner_required")
    reply = await put(api, owner_token, issuer_url="", client_id=CLIENT_ID)
    assert (reply.status, reply.code) == (400, "invalid_input")
    reply = await put(api, owner_token, issuer_url=oidc_provider.issuer, client_id="")
    assert (reply.status, reply.code) == (400, "invalid_input")
    reply = await put(api, owner_token, issuer_url=CLOSED_ISSUER, client_id=CLIENT_ID)
    assert (reply.status, reply.code) == (400, "oidc_discovery_failed")
    reply = await put(api, owner_token, issuer_url=oidc_provider.issuer)
    assert (reply.status, reply.code) == (400, "invalid_request")


async def test_get_checks(
    api: Api, make_user: UserFactory, owner_token: str, oidc_provider: OidcProvider
) -> None:
    admin = await make_user(Role.ADMIN)
    developer = await make_user(Role.DEVELOPER)
    reply = await api.get(PATH, token=owner_token)
    assert (reply.status, reply.code) == (404, "oidc_not_configured")
    body = {"issuer_url": oidc_provider.issuer, "client_id": CLIENT_ID}
    assert (await put(api, owner_token, **body)).status == 200
    assert (await api.get(PATH, token=admin.token)).body["has_client_secret"] is False
    reply = await api.get(PATH, token=developer.token)
    assert (reply.status, reply.code) == (403, "permission_denied")
    reply = await api.get(PATH)
    assert (reply.status, reply.code) == (401, "missing_auth")


async def test_settings_before_setup_is_complete_are_invalid_state(
    api: Api, store: Store, clock: FakeClock, runtime: object, oidc_provider: OidcProvider
) -> None:
    # A session that exists before setup completes (for example from an earlier install).
    owner = await store.users.create(
        email="early@example.com",
        role=Role.OWNER,
        status=UserStatus.ACTIVE,
        subject=None,
        now=clock.now(),
    )
    token = new_token()
    await store.users.create_session(
        hash_token(token), owner.id, clock.now(), clock.now() + USER_SESSION_TTL
    )
    reply = await api.get(PATH, token=token)
    assert (reply.status, reply.code) == (409, "invalid_state")
    reply = await put(api, token, issuer_url=oidc_provider.issuer, client_id=CLIENT_ID)
    assert (reply.status, reply.code) == (409, "invalid_state")
    assert await store.oidc.get() is None


async def test_test_connection_reports_the_discovered_endpoints(
    api: Api, store: Store, owner_token: str, oidc_provider: OidcProvider
) -> None:
    reply = await api.post(
        f"{PATH}/test-connection", json={"issuer_url": oidc_provider.issuer}, token=owner_token
    )
    assert reply.status == 200, reply.body
    assert reply.body["success"] is True
    assert reply.body["discovered_issuer"] == oidc_provider.issuer
    assert reply.body["authorization_endpoint"] == f"{oidc_provider.issuer}/auth"
    assert reply.body["token_endpoint"] == f"{oidc_provider.issuer}/token"
    assert reply.body["jwks_uri"] == f"{oidc_provider.issuer}/jwks"
    assert reply.body["userinfo_endpoint"] == f"{oidc_provider.issuer}/me"
    assert {"openid", "email"} <= set(reply.body["scopes_supported"])
    assert await store.oidc.get() is None


async def test_test_connection_checks(
    api: Api, make_user: UserFactory, owner_token: str, faulty_provider: FaultyProvider
) -> None:
    admin = await make_user(Role.ADMIN)
    path = f"{PATH}/test-connection"
    reply = await api.post(path, json={"issuer_url": faulty_provider.issuer}, token=admin.token)
    assert (reply.status, reply.code) == (403, "external_access_owner_required")
    reply = await api.post(path, json={"issuer_url": "nope"}, token=owner_token)
    assert (reply.status, reply.code) == (400, "invalid_input")
    faulty_provider.fault = "wrong_issuer"
    reply = await api.post(path, json={"issuer_url": faulty_provider.issuer}, token=owner_token)
    assert (reply.status, reply.code) == (400, "oidc_discovery_failed")
    reply = await api.post(path, json={}, token=owner_token)
    assert (reply.status, reply.code) == (400, "invalid_request")
