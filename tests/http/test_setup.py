from __future__ import annotations

import pytest
import trio

from oore.domain.network import TrustedProxySettings
from oore.domain.setup import Preferences, RuntimeMode, SetupState
from oore.domain.users import Role, UserStatus
from oore.runtime import Runtime
from oore.store import Store
from oore.store.database import Connection
from tests.http.conftest import LOOPBACK, REMOTE, Api, FakeClock
from tests.http.setup_kit import (
    PROXY_CIDR,
    SECRET,
    actions,
    choose,
    configure_proxy,
    setup_session,
    store_oidc_config,
    vouch,
)


async def test_fresh_instance_reports_bootstrap_pending(api: Api) -> None:
    reply = await api.get("/v1/public/setup-status")
    assert reply.status == 200
    body = reply.body
    assert body["state"] == "bootstrap_pending"
    assert body["runtime_mode"] == "local" and body["remote_auth_mode"] == "oidc"
    assert body["setup_mode"] is True and body["is_configured"] is False
    assert len(body["instance_id"]) == 36


async def test_status_follows_preferences(api: Api, store: Store, clock: FakeClock) -> None:
    await store.instance.set_preferences(Preferences(runtime_mode=RuntimeMode.REMOTE), clock.now())
    assert (await api.get("/v1/public/setup-status")).body["runtime_mode"] == "remote"


async def test_verify_without_a_minted_token_is_401_no_bootstrap_token(api: Api) -> None:
    # The contract answers 500 here; a client's guess before any mint is not a server fault.
    reply = await api.post("/v1/setup/bootstrap-token/verify", json={"token": "0" * 64})
    assert (reply.status, reply.code) == (401, "no_bootstrap_token")


async def test_right_token_opens_a_setup_session_once(api: Api, runtime: Runtime) -> None:
    minted = await runtime.identity.mint_bootstrap_token(900)
    reply = await api.post("/v1/setup/bootstrap-token/verify", json={"token": minted.token})
    assert reply.status == 200
    assert len(reply.body["session_token"]) == 64
    assert reply.body["expires_at"] > minted.expires_at - 900
    again = await api.post("/v1/setup/bootstrap-token/verify", json={"token": minted.token})
    assert (again.status, again.code) == (410, "token_consumed")


async def test_expired_token_is_410(api: Api, runtime: Runtime, clock: FakeClock) -> None:
    minted = await runtime.identity.mint_bootstrap_token(60)
    clock.advance(60)
    reply = await api.post("/v1/setup/bootstrap-token/verify", json={"token": minted.token})
    assert (reply.status, reply.code) == (410, "token_expired")


async def test_wrong_guesses_lock_out_after_five(api: Api, runtime: Runtime) -> None:
    minted = await runtime.identity.mint_bootstrap_token(900)
    seen = []
    for _ in range(6):
        reply = await api.post("/v1/setup/bootstrap-token/verify", json={"token": "f" * 64})
        seen.append((reply.status, reply.code))
    assert seen == [(401, "invalid_token")] * 5 + [(429, "too_many_attempts")]
    # Locked out means locked out: the right token is refused too, until a new one is minted.
    locked = await api.post("/v1/setup/bootstrap-token/verify", json={"token": minted.token})
    assert (locked.status, locked.code) == (429, "too_many_attempts")
    again = await runtime.identity.mint_bootstrap_token(900)
    ok = await api.post("/v1/setup/bootstrap-token/verify", json={"token": again.token})
    assert ok.status == 200


async def test_minting_again_resets_the_budget(api: Api, runtime: Runtime) -> None:
    await runtime.identity.mint_bootstrap_token(900)
    for _ in range(6):
        await api.post("/v1/setup/bootstrap-token/verify", json={"token": "f" * 64})
    await runtime.identity.mint_bootstrap_token(900)
    reply = await api.post("/v1/setup/bootstrap-token/verify", json={"token": "f" * 64})
    assert (reply.status, reply.code) == (401, "invalid_token")


