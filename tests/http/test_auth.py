from __future__ import annotations

from oore.domain.setup import Preferences, RuntimeMode
from oore.domain.users import Role, UserStatus
from oore.store import Store
from tests.http.conftest import REMOTE, Api, FakeClock


async def test_local_login_completes_setup_as_owner(api: Api, store: Store) -> None:
    reply = await api.post("/v1/auth/local/login", json={})
    assert reply.status == 200
    assert reply.body["user"]["email"] == "owner@local"
    assert reply.body["user"]["role"] == "owner"
    assert reply.body["user"]["oidc_subject"] == "local::owner@local"
    status = await api.get("/v1/public/setup-status")
    assert status.body["state"] == "ready" and status.body["is_configured"] is True
    actions = [entry.action for entry in await store.audit.recent()]
    assert "owner_created" in actions and "setup_completed" in actions


async def test_local_login_accepts_an_empty_body(api: Api) -> None:
    reply = await api.post("/v1/auth/local/login", data=b"")
    assert reply.status == 200


async def test_session_expires_after_24_hours(api: Api, clock: FakeClock) -> None:
    login = await api.post("/v1/auth/local/login", json={})
    token = login.body["session_token"]
    assert login.body["expires_at"] == clock.now() + 86400
    assert (await api.get("/v1/users/me", token=token)).status == 200
    clock.advance(86400)
    reply = await api.get("/v1/users/me", token=token)
    assert (reply.status, reply.code) == (401, "invalid_session")


async def test_me_returns_the_user(api: Api, owner_token: str) -> None:
    reply = await api.get("/v1/users/me", token=owner_token)
    assert reply.status == 200
    user = reply.body["user"]
    assert user["email"] == "owner@local" and user["status"] == "active"
    assert "display_name" not in user and "avatar_url" not in user


async def test_missing_and_bad_credentials(api: Api) -> None:
    missing = await api.get("/v1/users/me")
    assert (missing.status, missing.code) == (401, "missing_auth")
    for header in ("Bearer " + "0" * 64, "Bearer nothex", "Bearer "):
        reply = await api.get("/v1/users/me", headers={"Authorization": header})
        assert (reply.status, reply.code) == (401, "invalid_session"), header
    # No Bearer credential at all: another scheme, another spelling, an empty header.
    for header in ("Basic abc", "bearer " + "0" * 64, "Bearer" + "0" * 64, ""):
        reply = await api.get("/v1/users/me", headers={"Authorization": header})
        assert (reply.status, reply.code) == (401, "missing_auth"), header
        logout = await api.post("/v1/auth/logout", headers={"Authorization": header})
        assert (logout.status, logout.code) == (401, "missing_auth"), header


async def test_logout_ends_the_session(api: Api, owner_token: str) -> None:
    reply = await api.post("/v1/auth/logout", token=owner_token)
    assert (reply.status, reply.body) == (200, {"ok": True})
    after = await api.get("/v1/users/me", token=owner_token)
    assert (after.status, after.code) == (401, "invalid_session")
    again = await api.post("/v1/auth/logout", token=owner_token)
    assert (again.status, again.code) == (401, "invalid_session")
    none = await api.post("/v1/auth/logout")
    assert (none.status, none.code) == (401, "missing_auth")


async def test_login_from_another_machine_is_refused_and_changes_nothing(api: Api) -> None:
    reply = await api.post("/v1/auth/local/login", json={}, peer=REMOTE)
    assert (reply.status, reply.code) == (403, "local_login_loopback_required")
    assert (await api.get("/v1/public/setup-status")).body["state"] == "bootstrap_pending"


async def test_forwarded_header_from_a_loopback_proxy_counts(api: Api) -> None:
    reply = await api.post(
        "/v1/auth/local/login", json={}, headers={"X-Forwarded-For": "198.51.100.4"}
    )
    assert (reply.status, reply.code) == (403, "local_login_loopback_required")


async def test_login_after_setup_signs_in_the_only_user(
    api: Api, store: Store, owner_token: str
) -> None:
    reply = await api.post("/v1/auth/local/login", json={})
    assert reply.status == 200
    assert reply.body["session_token"] != owner_token
    assert reply.body["user"]["role"] == "owner"
    latest = (await store.audit.recent(1))[0]
    assert (latest.action, latest.actor_email, latest.client_ip) == (
        "local_login",
        "owner@local",
        "127.0.0.1",
    )


async def test_several_users_need_an_email(
    api: Api, store: Store, clock: FakeClock, owner_token: str
) -> None:
    await store.users.create(
        email="dev@example.com",
        role=Role.DEVELOPER,
        status=UserStatus.ACTIVE,
        subject="local::dev@example.com",
        now=clock.now(),
    )
    reply = await api.post("/v1/auth/local/login", json={})
    assert (reply.status, reply.code) == (400, "email_required")
    chosen = await api.post("/v1/auth/local/login", json={"email": "DEV@example.com"})
    assert chosen.status == 200 and chosen.body["user"]["role"] == "developer"
    unknown = await api.post("/v1/auth/local/login", json={"email": "nobody@example.com"})
    assert (unknown.status, unknown.code) == (403, "user_not_found")


async def test_invited_users_cannot_log_in_locally(
    api: Api, store: Store, clock: FakeClock, owner_token: str
) -> None:
    await store.users.create(
        email="new@example.com",
        role=Role.DEVELOPER,
        status=UserStatus.INVITED,
        subject=None,
        now=clock.now(),
    )
    reply = await api.post("/v1/auth/local/login", json={"email": "new@example.com"})
    assert (reply.status, reply.code) == (403, "user_not_found")


async def test_remote_mode_before_setup_is_mode_restricted(
    api: Api, store: Store, clock: FakeClock
) -> None:
    await store.instance.set_preferences(Preferences(runtime_mode=RuntimeMode.REMOTE), clock.now())
    reply = await api.post("/v1/auth/local/login", json={})
    assert (reply.status, reply.code) == (403, "mode_restricted")


async def test_remote_mode_after_setup_needs_a_recovery_capability(
    api: Api, store: Store, clock: FakeClock, owner_token: str
) -> None:
    await store.instance.set_preferences(Preferences(runtime_mode=RuntimeMode.REMOTE), clock.now())
    reply = await api.post("/v1/auth/local/login", json={}, peer=REMOTE)
    assert (reply.status, reply.code) == (403, "local_recovery_capability_required")
    bad = await api.post("/v1/auth/local/login", json={"recovery_capability": "oore_recovery_x"})
    assert (bad.status, bad.code) == (403, "local_recovery_capability_invalid")
