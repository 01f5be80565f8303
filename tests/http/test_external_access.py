"""External access (contract §10.3, §0.4): network settings that apply at once, the
trusted-proxy settings, and the preflight."""

from __future__ import annotations

from typing import Any

import pytest

from oore.domain.network import LOCAL_ORIGINS
from oore.domain.setup import Preferences, RemoteAuthMode, RuntimeMode
from oore.domain.users import Role
from oore.runtime import Runtime
from oore.services.network import Network, NetworkDefaults
from oore.store import Store
from tests.http.conftest import LOOPBACK, REMOTE, Api, FakeClock, Reply, UserFactory
from tests.http.setup_kit import SECRET, actions, store_oidc_config

NETWORK = "/v1/settings/external-access/network"
PROXY = "/v1/settings/external-access/trusted-proxy"
PREFLIGHT = "/v1/settings/external-access/preflight"
ORIGIN = "https://new.example.com"


async def put(
    api: Api, path: str, token: str, body: Any, peer: tuple[str, int] = LOOPBACK, **kw: Any
) -> Reply:
    return await api.call("PUT", path, json=body, token=token, peer=peer, **kw)


async def test_network_comes_from_the_environment_until_saved(api: Api, owner_token: str) -> None:
    reply = await api.get(NETWORK, token=owner_token)
    assert reply.status == 200
    assert reply.body == {
        "settings": {
            "allowed_origins": [*LOCAL_ORIGINS, "https://ci.example.com"],
            "source": "environment",
        }
    }


@pytest.mark.parametrize("path", [NETWORK, PROXY, PREFLIGHT])
async def test_reads_need_owner_or_admin(api: Api, make_user: UserFactory, path: str) -> None:
    developer = await make_user(Role.DEVELOPER)
    assert (await api.get(path, token=developer.token)).code == "permission_denied"
    admin = await make_user(Role.ADMIN)
    assert (await api.get(path, token=admin.token)).status == 200


@pytest.mark.parametrize(("path", "body"), [(NETWORK, {"allowed_origins": []}), (PROXY, {})])
async def test_writes_are_the_owners_and_from_this_machine_in_local_mode(
    api: Api, owner_token: str, make_user: UserFactory, path: str, body: Any
) -> None:
    developer = await make_user(Role.DEVELOPER)
    assert (await put(api, path, developer.token, body)).code == "permission_denied"
    admin = await make_user(Role.ADMIN)
    refused = await put(api, path, admin.token, body)
    assert (refused.status, refused.code) == (403, "external_access_owner_required")
    remote = await put(api, path, owner_token, body, peer=REMOTE)
    assert (remote.status, remote.code) == (403, "external_access_loopback_required")
    forwarded = await put(api, path, owner_token, body, headers={"X-Forwarded-For": "198.51.100.4"})
    assert forwarded.code == "external_access_loopback_required"
    assert (await put(api, path, owner_token, body)).status == 200


async def test_remote_mode_allows_writes_from_anywhere(
    api: Api, owner_token: str, store: Store, clock: FakeClock
) -> None:
    await store.instance.set_preferences(Preferences(RuntimeMode.REMOTE), clock.now())
    reply = await put(api, NETWORK, owner_token, {"allowed_origins": []}, peer=REMOTE)
    assert reply.status == 200


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"allowed_origins": ["not an origin"]}, "invalid_input"),
        ({"allowed_origins": ["ftp://files.example.com"]}, "invalid_input"),
        ({"allowed_origins": ["https://u:p@x.example.com"]}, "invalid_input"),
        ({"public_url": "https://u:p@ci.example.com", "allowed_origins": []}, "invalid_input"),
        (
            {"public_url": "https://localhost:8443", "allowed_origins": []},
            "external_access_public_url_missing",
        ),
        (
            {"public_url": "http://ci.example.com", "allowed_origins": ["http://ci.example.com"]},
            "external_access_https_required",
        ),
        ({"public_url": ORIGIN, "allowed_origins": []}, "external_access_origin_not_allowed"),
        (
            {"artifact_delivery_url": "http://dl.example.com", "allowed_origins": []},
            "artifact_delivery_https_required",
        ),
        (
            {"artifact_delivery_url": "https://127.0.0.1", "allowed_origins": []},
            "artifact_delivery_public_url_required",
        ),
        (
            {"artifact_delivery_url": "https://x:y@dl.example.com", "allowed_origins": []},
            "artifact_delivery_url_invalid",
        ),
    ],
)
async def test_bad_network_settings_are_400(
    api: Api, owner_token: str, body: Any, code: str
) -> None:
    reply = await put(api, NETWORK, owner_token, body)
    assert (reply.status, reply.code) == (400, code)
    assert (await api.get(NETWORK, token=owner_token)).body["settings"]["source"] == "environment"


