"""Signing in through an authenticating reverse proxy (contract §7.6, §7.7)."""

from __future__ import annotations

from oore.domain.setup import Preferences, RemoteAuthMode, RuntimeMode
from oore.domain.users import Role, UserStatus
from oore.runtime import Runtime
from oore.store import Store
from tests.http.conftest import LOOPBACK, REMOTE, Api, FakeClock, Reply
from tests.http.setup_kit import actions, proxy_ready, setup_session, vouch

LOGIN = "/v1/auth/trusted-proxy/login"


async def login(api: Api, headers: dict[str, str], peer: tuple[str, int] = REMOTE) -> Reply:
    return await api.post(LOGIN, headers=headers, peer=peer)


async def test_before_setup_is_complete_it_is_409_setup_incomplete(
    api: Api, runtime: Runtime
) -> None:
    await setup_session(api, runtime)
    reply = await login(api, vouch("owner@example.com"))
    assert (reply.status, reply.code) == (409, "setup_incomplete")


async def test_only_in_remote_trusted_proxy_mode(
    api: Api, owner_token: str, store: Store, clock: FakeClock
) -> None:
    local = await login(api, vouch("owner@local"), LOOPBACK)
    assert (local.status, local.code) == (403, "mode_restricted")
    await store.instance.set_preferences(Preferences(RuntimeMode.REMOTE), clock.now())
    assert (await login(api, vouch("owner@local"), LOOPBACK)).code == "mode_restricted"
    await store.instance.set_preferences(
        Preferences(RuntimeMode.REMOTE, RemoteAuthMode.TRUSTED_PROXY), clock.now()
    )
    unset = await login(api, vouch("owner@local"), LOOPBACK)
    assert (unset.status, unset.code) == (409, "trusted_proxy_not_configured")


async def test_the_owner_signs_in_through_the_proxy(
    api: Api, runtime: Runtime, store: Store, clock: FakeClock
) -> None:
    await proxy_ready(api, runtime)
    reply = await login(api, vouch("Owner@Example.com"))
    assert reply.status == 200, reply.body
    assert reply.body["expires_at"] == clock.now() + 24 * 60 * 60
    assert reply.body["user"]["email"] == "owner@example.com"
    assert reply.body["user"]["role"] == "owner"
    me = await api.get("/v1/users/me", token=reply.body["session_token"], peer=REMOTE)
    assert me.status == 200 and me.body["user"]["email"] == "owner@example.com"
    assert "user_signed_in" in await actions(store)


async def test_proxy_checks_in_order(api: Api, runtime: Runtime) -> None:
    await proxy_ready(api, runtime)
    outsider = await login(api, vouch("owner@example.com"), ("198.51.100.1", 4000))
    assert (outsider.status, outsider.code) == (403, "trusted_proxy_peer_not_allowed")
    for headers, status, code in [
        (vouch("owner@example.com", None), 401, "trusted_proxy_shared_secret_missing"),
        (vouch("owner@example.com", "wrong"), 401, "trusted_proxy_shared_secret_invalid"),
        (vouch(None), 401, "trusted_proxy_identity_missing"),
        (vouch("not-an-email"), 401, "trusted_proxy_identity_invalid"),
        (vouch("stranger@example.com"), 403, "user_not_found"),
    ]:
        reply = await login(api, headers)
        assert (reply.status, reply.code) == (status, code), headers
    # A loopback peer is always trusted, whatever the configured networks say.
    assert (await login(api, vouch("owner@example.com"), LOOPBACK)).status == 200


async def test_an_invited_user_is_activated_and_a_disabled_one_refused(
    api: Api, runtime: Runtime, store: Store, clock: FakeClock
) -> None:
    await proxy_ready(api, runtime)
    invited = await store.users.create(
        email="Dev@Example.com",
        role=Role.DEVELOPER,
        status=UserStatus.INVITED,
        subject=None,
        now=clock.now(),
    )
    reply = await login(api, vouch("dev@example.com"))
    assert reply.status == 200, reply.body
    assert reply.body["user"]["user_id"] == invited.id
    assert reply.body["user"]["oidc_subject"] == "trusted-proxy::dev@example.com"
    [active] = await store.users.active_users("dev@example.com")
    assert active.status is UserStatus.ACTIVE
    await store.users.create(
        email="gone@example.com",
        role=Role.DEVELOPER,
        status=UserStatus.DISABLED,
        subject=None,
        now=clock.now(),
    )
    refused = await login(api, vouch("gone@example.com"))
    assert (refused.status, refused.code) == (403, "user_disabled")