async def test_concurrent_verifications_consume_the_token_once(api: Api, runtime: Runtime) -> None:
    minted = await runtime.identity.mint_bootstrap_token(900)
    statuses: list[int] = []

    async def verify() -> None:
        reply = await api.post("/v1/setup/bootstrap-token/verify", json={"token": minted.token})
        statuses.append(reply.status)

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(verify)
    assert sorted(statuses) == [200] + [410] * 7


async def test_verify_after_setup_is_409_already_configured(
    api: Api, runtime: Runtime, owner_token: str
) -> None:
    reply = await api.post("/v1/setup/bootstrap-token/verify", json={"token": "0" * 64})
    assert (reply.status, reply.code) == (409, "already_configured")


async def test_minting_after_setup_is_refused(runtime: Runtime, owner_token: str) -> None:
    import pytest

    from oore.errors import ApiError

    with pytest.raises(ApiError) as caught:
        await runtime.identity.mint_bootstrap_token(900)
    assert caught.value.code == "already_configured"


# -- the setup steps after the bootstrap token (contract §2.2, §3) ------------------------

MUTATIONS: list[tuple[str, dict[str, object] | None]] = [
    ("/v1/setup/preferences", {"runtime_mode": "local"}),
    ("/v1/setup/local-owner/create", {"email": "me@example.com"}),
    ("/v1/setup/trusted-proxy/configure", {}),
    ("/v1/setup/owner/claim-trusted-proxy", None),
    ("/v1/setup/complete", None),
]


@pytest.mark.parametrize(("path", "body"), MUTATIONS)
async def test_every_setup_step_is_closed_once_ready_even_without_a_session(
    api: Api, owner_token: str, path: str, body: dict[str, object] | None
) -> None:
    for token in (None, owner_token):
        reply = await api.post(path, json=body, token=token)
        assert (reply.status, reply.code) == (409, "already_configured")


@pytest.mark.parametrize(("path", "body"), MUTATIONS[:3])
async def test_setup_session_codes_in_order(
    api: Api, runtime: Runtime, clock: FakeClock, path: str, body: dict[str, object] | None
) -> None:
    reply = await api.post(path, json=body)
    assert (reply.status, reply.code) == (401, "no_session")
    token = await setup_session(api, runtime)
    assert (await api.post(path, json=body, token="ab" * 32)).code == "invalid_session"
    assert (await api.post(path, json=body)).code == "invalid_session"
    clock.advance(30 * 60)
    expired = await api.post(path, json=body, token=token)
    assert (expired.status, expired.code) == (401, "session_expired")


async def test_summary_needs_a_live_setup_session(
    api: Api, runtime: Runtime, clock: FakeClock
) -> None:
    assert (await api.get("/v1/setup/summary")).code == "no_session"
    token = await setup_session(api, runtime)
    assert (await api.get("/v1/setup/summary", token="ab" * 32)).code == "invalid_session"
    reply = await api.get("/v1/setup/summary", token=token)
    assert reply.status == 200
    status = await api.get("/v1/public/setup-status")
    assert reply.body == {
        "instance_id": status.body["instance_id"],
        "state": "bootstrap_pending",
        "has_client_secret": False,
    }
    clock.advance(30 * 60)
    assert (await api.get("/v1/setup/summary", token=token)).code == "session_expired"


async def test_the_signed_in_owner_reads_the_summary_once_setup_is_done(
    api: Api, runtime: Runtime
) -> None:
    token = await setup_session(api, runtime)
    await api.post("/v1/setup/local-owner/create", json={"email": "me@example.com"}, token=token)
    assert (await api.post("/v1/setup/complete", token=token)).status == 200
    login = await api.post("/v1/auth/local/login", json={})
    owner = login.body["session_token"]
    reply = await api.get("/v1/setup/summary", token=owner)
    assert reply.status == 200, reply.body
    assert (reply.body["state"], reply.body["owner_email"]) == ("ready", "me@example.com")
    assert (await api.get("/v1/setup/summary", token=token)).code == "no_session"


async def test_each_step_slides_the_setup_session(
    api: Api, runtime: Runtime, clock: FakeClock
) -> None:
    token = await setup_session(api, runtime)
    for _ in range(3):
        clock.advance(20 * 60)
        reply = await choose(api, token, "local")
        assert reply.status == 200, reply.body
        assert reply.body["session_expires_at"] == clock.now() + 30 * 60


