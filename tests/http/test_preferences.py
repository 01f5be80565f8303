"""Instance preferences (contract §10.2): who may change what, the remote-mode preflight,
and sessions ending when the sign-in policy changes."""

from __future__ import annotations

from typing import Any

import pytest

from oore.domain.setup import Preferences, RuntimeMode
from oore.domain.users import Role
from oore.errors import ApiError
from oore.store import Store
from tests.http.conftest import Api, FakeClock, Reply, UserFactory
from tests.http.setup_kit import actions, store_oidc_config

PATH = "/v1/settings/preferences"
NETWORK = "/v1/settings/external-access/network"
PUBLIC = {"public_url": "https://ci.example.com/", "allowed_origins": ["https://ci.example.com"]}


async def put(api: Api, token: str, **body: Any) -> Reply:
    return await api.call("PUT", PATH, json={"key_storage_mode": "file", **body}, token=token)


async def test_defaults_before_anything_is_saved(api: Api, owner_token: str) -> None:
    reply = await api.get(PATH, token=owner_token)
    assert reply.status == 200
    assert reply.body == {
        "preferences": {
            "key_storage_mode": "file",
            "runtime_mode": "local",
            "remote_auth_mode": "oidc",
            "direct_macos_runner_paused": False,
            "restart_required": False,
        }
    }


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.QA_VIEWER])
async def test_only_owner_and_admin_may_read_or_write(
    api: Api, make_user: UserFactory, role: Role
) -> None:
    user = await make_user(role)
    for reply in (await api.get(PATH, token=user.token), await put(api, user.token)):
        assert (reply.status, reply.code) == (403, "permission_denied")
    assert (await api.get(PATH)).code == "missing_auth"


async def test_keychain_is_refused_and_other_values_do_not_decode(
    api: Api, owner_token: str
) -> None:
    keychain = await put(api, owner_token, key_storage_mode="keychain")
    assert (keychain.status, keychain.code) == (400, "unsupported_key_storage_mode")
    odd = await put(api, owner_token, key_storage_mode="vault")
    assert (odd.status, odd.code) == (400, "invalid_request")
    missing = await api.call("PUT", PATH, json={}, token=owner_token)
    assert missing.code == "invalid_request"


async def test_an_admin_may_pause_runners_but_not_change_the_sign_in_policy(
    api: Api, make_user: UserFactory, clock: FakeClock
) -> None:
    admin = await make_user(Role.ADMIN)
    paused = await put(api, admin.token, direct_macos_runner_paused=True)
    assert paused.status == 200
    assert paused.body["preferences"]["direct_macos_runner_paused"] is True
    assert paused.body["preferences"]["updated_at"] == clock.now()
    for change in ({"runtime_mode": "remote"}, {"remote_auth_mode": "trusted_proxy"}):
        refused = await put(api, admin.token, **change)
        assert (refused.status, refused.code) == (403, "external_access_owner_required")
    same = await put(api, admin.token, runtime_mode="local", remote_auth_mode="oidc")
    assert same.status == 200
    kept = (await api.get(PATH, token=admin.token)).body["preferences"]
    assert kept["direct_macos_runner_paused"] is True and kept["runtime_mode"] == "local"


async def test_a_change_of_the_runner_pause_is_audited(
    api: Api, make_user: UserFactory, store: Store
) -> None:
    admin = await make_user(Role.ADMIN)
    assert (await put(api, admin.token, direct_macos_runner_paused=True)).status == 200
    assert (await put(api, admin.token, direct_macos_runner_paused=True)).status == 200  # kept
    assert (await put(api, admin.token)).status == 200  # omitted: kept
    assert (await put(api, admin.token, direct_macos_runner_paused=False)).status == 200
    changes = [
        entry
        for entry in reversed(await store.audit.recent(200))
        if entry.action == "direct_macos_runner_pause_updated"
    ]
    assert [(e.actor_email, e.resource_type, e.details) for e in changes] == [
        (admin.user.email, "instance_settings", {"previous": False, "paused": True}),
        (admin.user.email, "instance_settings", {"previous": True, "paused": False}),
    ]


async def test_remote_mode_fails_closed_on_the_first_failing_check(
    api: Api, owner_token: str, store: Store, clock: FakeClock
) -> None:
    no_oidc = await put(api, owner_token, runtime_mode="remote")
    assert (no_oidc.status, no_oidc.code) == (400, "external_access_preflight_failed")
    await store_oidc_config(store, clock.now())
    no_url = await put(api, owner_token, runtime_mode="remote")
    assert (no_url.status, no_url.code) == (400, "external_access_public_url_missing")
    proxy = await put(api, owner_token, runtime_mode="remote", remote_auth_mode="trusted_proxy")
    assert proxy.code == "external_access_trusted_proxy_not_configured"
    assert (await api.get(PATH, token=owner_token)).body["preferences"]["runtime_mode"] == "local"
    assert "external_access_enable_blocked" in await actions(store)


async def test_switching_to_remote_ends_every_session_including_the_callers(
    api: Api, owner_token: str, make_user: UserFactory, store: Store, clock: FakeClock
) -> None:
    admin = await make_user(Role.ADMIN)
    await store_oidc_config(store, clock.now())
    assert (await api.call("PUT", NETWORK, json=PUBLIC, token=owner_token)).status == 200
    reply = await put(api, owner_token, runtime_mode="remote")
    assert reply.status == 200, reply.body
    assert reply.body["preferences"]["runtime_mode"] == "remote"
    for token in (owner_token, admin.token):
        gone = await api.get("/v1/users/me", token=token)
        assert (gone.status, gone.code) == (401, "invalid_session")
    status = (await api.get("/v1/public/setup-status")).body
    assert status["runtime_mode"] == "remote"
    seen = await actions(store)
    assert seen[-2:] == ["preferences_updated", "sessions_revoked"]


async def test_a_change_that_keeps_the_policy_keeps_the_sessions(
    api: Api, owner_token: str
) -> None:
    assert (await put(api, owner_token, direct_macos_runner_paused=True)).status == 200
    assert (await api.get("/v1/users/me", token=owner_token)).status == 200


async def test_a_concurrent_change_is_409_preferences_changed(
    store: Store, clock: FakeClock, owner_token: str
) -> None:
    seen = await store.instance.preferences()
    await store.instance.set_preferences(Preferences(direct_macos_runner_paused=True), clock.now())
    with pytest.raises(ApiError) as caught:
        await store.instance.update_preferences(
            seen, Preferences(RuntimeMode.LOCAL), revoke_sessions=True, now=clock.now()
        )
    assert (caught.value.status, caught.value.code) == (409, "preferences_changed")
    assert (await store.instance.preferences()).direct_macos_runner_paused is True
