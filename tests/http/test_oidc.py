"""OIDC over HTTP (contract §2.2, §2.3, §7.3, §7.4, §7.7): setup with an OpenID Provider,
public sign-in and the checks of each step in the contract's order.

The happy paths run against a real, certified OpenID Provider on loopback
(``tests/oidc_provider``); :class:`FaultyProvider` stands in for the failures such a
provider will not produce on demand.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trio

from oore.domain.crypto import SecretBox
from oore.domain.oidc import PENDING_CAPACITY, PendingRequest, SetupBinding
from oore.domain.setup import SetupState
from oore.domain.users import Role, UserStatus
from oore.runtime import Runtime
from oore.services.network import LOCAL_ORIGINS
from oore.store import Store
from tests.http.conftest import REMOTE, Api, FakeClock, Reply
from tests.http.setup_kit import choose as choose_modes
from tests.http.setup_kit import setup_session
from tests.oidc_kit import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    FaultyProvider,
    OidcProvider,
    faulty_provider,
    follow_to_redirect_uri,
    oidc_provider,
)

__all__ = ["faulty_provider", "oidc_provider"]

HTTPS_REDIRECT = "https://ci.example.com/auth/callback"
CLOSED_ISSUER = "http://127.0.0.1:9"  # discard port: nothing listens there


@pytest.fixture
def clock() -> FakeClock:
    """The provider signs ID tokens with the real time, so the service starts there too."""
    return FakeClock(int(time.time()))


async def choose(api: Api, token: str, runtime_mode: str, auth: str | None = None) -> None:
    reply = await choose_modes(api, token, runtime_mode, auth)
    assert reply.status == 200, reply.body


async def configure(
    api: Api, token: str | None, issuer: str, *, secret: str | None = CLIENT_SECRET, **extra: Any
) -> Reply:
    body: dict[str, Any] = {"issuer_url": issuer, "client_id": CLIENT_ID, **extra}
    if secret is not None:
        body["client_secret"] = secret
    return await api.post("/v1/setup/oidc/configure", json=body, token=token)


async def start_owner(api: Api, token: str | None, redirect_uri: str = REDIRECT_URI) -> Reply:
    return await api.post(
        "/v1/setup/owner/start-oidc", json={"redirect_uri": redirect_uri}, token=token
    )


async def verify_owner(api: Api, code: str, state: str, token: str | None = None) -> Reply:
    return await api.post(
        "/v1/setup/owner/verify-oidc", json={"code": code, "state": state}, token=token
    )


async def remote_configured(api: Api, runtime: Runtime, issuer: str) -> str:
    """A remote+oidc instance in ``idp_configured``; returns the setup session token."""
    token = await setup_session(api, runtime)
    await choose(api, token, "remote", "oidc")
    reply = await configure(api, token, issuer)
    assert reply.status == 200, reply.body
    return token


async def owner_code(
    api: Api, token: str, provider: OidcProvider, login_hint: str = "owner-sub"
) -> tuple[str, str]:
    started = await start_owner(api, token)
    assert started.status == 200, started.body
    return await provider.authorize(started.body["authorization_url"], login_hint)


async def state_of(store: Store) -> SetupState:
    return (await store.instance.get()).state


async def actions(store: Store) -> list[str]:
    return [entry.action for entry in reversed(await store.audit.recent(200))]


async def setup_pending(runtime: Runtime, state: str, now: int) -> None:
    binding = SetupBinding("0" * 64, 0, "none")
    await runtime.signin.pending.add(
        PendingRequest(state, "v" * 43, "nonce", REDIRECT_URI, now, binding), now
    )


async def public_pending(runtime: Runtime, state: str, now: int) -> None:
    await runtime.signin.pending.add(
        PendingRequest(state, "v" * 43, "nonce", REDIRECT_URI, now), now
    )


async def fill_pending(runtime: Runtime, now: int) -> None:
    for n in range(PENDING_CAPACITY - await runtime.signin.pending.count()):
        await public_pending(runtime, f"filler-{n}", now)


# -- POST /v1/setup/oidc/configure ------------------------------------------------------


async def test_configure_stores_the_discovered_issuer_and_an_encrypted_secret(
    api: Api, runtime: Runtime, store: Store, clock: FakeClock, oidc_provider: OidcProvider
) -> None:
    token = await setup_session(api, runtime)
    reply = await configure(api, token, oidc_provider.issuer + "/")
    assert reply.status == 200, reply.body
    assert reply.body == {
        "state": "idp_configured",
        "discovered_issuer": oidc_provider.issuer,
        "session_expires_at": clock.now() + 1800,
    }
    assert await state_of(store) is SetupState.IDP_CONFIGURED
    config = await store.oidc.get()
    assert config is not None
    assert (config.issuer_url, config.client_id) == (oidc_provider.issuer, CLIENT_ID)
    assert config.client_secret_enc is not None and CLIENT_SECRET not in config.client_secret_enc
    assert runtime.identity.secrets is not None
    assert runtime.identity.secrets.decrypt(config.client_secret_enc) == CLIENT_SECRET
    assert "oidc_configured" in await actions(store)
    status = await api.get("/v1/public/setup-status")
    assert status.body["state"] == "idp_configured"


@pytest.mark.parametrize(
    "body",
    [
        {"issuer_url": "", "client_id": CLIENT_ID},
        {"issuer_url": "not a url", "client_id": CLIENT_ID},
        {"issuer_url": "https://" + "a" * 2048, "client_id": CLIENT_ID},
        {"issuer_url": "https://idp.example.com", "client_id": ""},
        {"issuer_url": "https://idp.example.com", "client_id": "c" * 257},
        {"issuer_url": "https://idp.example.com", "client_id": "c", "client_secret": ""},
        {"issuer_url": "https://idp.example.com", "client_id": "c", "client_secret": "s" * 1025},
        {
            "issuer_url": "https://idp.example.com",
            "client_id": "c",
            "client_secret": "s",
            "clear_client_secret": True,
        },
    ],
)
async def test_configure_validates_before_the_state_gate(
    api: Api, owner_token: str, body: dict[str, Any]
) -> None:
    reply = await api.post("/v1/setup/oidc/configure", json=body)
    assert (reply.status, reply.code) == (400, "invalid_input")


async def test_configure_undecodable_body_is_invalid_request(api: Api) -> None:
    for body in ({"issuer_url": "https://idp.example.com"}, {"issuer_url": 1, "client_id": "c"}):
        reply = await api.post("/v1/setup/oidc/configure", json=body)
        assert (reply.status, reply.code) == (400, "invalid_request")


async def test_configure_on_a_ready_instance_is_already_configured(
    api: Api, owner_token: str
) -> None:
    reply = await configure(api, None, "https://idp.example.com")
    assert (reply.status, reply.code) == (409, "already_configured")


async def test_configure_session_checks(
    api: Api, runtime: Runtime, clock: FakeClock, oidc_provider: OidcProvider
) -> None:
    reply = await configure(api, None, oidc_provider.issuer)
    assert (reply.status, reply.code) == (401, "no_session")
    token = await setup_session(api, runtime)
    reply = await configure(api, "ab" * 32, oidc_provider.issuer)
    assert (reply.status, reply.code) == (401, "invalid_session")
    reply = await configure(api, None, oidc_provider.issuer)
    assert (reply.status, reply.code) == (401, "invalid_session")
    clock.advance(1800)
    reply = await configure(api, token, oidc_provider.issuer)
    assert (reply.status, reply.code) == (401, "session_expired")


async def test_configure_checks_the_state_before_the_session(
    api: Api, runtime: Runtime, oidc_provider: OidcProvider
) -> None:
    token = await remote_configured(api, runtime, oidc_provider.issuer)
    code, state = await owner_code(api, token, oidc_provider)
    assert (await verify_owner(api, code, state)).status == 200
    reply = await configure(api, None, oidc_provider.issuer)
    assert (reply.status, reply.code) == (409, "invalid_state")


async def test_configure_discovery_failures_are_400(
    api: Api, runtime: Runtime, store: Store, faulty_provider: FaultyProvider
) -> None:
    token = await setup_session(api, runtime)
    for fault in ("discovery_404", "wrong_issuer", "discovery_redirect"):
        faulty_provider.fault = fault
        reply = await configure(api, token, faulty_provider.issuer)
        assert (reply.status, reply.code) == (400, "oidc_discovery_failed"), fault
    reply = await configure(api, token, CLOSED_ISSUER)
    assert (reply.status, reply.code) == (400, "oidc_discovery_failed")
    assert await store.oidc.get() is None
    assert await state_of(store) is SetupState.BOOTSTRAP_PENDING


async def test_configure_needs_the_secret_again_when_issuer_or_client_changes(
    api: Api,
    runtime: Runtime,
    store: Store,
    oidc_provider: OidcProvider,
    faulty_provider: FaultyProvider,
) -> None:
    token = await setup_session(api, runtime)
    assert (await configure(api, token, oidc_provider.issuer)).status == 200
    reply = await configure(api, token, faulty_provider.issuer, secret=None)
    assert (reply.status, reply.code) == (400, "oidc_secret_reentry_required")
    reply = await api.post(
        "/v1/setup/oidc/configure",
        json={"issuer_url": oidc_provider.issuer, "client_id": "another"},
        token=token,
    )
    assert (reply.status, reply.code) == (400, "oidc_secret_reentry_required")
    # Same issuer and client without a secret keeps the stored one.
    assert (await configure(api, token, oidc_provider.issuer, secret=None)).status == 200
    kept = await store.oidc.get()
    assert kept is not None and kept.has_client_secret
    # Clearing it lets the provider change.
    reply = await configure(
        api, token, faulty_provider.issuer, secret=None, clear_client_secret=True
    )
    assert reply.status == 200, reply.body
    cleared = await store.oidc.get()
    assert cleared is not None and not cleared.has_client_secret
    assert cleared.issuer_url == faulty_provider.issuer


async def test_configure_without_an_encryption_key_is_encryption_error(
    api: Api, runtime: Runtime, store: Store, oidc_provider: OidcProvider
) -> None:
    token = await setup_session(api, runtime)
    runtime.identity.secrets = None
    reply = await configure(api, token, oidc_provider.issuer)
    assert (reply.status, reply.code) == (500, "encryption_error")
    assert await store.oidc.get() is None


# -- POST /v1/setup/owner/start-oidc ----------------------------------------------------


async def test_start_oidc_checks_in_the_contract_order(
    api: Api, runtime: Runtime, oidc_provider: OidcProvider
) -> None:
    token = await setup_session(api, runtime)
    reply = await start_owner(api, token, "https://evil.example.com/auth/callback")
    assert (reply.status, reply.code) == (400, "invalid_redirect_uri")
    reply = await start_owner(api, None)
    assert (reply.status, reply.code) == (409, "invalid_state")
    assert (await configure(api, token, oidc_provider.issuer)).status == 200
    reply = await start_owner(api, None)
    assert (reply.status, reply.code) == (401, "invalid_session")
    reply = await start_owner(api, token)
    assert (reply.status, reply.code) == (403, "mode_restricted")
    await choose(api, token, "remote", "trusted_proxy")
    reply = await start_owner(api, token)
    assert (reply.status, reply.code) == (403, "mode_restricted")
    # Leaving remote+oidc in idp_configured erased the provider.
    await choose(api, token, "remote", "oidc")
    reply = await start_owner(api, token)
    assert (reply.status, reply.code) == (409, "oidc_not_configured")


async def test_start_oidc_on_a_ready_instance(api: Api, owner_token: str) -> None:
    reply = await start_owner(api, None, "http://127.0.0.1/elsewhere")
    assert (reply.status, reply.code) == (400, "invalid_redirect_uri")
    reply = await start_owner(api, None)
    assert (reply.status, reply.code) == (409, "already_configured")


async def test_start_oidc_gives_a_pkce_authorization_url(
    api: Api, runtime: Runtime, oidc_provider: OidcProvider
) -> None:
    token = await remote_configured(api, runtime, oidc_provider.issuer)
    reply = await start_owner(api, token, HTTPS_REDIRECT)
    assert reply.status == 200, reply.body
    url = urlsplit(reply.body["authorization_url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{oidc_provider.issuer}/auth"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query["state"] == reply.body["state"]
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == HTTPS_REDIRECT
    assert query["scope"] == "openid email"
    assert query["response_type"] == "code"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43 and query["nonce"]


async def test_start_oidc_discovery_failure_is_502(
    api: Api, runtime: Runtime, faulty_provider: FaultyProvider
) -> None:
    token = await remote_configured(api, runtime, faulty_provider.issuer)
    faulty_provider.fault = "discovery_404"
    reply = await start_owner(api, token)
    assert (reply.status, reply.code) == (502, "oidc_discovery_error")


async def test_start_oidc_refuses_past_1000_pending(
    api: Api, runtime: Runtime, clock: FakeClock, oidc_provider: OidcProvider
) -> None:
    token = await remote_configured(api, runtime, oidc_provider.issuer)
    await fill_pending(runtime, clock.now())
    reply = await start_owner(api, token)
    assert (reply.status, reply.code) == (429, "too_many_pending")


# -- POST /v1/setup/owner/verify-oidc ---------------------------------------------------


async def test_owner_verification_with_the_real_provider(
    api: Api, runtime: Runtime, store: Store, clock: FakeClock, oidc_provider: OidcProvider
) -> None:
    token = await remote_configured(api, runtime, oidc_provider.issuer)
    code, state = await owner_code(api, token, oidc_provider)
    clock.advance(60)
    # No Authorization header: the setup session bound at start is the one that counts.
    reply = await verify_owner(api, code, state)
    assert reply.status == 200, reply.body
    assert reply.body == {
        "state": "owner_created",
        "owner_email": "owner@example.com",
        "oidc_subject": "owner-sub",
        "session_expires_at": clock.now() + 1800,
    }
    instance = await store.instance.get()
    assert instance.state is SetupState.OWNER_CREATED
    assert (instance.owner_email, instance.owner_subject) == ("owner@example.com", "owner-sub")
    assert "owner_verified" in await actions(store)
    done = await api.post("/v1/setup/complete", token=token)
    assert done.status == 200, done.body
    assert done.body["state"] == "ready"


async def test_verify_oidc_ignores_the_authorization_header(
    api: Api, runtime: Runtime, oidc_provider: OidcProvider
) -> None:
    token = await remote_configured(api, runtime, oidc_provider.issuer)
    code, state = await owner_code(api, token, oidc_provider)
    reply = await verify_owner(api, code, state, token="not-a-setup-session")
    assert reply.status == 200, reply.body


async def test_verify_oidc_state_checks(
    api: Api, runtime: Runtime, clock: FakeClock, oidc_provider: OidcProvider
) -> None:
    token = await remote_configured(api, runtime, oidc_provider.issuer)
    reply = await verify_owner(api, "code", "unknown-state")
    assert (reply.status, reply.code) == (400, "invalid_state")
    await public_pending(runtime, "public-state", clock.now())
    reply = await verify_owner(api, "code", "public-state")
    assert (reply.status, reply.code) == (400, "invalid_state")
    started = await start_owner(api, token)
    clock.advance(600)
    reply = await verify_owner(api, "code", started.body["state"])
    assert (reply.status, reply.code) == (400, "auth_expired")
    # Used once, even when it failed.
    reply = await verify_owner(api, "code", started.body["state"])
    assert (reply.status, reply.code) == (400, "invalid_state")


async def test_verify_oidc_on_a_ready_instance(
    api: Api, runtime: Runtime, owner_token: str, clock: FakeClock
) -> None:
    await setup_pending(runtime, "setup-state", clock.now())
    reply = await verify_owner(api, "code", "setup-state")
    assert (reply.status, reply.code) == (409, "already_configured")


async def test_verify_oidc_after_the_owner_is_known(
    api: Api, runtime: Runtime, oidc_provider: OidcProvider
) -> None:
    token = await remote_configured(api, runtime, oidc_provider.issuer)
    first = await owner_code(api, token, oidc_provider)
    second = await owner_code(api, token, oidc_provider, "qa-sub")
    assert (await verify_owner(api, *first)).status == 200
    reply = await verify_owner(api, *second)
    assert (reply.status, reply.code) == (409, "invalid_state")


async def test_verify_oidc_needs_the_setup_session_of_the_start(
    api: Api, runtime: Runtime, store: Store, oidc_provider: OidcProvider
) -> None:
    token = await remote_configured(api, runtime, oidc_provider.issuer)
    code, state = await owner_code(api, token, oidc_provider)
    await setup_session(api, runtime)  # a new bootstrap token replaces the setup session
    reply = await verify_owner(api, code, state)
    assert (reply.status, reply.code) == (401, "invalid_session")
    assert await state_of(store) is SetupState.IDP_CONFIGURED


async def test_verify_oidc_is_stale_after_a_mode_change(
    api: Api, runtime: Runtime, oidc_provider: OidcProvider
) -> None:
    token = await remote_configured(api, runtime, oidc_provider.issuer)
    code, state = await owner_code(api, token, oidc_provider)
    await choose(api, token, "remote", "oidc")  # the same choice still counts as a change
    reply = await verify_owner(api, code, state)
    assert (reply.status, reply.code) == (409, "stale_oidc_setup")


async def test_verify_oidc_is_stale_when_the_redirect_is_no_longer_allowed(
    api: Api, runtime: Runtime, oidc_provider: OidcProvider
) -> None:
    token = await remote_configured(api, runtime, oidc_provider.issuer)
    started = await start_owner(api, token, HTTPS_REDIRECT)
    code, state = await oidc_provider.authorize(started.body["authorization_url"], "owner-sub")
    runtime.network.allowed_origins = LOCAL_ORIGINS
    reply = await verify_owner(api, code, state)
    assert (reply.status, reply.code) == (409, "stale_oidc_setup")


async def test_reconfiguring_drops_pending_setup_sign_ins(
    api: Api, runtime: Runtime, oidc_provider: OidcProvider
) -> None:
    token = await remote_configured(api, runtime, oidc_provider.issuer)
    code, state = await owner_code(api, token, oidc_provider)
    assert (await configure(api, token, oidc_provider.issuer)).status == 200
    reply = await verify_owner(api, code, state)
    assert (reply.status, reply.code) == (400, "invalid_state")


async def test_verify_oidc_provider_failures(
    api: Api, runtime: Runtime, store: Store, oidc_provider: OidcProvider
) -> None:
    token = await remote_configured(api, runtime, oidc_provider.issuer)
    started = await start_owner(api, token)
    reply = await verify_owner(api, "not-a-code", started.body["state"])
    assert (reply.status, reply.code) == (502, "token_exchange_error")
    code, state = await owner_code(api, token, oidc_provider, "no-email-sub")
    reply = await verify_owner(api, code, state)
    assert (reply.status, reply.code) == (502, "missing_email")
    assert await state_of(store) is SetupState.IDP_CONFIGURED


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("discovery_404", "oidc_discovery_error"),
        ("token_error", "token_exchange_error"),
        ("missing_id_token", "missing_id_token"),
        ("forged_signature", "id_token_verification_error"),
        ("wrong_nonce", "id_token_verification_error"),
        ("wrong_audience", "id_token_verification_error"),
        ("expired", "id_token_verification_error"),
        ("no_email", "missing_email"),
    ],
)
async def test_verify_oidc_faulty_provider(
    api: Api, runtime: Runtime, store: Store, faulty_provider: FaultyProvider, fault: str, code: str
) -> None:
    token = await remote_configured(api, runtime, faulty_provider.issuer)
    started = await start_owner(api, token)
    query = await follow_to_redirect_uri(started.body["authorization_url"], (REDIRECT_URI,))
    faulty_provider.fault = fault
    reply = await verify_owner(api, query["code"], query["state"])
    assert (reply.status, reply.code) == (502, code)
    assert set(reply.body) == {"error", "code", "request_id"}
    assert await state_of(store) is SetupState.IDP_CONFIGURED


async def test_the_faulty_provider_signs_the_owner_in_with_client_secret_post(
    api: Api, runtime: Runtime, faulty_provider: FaultyProvider
) -> None:
    token = await remote_configured(api, runtime, faulty_provider.issuer)
    started = await start_owner(api, token)
    query = await follow_to_redirect_uri(started.body["authorization_url"], (REDIRECT_URI,))
    reply = await verify_owner(api, query["code"], query["state"])
    assert reply.status == 200, reply.body
    assert reply.body["owner_email"] == faulty_provider.email
    sent = faulty_provider.token_requests[-1]
    assert (sent["client_id"], sent["client_secret"]) == (CLIENT_ID, CLIENT_SECRET)
    assert sent["code_verifier"] and sent["redirect_uri"] == REDIRECT_URI


# -- public sign-in -----------------------------------------------------------------------


@pytest.fixture
async def signin_ready(api: Api, owner_token: str, oidc_provider: OidcProvider) -> str:
    """A ready instance whose owner pointed it at the real provider; the owner's token."""
    reply = await api.call(
        "PUT",
        "/v1/settings/external-access/oidc",
        json={
            "issuer_url": oidc_provider.issuer,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
        token=owner_token,
    )
    assert reply.status == 200, reply.body
    return owner_token


async def start(api: Api, redirect_uri: str | None = REDIRECT_URI, **kw: Any) -> Reply:
    path = "/v1/auth/oidc/start"
    if redirect_uri is not None:
        path += "?" + "redirect_uri=" + redirect_uri
    return await api.get(path, **kw)


async def callback(api: Api, code: str, state: str) -> Reply:
    return await api.post("/v1/auth/oidc/callback", json={"code": code, "state": state})


async def sign_in(api: Api, provider: OidcProvider, login_hint: str) -> Reply:
    started = await start(api)
    assert started.status == 200, started.body
    code, state = await provider.authorize(started.body["authorization_url"], login_hint)
    return await callback(api, code, state)


async def test_sign_in_activates_an_invited_user(
    api: Api, store: Store, clock: FakeClock, signin_ready: str, oidc_provider: OidcProvider
) -> None:
    invited = await store.users.create(
        email="dev@example.com",
        role=Role.DEVELOPER,
        status=UserStatus.INVITED,
        subject=None,
        now=clock.now(),
    )
    reply = await sign_in(api, oidc_provider, "dev-sub")
    assert reply.status == 200, reply.body
    assert reply.body["expires_at"] == clock.now() + 86400
    assert reply.body["user"] == {
        "email": "dev@example.com",
        "oidc_subject": "dev-sub",
        "user_id": invited.id,
        "role": "developer",
        "avatar_url": "https://img.example.com/dev.png",
    }
    me = await api.get("/v1/users/me", token=reply.body["session_token"])
    assert me.status == 200, me.body
    assert me.body["user"]["status"] == "active"
    assert me.body["user"]["avatar_url"] == "https://img.example.com/dev.png"
    recorded = await actions(store)
    assert recorded[-2:] == ["user_activated", "user_signed_in"]
    # Later sign-ins find the user by subject.
    again = await sign_in(api, oidc_provider, "dev-sub")
    assert again.status == 200, again.body
    assert again.body["user"]["user_id"] == invited.id
    assert (await actions(store))[-1] == "user_signed_in"


async def test_sign_in_updates_the_avatar_of_an_active_user(
    api: Api, store: Store, clock: FakeClock, signin_ready: str, oidc_provider: OidcProvider
) -> None:
    await store.users.create(
        email="owner@example.com",
        role=Role.ADMIN,
        status=UserStatus.ACTIVE,
        subject="owner-sub",
        now=clock.now(),
    )
    reply = await sign_in(api, oidc_provider, "owner-sub")
    assert reply.status == 200, reply.body
    assert reply.body["user"]["avatar_url"] == "https://img.example.com/owner.png"
    assert reply.body["user"]["role"] == "admin"


async def test_sign_in_refusals(
    api: Api, store: Store, clock: FakeClock, signin_ready: str, oidc_provider: OidcProvider
) -> None:
    await store.users.create(
        email="unverified@example.com",
        role=Role.DEVELOPER,
        status=UserStatus.INVITED,
        subject=None,
        now=clock.now(),
    )
    reply = await sign_in(api, oidc_provider, "unverified-sub")
    assert (reply.status, reply.code) == (403, "unverified_email")
    reply = await sign_in(api, oidc_provider, "qa-sub")
    assert (reply.status, reply.code) == (403, "user_not_found")
    await store.users.create(
        email="qa@example.com",
        role=Role.QA_VIEWER,
        status=UserStatus.DISABLED,
        subject="qa-sub",
        now=clock.now(),
    )
    reply = await sign_in(api, oidc_provider, "qa-sub")
    assert (reply.status, reply.code) == (403, "user_not_found")
    reply = await sign_in(api, oidc_provider, "no-email-sub")
    assert (reply.status, reply.code) == (502, "missing_email")


async def test_callback_state_checks(
    api: Api, runtime: Runtime, clock: FakeClock, signin_ready: str, oidc_provider: OidcProvider
) -> None:
    reply = await callback(api, "code", "unknown")
    assert (reply.status, reply.code) == (400, "invalid_state")
    await setup_pending(runtime, "setup-state", clock.now())
    reply = await callback(api, "code", "setup-state")
    assert (reply.status, reply.code) == (400, "invalid_state")
    started = await start(api)
    code, state = await oidc_provider.authorize(started.body["authorization_url"], "qa-sub")
    clock.advance(600)
    reply = await callback(api, code, state)
    assert (reply.status, reply.code) == (400, "auth_expired")
    reply = await callback(api, code, state)
    assert (reply.status, reply.code) == (400, "invalid_state")


async def test_callback_before_setup_is_complete(
    api: Api, runtime: Runtime, clock: FakeClock
) -> None:
    await public_pending(runtime, "early", clock.now())
    reply = await callback(api, "code", "early")
    assert (reply.status, reply.code) == (409, "setup_incomplete")


async def test_callback_with_a_bad_code_is_token_exchange_error(
    api: Api, signin_ready: str
) -> None:
    started = await start(api)
    reply = await callback(api, "bogus", started.body["state"])
    assert (reply.status, reply.code) == (502, "token_exchange_error")


async def test_start_checks_in_the_contract_order(
    api: Api, runtime: Runtime, store: Store, owner_token: str, oidc_provider: OidcProvider
) -> None:
    reply = await start(api)
    assert (reply.status, reply.code) == (409, "oidc_not_configured")
    saved = await api.call(
        "PUT",
        "/v1/settings/external-access/oidc",
        json={"issuer_url": oidc_provider.issuer, "client_id": CLIENT_ID, "client_secret": "x"},
        token=owner_token,
    )
    assert saved.status == 200, saved.body
    runtime.identity.secrets = SecretBox(bytes(32))  # not the key the secret was sealed with
    reply = await start(api, "https://evil.example.com/auth/callback")
    assert (reply.status, reply.code) == (500, "decryption_error")


async def test_start_before_setup_is_complete(api: Api) -> None:
    reply = await start(api, "https://evil.example.com/auth/callback")
    assert (reply.status, reply.code) == (409, "setup_incomplete")


async def test_start_redirect_rule(api: Api, signin_ready: str) -> None:
    for redirect in (None, "https://evil.example.com/auth/callback", "http://ci.example.com/x"):
        reply = await start(api, redirect)
        assert (reply.status, reply.code) == (400, "invalid_redirect_uri"), redirect
    assert (await start(api, HTTPS_REDIRECT)).status == 200
    assert (await start(api, "http://192.168.1.5:3000/auth/callback")).status == 200


async def test_start_capacity(
    api: Api, runtime: Runtime, clock: FakeClock, signin_ready: str
) -> None:
    await fill_pending(runtime, clock.now())
    reply = await start(api)
    assert (reply.status, reply.code) == (429, "too_many_pending")


async def test_start_rate_limits_per_client_and_overall(
    api: Api, runtime: Runtime, signin_ready: str, clock: FakeClock
) -> None:
    for _ in range(20):
        assert (await start(api, peer=REMOTE)).status == 200
    reply = await start(api, peer=REMOTE)
    assert (reply.status, reply.code) == (429, "oidc_start_rate_limited")
    # Behind a loopback proxy the forwarded address is the client.
    for n in range(100):
        forwarded = {"X-Forwarded-For": f"198.51.100.{n}"}
        assert (await start(api, headers=forwarded)).status == 200, n
    reply = await start(api, headers={"X-Forwarded-For": "198.51.100.200"})
    assert (reply.status, reply.code) == (429, "oidc_start_rate_limited")
    clock.advance(60)
    assert (await start(api, peer=REMOTE)).status == 200


async def test_start_discovery_failure_is_502(
    api: Api, owner_token: str, faulty_provider: FaultyProvider
) -> None:
    saved = await api.call(
        "PUT",
        "/v1/settings/external-access/oidc",
        json={"issuer_url": faulty_provider.issuer, "client_id": CLIENT_ID},
        token=owner_token,
    )
    assert saved.status == 200, saved.body
    faulty_provider.fault = "discovery_404"
    reply = await start(api)
    assert (reply.status, reply.code) == (502, "oidc_discovery_error")


async def test_callback_faulty_provider(
    api: Api, store: Store, clock: FakeClock, owner_token: str, faulty_provider: FaultyProvider
) -> None:
    saved = await api.call(
        "PUT",
        "/v1/settings/external-access/oidc",
        json={"issuer_url": faulty_provider.issuer, "client_id": CLIENT_ID, "client_secret": "s"},
        token=owner_token,
    )
    assert saved.status == 200, saved.body
    await store.users.create(
        email=faulty_provider.email,
        role=Role.DEVELOPER,
        status=UserStatus.INVITED,
        subject=None,
        now=clock.now(),
    )
    for fault, code in (
        ("missing_id_token", "missing_id_token"),
        ("forged_signature", "id_token_verification_error"),
        ("wrong_nonce", "id_token_verification_error"),
        ("discovery_404", "oidc_discovery_error"),
    ):
        faulty_provider.fault = "none"
        started = await start(api)
        query = await follow_to_redirect_uri(started.body["authorization_url"], (REDIRECT_URI,))
        faulty_provider.fault = fault
        reply = await callback(api, query["code"], query["state"])
        assert (reply.status, reply.code) == (502, code), fault
    faulty_provider.fault = "none"
    started = await start(api)
    query = await follow_to_redirect_uri(started.body["authorization_url"], (REDIRECT_URI,))
    reply = await callback(api, query["code"], query["state"])
    assert reply.status == 200, reply.body
    assert reply.body["user"]["email"] == faulty_provider.email


async def test_a_start_outlived_by_a_reconfiguration_is_oidc_start_expired(
    api: Api, owner_token: str, faulty_provider: FaultyProvider, oidc_provider: OidcProvider
) -> None:
    settings = "/v1/settings/external-access/oidc"
    body = {"issuer_url": faulty_provider.issuer, "client_id": CLIENT_ID}
    assert (await api.call("PUT", settings, json=body, token=owner_token)).status == 200
    faulty_provider.hold = threading.Event()
    replies: list[Reply] = []

    async def starting() -> None:
        replies.append(await start(api))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(starting)
        assert await trio.to_thread.run_sync(faulty_provider.entered.wait, 10.0)
        # The owner moves to another provider while this start is still discovering.
        body = {"issuer_url": oidc_provider.issuer, "client_id": CLIENT_ID}
        assert (await api.call("PUT", settings, json=body, token=owner_token)).status == 200
        faulty_provider.hold.set()
    assert (replies[0].status, replies[0].code) == (503, "oidc_start_expired")