async def test_local_preferences_force_oidc_and_remote_defaults_to_it(
    api: Api, runtime: Runtime
) -> None:
    token = await setup_session(api, runtime)
    local = await choose(api, token, "local", "trusted_proxy")
    assert (local.body["runtime_mode"], local.body["remote_auth_mode"]) == ("local", "oidc")
    remote = await choose(api, token, "remote")
    assert (remote.body["runtime_mode"], remote.body["remote_auth_mode"]) == ("remote", "oidc")
    proxy = await choose(api, token, "remote", "trusted_proxy")
    assert proxy.body["remote_auth_mode"] == "trusted_proxy"
    status = (await api.get("/v1/public/setup-status")).body
    assert (status["runtime_mode"], status["remote_auth_mode"]) == ("remote", "trusted_proxy")
    bad = await choose(api, token, "cloud")
    assert (bad.status, bad.code) == (400, "invalid_request")


async def test_preferences_make_pending_setup_sign_ins_stale(
    api: Api, runtime: Runtime, store: Store
) -> None:
    token = await setup_session(api, runtime)
    before = (await store.instance.get()).setup_generation
    await choose(api, token, "remote")
    assert (await store.instance.get()).setup_generation == before + 1


async def test_leaving_remote_oidc_erases_the_configured_provider(
    api: Api, runtime: Runtime, store: Store, clock: FakeClock
) -> None:
    token = await setup_session(api, runtime)
    await choose(api, token, "remote")
    await store_oidc_config(store, clock.now(), secret="sealed")
    assert (await choose(api, token, "remote", "oidc")).status == 200
    assert await store.oidc.get() is not None
    assert (await choose(api, token, "local")).status == 200
    assert await store.oidc.get() is None
    assert (await store.instance.get()).state is SetupState.IDP_CONFIGURED
    summary = (await api.get("/v1/setup/summary", token=token)).body
    assert "issuer_url" not in summary and summary["has_client_secret"] is False


async def test_preferences_are_refused_once_an_owner_exists(api: Api, runtime: Runtime) -> None:
    token = await setup_session(api, runtime)
    created = await api.post(
        "/v1/setup/local-owner/create", json={"email": "me@example.com"}, token=token
    )
    assert created.status == 200
    reply = await choose(api, token, "remote")
    assert (reply.status, reply.code) == (409, "invalid_state")


async def test_local_owner_codes_in_order(api: Api, runtime: Runtime) -> None:
    path = "/v1/setup/local-owner/create"
    token = await setup_session(api, runtime)
    await choose(api, token, "remote")
    remote = await api.post(path, json={"email": "me@example.com"}, token="ab" * 32)
    assert (remote.status, remote.code) == (403, "mode_restricted")
    await choose(api, token, "local")
    for email in ("", "   ", "no-at-sign"):
        bad = await api.post(path, json={"email": email}, token=token)
        assert (bad.status, bad.code) == (400, "invalid_input")
    ok = await api.post(path, json={"email": "  Me@Example.COM "}, token=token)
    assert ok.status == 200
    assert ok.body["state"] == "owner_created" and ok.body["owner_email"] == "me@example.com"
    assert ok.body["session_expires_at"] > 0
    again = await api.post(path, json={"email": "other@example.com"}, token="ab" * 32)
    assert (again.status, again.code) == (409, "invalid_state")


async def test_complete_turns_the_local_owner_into_the_owner_user(
    api: Api, runtime: Runtime, store: Store
) -> None:
    token = await setup_session(api, runtime)
    early = await api.post("/v1/setup/complete", token="ab" * 32)
    assert (early.status, early.code) == (409, "invalid_state")
    await api.post("/v1/setup/local-owner/create", json={"email": "me@example.com"}, token=token)
    wrong = await api.post("/v1/setup/complete", token="ab" * 32)
    assert (wrong.status, wrong.code) == (401, "invalid_session")
    done = await api.post("/v1/setup/complete", token=token)
    assert done.status == 200
    status = (await api.get("/v1/public/setup-status")).body
    assert done.body == {"state": "ready", "instance_id": status["instance_id"]}
    assert status["is_configured"] is True
    [owner] = await store.users.active_users("me@example.com")
    assert (owner.role, owner.oidc_subject) == (Role.OWNER, "local::me@example.com")
    assert (await store.instance.get()).setup_session_hash is None
    assert (await api.get("/v1/setup/summary", token=token)).code == "no_session"
    login = await api.post("/v1/auth/local/login", json={})
    assert login.status == 200 and login.body["user"]["email"] == "me@example.com"
    seen = await actions(store)
    assert seen.index("local_owner_created") < seen.index("owner_created")
    assert seen.index("owner_created") < seen.index("setup_completed")