async def test_saved_settings_are_normalised_and_apply_at_once(
    api: Api, owner_token: str, runtime: Runtime, store: Store, clock: FakeClock
) -> None:
    before = await api.get("/healthz", headers={"Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in before.headers
    reply = await put(
        api,
        NETWORK,
        owner_token,
        {
            "public_url": f"{ORIGIN}/ci/",
            "artifact_delivery_url": "https://dl.example.com/",
            "allowed_origins": [f"{ORIGIN}:443/some/path", ORIGIN.upper(), "http://localhost:3000"],
        },
    )
    assert reply.status == 200, reply.body
    assert reply.body == {
        "settings": {
            "public_url": f"{ORIGIN}/ci",
            "artifact_delivery_url": "https://dl.example.com",
            "allowed_origins": [ORIGIN, *LOCAL_ORIGINS],
            "source": "database",
            "updated_at": clock.now(),
        }
    }
    assert (await api.get(NETWORK, token=owner_token)).body == reply.body
    allowed = await api.get("/healthz", headers={"Origin": ORIGIN})
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    dropped = await api.get("/healthz", headers={"Origin": "https://ci.example.com"})
    assert "Access-Control-Allow-Origin" not in dropped.headers
    storage = runtime.artifacts.storage
    assert storage.public_base() == f"{ORIGIN}/ci"
    assert storage.delivery_base() == "https://dl.example.com"
    assert "network_settings_updated" in await actions(store)


async def test_a_saved_row_is_loaded_at_start(api: Api, owner_token: str, store: Store) -> None:
    body = {"public_url": ORIGIN, "allowed_origins": [ORIGIN]}
    assert (await put(api, NETWORK, owner_token, body)).status == 200
    restarted = Network(store, NetworkDefaults(public_url="https://env.example.com"))
    assert restarted.public_url == "https://env.example.com"
    await restarted.reload()
    assert (restarted.public_url, restarted.source) == (ORIGIN, "database")
    assert restarted.allowed_origins == (ORIGIN, *LOCAL_ORIGINS)


# -- trusted proxy settings ---------------------------------------------------------------


async def test_trusted_proxy_settings_round_trip_without_showing_secrets(
    api: Api, owner_token: str, store: Store, clock: FakeClock
) -> None:
    empty = await api.get(PROXY, token=owner_token)
    assert empty.body == {
        "settings": {
            "user_email_header": "x-oore-user-email",
            "trusted_proxy_cidrs": [],
            "has_shared_secret": False,
            "has_warpgate_ticket": False,
        }
    }
    saved = await put(
        api,
        PROXY,
        owner_token,
        {
            "user_email_header": "X-Auth-Request-Email",
            "trusted_proxy_cidrs": ["10.1.2.3/16", " ", "fd00::/8"],
            "shared_secret": SECRET,
        },
    )
    assert saved.status == 200, saved.body
    assert saved.body["settings"] == {
        "user_email_header": "x-auth-request-email",
        "trusted_proxy_cidrs": ["10.1.0.0/16", "fd00::/8"],
        "has_shared_secret": True,
        "has_warpgate_ticket": False,
        "updated_at": clock.now(),
    }
    assert SECRET not in str(saved.body)
    kept = await put(api, PROXY, owner_token, {})
    assert kept.body["settings"]["has_shared_secret"] is True
    assert kept.body["settings"]["user_email_header"] == "x-oore-user-email"
    assert kept.body["settings"]["trusted_proxy_cidrs"] == []
    cleared = await put(api, PROXY, owner_token, {"shared_secret": "  "})
    assert cleared.body["settings"]["has_shared_secret"] is False
    assert "trusted_proxy_settings_updated" in await actions(store)


@pytest.mark.parametrize(
    "body",
    [
        {"trusted_proxy_cidrs": ["10.0.0.1"]},
        {"trusted_proxy_cidrs": ["nonsense/8"]},
        {"shared_secret": "s" * 1025},
        {"warpgate_ticket": "w" * 1025},
    ],
)
async def test_bad_trusted_proxy_settings_are_400_invalid_input(
    api: Api, owner_token: str, body: Any
) -> None:
    reply = await put(api, PROXY, owner_token, body)
    assert (reply.status, reply.code) == (400, "invalid_input")


TICKET = "warpgate-ticket-0001/+?"


async def test_a_warpgate_ticket_is_kept_encrypted_and_never_shown(
    api: Api, owner_token: str, store: Store, clock: FakeClock, runtime: Runtime
) -> None:
    saved = await put(api, PROXY, owner_token, {"shared_secret": SECRET, "warpgate_ticket": TICKET})
    assert saved.status == 200, saved.body
    assert saved.body["settings"] == {
        "user_email_header": "x-oore-user-email",
        "trusted_proxy_cidrs": [],
        "has_shared_secret": True,
        "has_warpgate_ticket": True,
        "warpgate_ticket_source": "database",
        "updated_at": clock.now(),
    }
    assert TICKET not in str(saved.body)
    stored = await store.settings.trusted_proxy()
    assert stored is not None and stored.warpgate_ticket_enc is not None
    assert TICKET not in stored.warpgate_ticket_enc
    assert runtime.identity.secrets is not None
    assert runtime.identity.secrets.decrypt(stored.warpgate_ticket_enc) == TICKET
    shown = await api.get(PROXY, token=owner_token)
    assert shown.body == saved.body
    entry = (await store.audit.recent(1))[0]
    assert entry.action == "trusted_proxy_settings_updated"
    assert entry.details is not None and entry.details["has_warpgate_ticket"] is True
    assert TICKET not in str(entry.details)

    kept = await put(api, PROXY, owner_token, {"shared_secret": "  "})  # the ticket stays
    assert kept.body["settings"]["has_warpgate_ticket"] is True
    assert kept.body["settings"]["has_shared_secret"] is False
    too_long = await put(api, PROXY, owner_token, {"warpgate_ticket": "w" * 1025})
    assert (too_long.status, too_long.code) == (400, "invalid_input")
    assert (await api.get(PROXY, token=owner_token)).body["settings"]["has_warpgate_ticket"]
    cleared = await put(api, PROXY, owner_token, {"warpgate_ticket": ""})
    assert cleared.status == 200
    assert cleared.body["settings"]["has_warpgate_ticket"] is False
    assert "warpgate_ticket_source" not in cleared.body["settings"]
    stored = await store.settings.trusted_proxy()
    assert stored is not None and stored.warpgate_ticket_enc is None


@pytest.fixture
def network_defaults(request: pytest.FixtureRequest) -> NetworkDefaults:
    """The daemon's environment; tests may pass OORE_WARPGATE_TICKET indirectly."""
    return NetworkDefaults(
        (*LOCAL_ORIGINS, "https://ci.example.com"), warpgate_ticket=getattr(request, "param", None)
    )


@pytest.mark.parametrize("network_defaults", ["environment-ticket"], indirect=True)
async def test_the_environment_ticket_serves_a_warpgate_proxy_until_one_is_saved(
    api: Api, owner_token: str
) -> None:
    before = await api.get(PROXY, token=owner_token)  # nothing configured yet
    assert before.body["settings"]["has_warpgate_ticket"] is False
    generic = await put(api, PROXY, owner_token, {"shared_secret": SECRET})
    assert generic.body["settings"]["has_warpgate_ticket"] is False
    warpgate = {"user_email_header": "X-Warpgate-Username"}
    behind = await put(api, PROXY, owner_token, warpgate)
    assert behind.body["settings"]["has_warpgate_ticket"] is True
    assert behind.body["settings"]["warpgate_ticket_source"] == "environment"
    assert "environment-ticket" not in str(behind.body)
    saved = await put(api, PROXY, owner_token, {**warpgate, "warpgate_ticket": TICKET})
    assert saved.body["settings"]["warpgate_ticket_source"] == "database"
    cleared = await put(api, PROXY, owner_token, {**warpgate, "warpgate_ticket": " "})
    assert cleared.body["settings"]["warpgate_ticket_source"] == "environment"


async def test_the_secret_cannot_be_cleared_while_proxy_sign_in_is_active(
    api: Api, owner_token: str, store: Store, clock: FakeClock
) -> None:
    assert (await put(api, PROXY, owner_token, {"shared_secret": SECRET})).status == 200
    await store.instance.set_preferences(
        Preferences(RuntimeMode.REMOTE, RemoteAuthMode.TRUSTED_PROXY), clock.now()
    )
    reply = await put(api, PROXY, owner_token, {"shared_secret": ""}, peer=REMOTE)
    assert (reply.status, reply.code) == (400, "trusted_proxy_shared_secret_required")
    assert (await put(api, PROXY, owner_token, {}, peer=REMOTE)).status == 200


# -- preflight ----------------------------------------------------------------------------


def summary(reply: Reply) -> list[tuple[str, bool, str | None]]:
    return [(c["id"], c["ok"], c.get("failure_code")) for c in reply.body["checks"]]


async def test_preflight_reports_each_check_in_order(
    api: Api, owner_token: str, store: Store, clock: FakeClock
) -> None:
    first = await api.get(PREFLIGHT, token=owner_token)
    assert first.status == 200 and first.body["ready"] is False
    assert summary(first) == [
        ("setup_ready", True, None),
        ("oidc_configured", False, None),
        ("public_url_https", False, "external_access_public_url_missing"),
        ("public_origin_allowed", False, None),
        ("redirect_policy_consistent", False, None),
    ]
    assert all(c["label"] and c["message"] for c in first.body["checks"])
    await store_oidc_config(store, clock.now())
    body = {"public_url": "https://ci.example.com", "allowed_origins": ["https://ci.example.com"]}
    assert (await put(api, NETWORK, owner_token, body)).status == 200
    ready = await api.get(PREFLIGHT, token=owner_token)
    assert ready.body["ready"] is True
    assert [check_id for check_id, ok, _ in summary(ready) if not ok] == []


async def test_preflight_for_the_trusted_proxy(
    api: Api, owner_token: str, store: Store, clock: FakeClock
) -> None:
    await store.instance.set_preferences(
        Preferences(remote_auth_mode=RemoteAuthMode.TRUSTED_PROXY), clock.now()
    )
    body = {"public_url": "https://ci.example.com", "allowed_origins": []}
    reply = await api.get(PREFLIGHT, token=owner_token)
    assert [c[0] for c in summary(reply)] == [
        "setup_ready",
        "trusted_proxy_configured",
        "public_url_https",
        "public_origin_allowed",
    ]
    assert summary(reply)[1] == (
        "trusted_proxy_configured",
        False,
        "external_access_trusted_proxy_not_configured",
    )
    assert (await put(api, NETWORK, owner_token, body)).code == "external_access_origin_not_allowed"
    assert (await put(api, PROXY, owner_token, {"shared_secret": SECRET})).status == 200
    assert summary(await api.get(PREFLIGHT, token=owner_token))[1][1] is True