async def test_complete_promotes_an_existing_user_with_the_owner_email(
    api: Api, runtime: Runtime, store: Store, clock: FakeClock
) -> None:
    await store.users.create(
        email="me@example.com",
        role=Role.DEVELOPER,
        status=UserStatus.INVITED,
        subject=None,
        now=clock.now(),
    )
    token = await setup_session(api, runtime)
    await api.post("/v1/setup/local-owner/create", json={"email": "me@example.com"}, token=token)
    assert (await api.post("/v1/setup/complete", token=token)).status == 200
    [owner] = await store.users.active_users("me@example.com")
    assert owner.role is Role.OWNER and owner.status is UserStatus.ACTIVE


async def test_remote_oidc_complete_needs_a_stored_provider(
    api: Api, runtime: Runtime, store: Store, clock: FakeClock
) -> None:
    token = await setup_session(api, runtime)
    await choose(api, token, "local")
    await api.post("/v1/setup/local-owner/create", json={"email": "me@example.com"}, token=token)
    # Modes cannot change after an owner exists; move to remote behind the API's back.
    await store.instance.set_preferences(Preferences(RuntimeMode.REMOTE), clock.now())
    reply = await api.post("/v1/setup/complete", token=token)
    assert (reply.status, reply.code) == (409, "remote_auth_not_configured")
    await store_oidc_config(store, clock.now())

    async def back_to_owner(conn: Connection) -> None:
        await conn.execute("UPDATE instance SET state = 'owner_created'")

    await store.db.run(back_to_owner)
    assert (await api.post("/v1/setup/complete", token=token)).status == 200


# -- trusted proxy during setup ------------------------------------------------------------


async def test_trusted_proxy_configure_codes_in_order(
    api: Api, runtime: Runtime, store: Store
) -> None:
    token = await setup_session(api, runtime)
    local = await configure_proxy(api, token, shared_secret=SECRET)
    assert (local.status, local.code) == (403, "mode_restricted")
    await choose(api, token, "remote", "oidc")
    assert (await configure_proxy(api, token)).code == "mode_restricted"
    await choose(api, token, "remote", "trusted_proxy")
    for body in (
        {"setup_owner_email": "nobody"},
        {"trusted_proxy_cidrs": ["10.0.0.1"]},
        {"trusted_proxy_cidrs": ["10.0.0.0/33"]},
        {"shared_secret": "x" * 1025},
    ):
        bad = await configure_proxy(api, token, **body)
        assert (bad.status, bad.code) == (400, "invalid_input"), body
    ok = await configure_proxy(
        api,
        token,
        user_email_header="X-Auth-Email",
        setup_owner_email=" Boss@Example.com ",
        trusted_proxy_cidrs=["10.0.0.7/8", "10.0.0.0/8"],
        shared_secret=SECRET,
    )
    assert ok.status == 200, ok.body
    assert ok.body["state"] == "idp_configured"
    assert ok.body["setup_owner_email"] == "boss@example.com"
    assert ok.body["has_shared_secret"] is True and ok.body["session_expires_at"] > 0
    saved = await proxy_settings(store)
    assert (saved.user_email_header, saved.trusted_proxy_cidrs) == ("x-auth-email", ("10.0.0.0/8",))
    assert saved.shared_secret_enc is not None and SECRET not in saved.shared_secret_enc
    blank = await configure_proxy(api, token, user_email_header="bad header", shared_secret=" ")
    assert blank.body["has_shared_secret"] is False and "setup_owner_email" not in blank.body
    assert (await proxy_settings(store)).user_email_header == "x-oore-user-email"


async def proxy_settings(store: Store) -> TrustedProxySettings:
    found = await store.settings.trusted_proxy()
    assert found is not None
    return found


async def test_claim_trusted_proxy_codes_in_order(api: Api, runtime: Runtime, store: Store) -> None:
    path = "/v1/setup/owner/claim-trusted-proxy"
    token = await setup_session(api, runtime)

    async def claim(
        headers: dict[str, str], peer: tuple[str, int] = REMOTE
    ) -> tuple[int, str | None]:
        reply = await api.post(path, token=token, headers=headers, peer=peer)
        return reply.status, reply.code

    assert await claim(vouch("boss@example.com")) == (409, "invalid_state")
    await choose(api, token, "remote", "trusted_proxy")
    await configure_proxy(api, token, setup_owner_email="boss@example.com")
    assert (await api.post(path, token="ab" * 32)).code == "invalid_session"
    await choose(api, token, "remote", "oidc")
    assert await claim(vouch("boss@example.com")) == (403, "mode_restricted")
    await choose(api, token, "remote", "trusted_proxy")

    async def forget(conn: Connection) -> None:
        await conn.execute("DELETE FROM trusted_proxy_settings")

    await store.db.run(forget)
    assert await claim(vouch("boss@example.com")) == (409, "trusted_proxy_not_configured")
    await configure_proxy(api, token, setup_owner_email="boss@example.com")
    assert await claim(vouch("boss@example.com")) == (403, "trusted_proxy_peer_not_allowed")
    assert await claim(vouch("boss@example.com"), LOOPBACK) == (503, "trusted_proxy_config_invalid")
    await configure_proxy(
        api,
        token,
        setup_owner_email="boss@example.com",
        trusted_proxy_cidrs=[PROXY_CIDR],
        shared_secret=SECRET,
    )
    assert await claim(vouch("boss@example.com", None)) == (
        401,
        "trusted_proxy_shared_secret_missing",
    )
    assert await claim(vouch("boss@example.com", "guess")) == (
        401,
        "trusted_proxy_shared_secret_invalid",
    )
    assert await claim(vouch(None)) == (401, "trusted_proxy_identity_missing")
    assert await claim(vouch("boss")) == (401, "trusted_proxy_identity_invalid")
    assert await claim(vouch("intruder@example.com")) == (
        403,
        "trusted_proxy_owner_email_mismatch",
    )
    ok = await api.post(path, token=token, headers=vouch(" BOSS@example.com"), peer=REMOTE)
    assert ok.status == 200
    assert ok.body["state"] == "owner_created" and ok.body["owner_email"] == "boss@example.com"
    assert await claim(vouch("boss@example.com")) == (409, "invalid_state")
    done = await api.post("/v1/setup/complete", token=token)
    assert done.status == 200
    [owner] = await store.users.active_users("boss@example.com")
    assert owner.oidc_subject == "trusted-proxy::boss@example.com"


async def test_trusted_proxy_complete_needs_its_settings(
    api: Api, runtime: Runtime, store: Store
) -> None:
    token = await setup_session(api, runtime)
    await choose(api, token, "remote", "trusted_proxy")
    await configure_proxy(api, token, shared_secret=SECRET)
    claimed = await api.post(
        "/v1/setup/owner/claim-trusted-proxy", token=token, headers=vouch("boss@example.com")
    )
    assert claimed.status == 200

    async def forget(conn: Connection) -> None:
        await conn.execute("DELETE FROM trusted_proxy_settings")

    await store.db.run(forget)
    reply = await api.post("/v1/setup/complete", token=token)
    assert (reply.status, reply.code) == (409, "remote_auth_not_configured")


async def test_trusted_proxy_secret_needs_the_encryption_key(api: Api, runtime: Runtime) -> None:
    token = await setup_session(api, runtime)
    await choose(api, token, "remote", "trusted_proxy")
    runtime.identity.secrets = None
    reply = await configure_proxy(api, token, shared_secret=SECRET)
    assert (reply.status, reply.code) == (500, "encryption_error")
