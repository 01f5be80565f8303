"""iOS signing of a pipeline (contract §8.3): configuration, App Store Connect, devices.

App Store Connect is the loopback fake of tests/apple_kit.py; the daemon reaches it
through its base URL only, and the fake checks every token it is sent.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from oore.domain.users import Role
from oore.runtime import Runtime
from oore.services.apple import AppleConfig
from tests.apple_kit import (
    ISSUER_ID,
    KEY_ID,
    TEAM_ID,
    FakeAppStoreConnect,
    fake_apple,
    mobileprovision,
    new_p8,
)
from tests.http.builds_kit import Setup, repo, setup
from tests.http.conftest import Api, FakeClock, UserFactory

__all__ = ["fake_apple", "repo", "setup"]

NOW = 1_800_000_000
P12 = b"\x30\x82\x0a\x00 a PKCS#12 bag " + bytes(range(256))
P12_PASSWORD = "p12-password-example-0001"
PROFILE = mobileprovision("1b4e28ba-2fa1-11d2-883f-0016d3cca427", "App AdHoc", NOW + 86400 * 90)


API_KEY = {
    "key_id": KEY_ID,
    "issuer_id": ISSUER_ID,
    "private_key_base64": base64.b64encode(new_p8().encode()).decode(),
}


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def manual_body(**extra: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "mode": "manual",
        "team_id": TEAM_ID,
        "bundle_ids": ["com.example.app"],
        "p12": {"p12_filename": "dist.p12", "p12_base64": b64(P12), "p12_password": P12_PASSWORD},
        "provisioning_profiles": [
            {
                "bundle_id": "com.example.app",
                "profile_filename": "app.mobileprovision",
                "profile_base64": b64(PROFILE),
            }
        ],
        **extra,
    }


@pytest.fixture
def apple_config(fake_apple: FakeAppStoreConnect) -> AppleConfig:
    return fake_apple.config


def path(setup: Setup, tail: str = "") -> str:
    return f"/v1/pipelines/{setup.pipeline_id}/ios-signing{tail}"


async def put(setup: Setup, body: Any, token: str | None = None) -> Any:
    return await setup.api.call("PUT", path(setup), json=body, token=token or setup.token)


async def audit(api: Api, token: str, action: str) -> list[dict[str, Any]]:
    reply = await api.get(f"/v1/audit-logs?action={action}", token=token)
    assert reply.status == 200, reply.body
    return list(reply.body["entries"])


async def test_a_pipeline_without_ios_signing_shows_the_defaults(setup: Setup) -> None:
    reply = await setup.api.get(path(setup), token=setup.token)
    assert reply.status == 200, reply.body
    assert reply.body == {
        "pipeline_id": setup.pipeline_id,
        "enabled": False,
        "mode": "manual",
        "export_method": "ad_hoc",
        "bundle_ids": [],
        "has_p12": False,
        "has_p12_password": False,
        "provisioning_profiles": [],
        "has_api_key": False,
    }


async def test_manual_signing_is_stored_shown_without_secrets_and_kept_by_omission(
    setup: Setup, runtime: Runtime, clock: FakeClock
) -> None:
    saved = await put(setup, manual_body())
    assert saved.status == 200, saved.body
    signing = saved.body
    assert signing["enabled"] is True
    assert signing["team_id"] == TEAM_ID
    assert signing["p12_filename"] == "dist.p12"
    assert signing["has_p12"] and signing["has_p12_password"]
    assert len(signing["p12_checksum"]) == 64
    assert signing["provisioning_profiles"] == [
        {
            "bundle_id": "com.example.app",
            "profile_filename": "app.mobileprovision",
            "checksum": signing["provisioning_profiles"][0]["checksum"],
            "profile_uuid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            "profile_name": "App AdHoc",
            "expires_at": NOW + 86400 * 90,
        }
    ]
    assert signing["updated_at"] == clock.now()
    text = json.dumps(signing)
    assert P12_PASSWORD not in text and b64(P12) not in text and b64(PROFILE) not in text

    # Omitted and blank values keep what is stored.
    clock.advance(10)
    changed = await put(
        setup, {"export_method": "app_store", "p12": {"p12_password": ""}, "team_id": " "}
    )
    assert changed.status == 200, changed.body
    assert changed.body == {**signing, "export_method": "app_store", "updated_at": clock.now()}
    assert (await setup.api.get(path(setup), token=setup.token)).body == changed.body

    material = await runtime.ios_signing.runner_material(setup.pipeline_id)
    assert material == {
        "bundle": {
            "enabled": True,
            "mode": "manual",
            "team_id": TEAM_ID,
            "export_method": "app_store",
            "p12_filename": "dist.p12",
            "p12_base64": b64(P12),
            "p12_password": P12_PASSWORD,
            "provisioning_profiles": [
                {
                    "bundle_id": "com.example.app",
                    "profile_filename": "app.mobileprovision",
                    "profile_base64": b64(PROFILE),
                    "profile_uuid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                    "profile_name": "App AdHoc",
                }
            ],
        }
    }
    disabled = await put(setup, {"enabled": False})
    assert disabled.status == 200 and disabled.body["has_p12"], disabled.body
    assert await runtime.ios_signing.runner_material(setup.pipeline_id) is None

    entries = await audit(setup.api, setup.token, "pipeline_ios_signing_updated")
    assert len(entries) == 3
    first = entries[-1]
    assert first["resource_id"] == setup.pipeline_id
    assert set(json.loads(first["details"])["changed"]) >= {"p12", "p12_password", "team_id"}
    logged = json.dumps(entries)
    assert P12_PASSWORD not in logged and b64(P12)[:40] not in logged


async def test_new_bundle_ids_replace_profiles_and_drop_those_no_longer_listed(
    setup: Setup,
) -> None:
    assert (await put(setup, manual_body())).status == 200
    other = mobileprovision("2c5e28ba-2fa1-11d2-883f-0016d3cca427", "Widget", NOW + 3600)
    reply = await put(
        setup,
        {
            "bundle_ids": ["com.example.widget"],
            "provisioning_profiles": [
                {
                    "bundle_id": "com.example.widget",
                    "profile_filename": "widget.mobileprovision",
                    "profile_base64": b64(other).rstrip("="),  # unpadded is fine
                }
            ],
        },
    )
    assert reply.status == 200, reply.body
    assert reply.body["bundle_ids"] == ["com.example.widget"]
    assert [p["profile_name"] for p in reply.body["provisioning_profiles"]] == ["Widget"]
    # A profile that does not parse is kept, without the facts it would have given.
    unreadable = await put(
        setup,
        {
            "provisioning_profiles": [
                {
                    "bundle_id": "com.example.widget",
                    "profile_filename": "widget.mobileprovision",
                    "profile_base64": b64(b"not a profile at all"),
                }
            ]
        },
    )
    assert unreadable.status == 200, unreadable.body
    (kept,) = unreadable.body["provisioning_profiles"]
    assert "profile_uuid" not in kept and "expires_at" not in kept


BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    ({"mode": "automatic"}, "invalid_input"),
    ({"export_method": "ad-hoc"}, "invalid_input"),
    ({"team_id": "T" * 33}, "invalid_input"),
    ({"bundle_ids": [f"com.example.a{n}" for n in range(33)]}, "invalid_input"),
    ({"bundle_ids": ["com.example.app", "com.example.app"]}, "invalid_input"),
    ({"bundle_ids": ["not a bundle id"]}, "invalid_input"),
    ({"p12": {"p12_base64": "***not base64***"}}, "invalid_input"),
    ({"p12": {"p12_base64": b64(b"\0" * (2 * 1024 * 1024 + 1))}}, "invalid_input"),
    ({"p12": {"p12_filename": "../dist.p12"}}, "invalid_filename"),
    ({"p12": {"p12_filename": "certs/dist.p12"}}, "invalid_filename"),
    ({"api_key": {"private_key_base64": b64(b"-----BEGIN PRIVATE KEY-----\nxx")}}, "invalid_input"),
    (
        {
            "bundle_ids": ["com.example.app"],
            "provisioning_profiles": [
                {
                    "bundle_id": "com.example.app",
                    "profile_filename": "..",
                    "profile_base64": "QQ",
                }
            ],
        },
        "invalid_filename",
    ),
    (
        {
            "provisioning_profiles": [
                {"bundle_id": "com.other", "profile_filename": "a", "profile_base64": "QQ"}
            ]
        },
        "invalid_input",
    ),
    ({"enabled": True}, "incomplete_signing_profile"),
    ({"enabled": True, "mode": "api", "team_id": TEAM_ID}, "incomplete_signing_profile"),
    ({"enabled": "yes"}, "invalid_request"),
    ({"p12": {"p12_base64": 5}}, "invalid_request"),
    ({"unknown": 1}, "invalid_request"),
]


async def test_bad_values_are_refused_and_nothing_is_stored(setup: Setup) -> None:
    for body, code in BAD_VALUES:
        reply = await put(setup, body)
        assert (reply.status, reply.code) == (400, code), (body, reply.body)
    after = await setup.api.get(path(setup), token=setup.token)
    assert "updated_at" not in after.body


async def test_enabling_needs_what_the_mode_needs(
    setup: Setup, fake_apple: FakeAppStoreConnect
) -> None:
    manual = manual_body()
    missing_profile = await put(setup, {**manual, "provisioning_profiles": []})
    assert missing_profile.code == "incomplete_signing_profile", missing_profile.body
    assert "com.example.app" in missing_profile.body["error"]
    hybrid = await put(setup, {**manual, "mode": "hybrid"})
    assert hybrid.code == "incomplete_signing_profile", hybrid.body
    assert "api_key" in hybrid.body["error"]
    complete = await put(setup, {**manual, "mode": "hybrid", "api_key": fake_apple.api_key()})
    assert complete.status == 200, complete.body
    assert complete.body["has_api_key"] is True
    assert (complete.body["api_key_id"], complete.body["api_issuer_id"]) == (KEY_ID, ISSUER_ID)
    api_only = await put(setup, {"mode": "api"})
    assert api_only.status == 200 and api_only.body["mode"] == "api", api_only.body


async def test_bodies_up_to_ten_mib_are_taken_and_larger_ones_are_413(setup: Setup) -> None:
    # 1.5 MiB of P12 and of profile: a body over the default 2 MiB, under 10 MiB.
    big = manual_body()
    big["p12"]["p12_base64"] = b64(b"\1" * (3 * 512 * 1024))
    big["provisioning_profiles"][0]["profile_base64"] = b64(PROFILE + b"\0" * (3 * 512 * 1024))
    assert len(json.dumps(big)) > 2 * 1024 * 1024
    taken = await put(setup, big)
    assert taken.status == 200, taken.body
    huge = {"p12": {"p12_base64": "A" * (10 * 1024 * 1024)}}
    refused = await put(setup, huge)
    assert (refused.status, refused.code) == (413, "payload_too_large")
    # Other routes keep the default limit.
    patched = await setup.api.call(
        "PATCH",
        f"/v1/pipelines/{setup.pipeline_id}",
        json={"name": "x" * (3 * 1024 * 1024)},
        token=setup.token,
    )
    assert (patched.status, patched.code) == (413, "payload_too_large")


ROUTES = [
    ("GET", "", None),
    ("PUT", "", {"export_method": "ad_hoc"}),
    ("POST", "/sync", None),
    ("GET", "/devices", None),
    ("POST", "/devices/register", {"name": "iPhone", "udid": "00008030-000A"}),
]


async def test_viewers_get_403_outsiders_and_unknown_pipelines_404_the_key_is_needed(
    setup: Setup, make_user: UserFactory
) -> None:
    viewer = await make_user(Role.DEVELOPER)
    outsider = await make_user(Role.DEVELOPER)
    added = await setup.api.post(
        f"/v1/projects/{setup.project_id}/members",
        json={"user_id": viewer.user.id, "role": "viewer"},
        token=setup.token,
    )
    assert added.status == 201, added.body
    unknown = Setup(
        setup.api, setup.token, setup.project_id, "00000000-0000-4000-8000-000000000000", ""
    )
    for method, tail, body in ROUTES:
        as_viewer = await setup.api.call(method, path(setup, tail), json=body, token=viewer.token)
        assert (as_viewer.status, as_viewer.code) == (403, "permission_denied"), (tail, as_viewer)
        hidden = await setup.api.call(method, path(setup, tail), json=body, token=outsider.token)
        assert (hidden.status, hidden.code) == (404, "not_found"), (tail, hidden)
        gone = await setup.api.call(method, path(unknown, tail), json=body, token=setup.token)
        assert (gone.status, gone.code) == (404, "not_found"), (tail, gone)
    # Without an API key App Store Connect is not asked.
    for method, tail, body in ROUTES[2:]:
        reply = await setup.api.call(method, path(setup, tail), json=body, token=setup.token)
        assert (reply.status, reply.code) == (400, "incomplete_signing_profile"), reply.body


async def test_sync_stores_the_newest_valid_profile_of_each_bundle_id(
    setup: Setup, fake_apple: FakeAppStoreConnect, runtime: Runtime, clock: FakeClock
) -> None:
    now = clock.now()
    fake_apple.add_bundle("com.example.app", "B1")
    fake_apple.add_bundle("com.example.app.widget", "B2")  # matched by the filter, not wanted
    fake_apple.add_bundle("com.example.watch", "B3")  # only an expired profile
    newest = mobileprovision("uuid-newest", "App AdHoc 2027", now + 86400 * 300)
    for profile_id, content, kind, state, expires in (
        (
            "P-old",
            mobileprovision("uuid-old", "old", now + 86400),
            "IOS_APP_ADHOC",
            "ACTIVE",
            now + 86400,
        ),
        ("P-new", newest, "IOS_APP_ADHOC", "ACTIVE", now + 86400 * 300),
        ("P-store", b"store", "IOS_APP_STORE", "ACTIVE", now + 86400 * 400),
        ("P-invalid", b"invalid", "IOS_APP_ADHOC", "INVALID", now + 86400 * 500),
    ):
        fake_apple.add_profile(
            "B1", profile_id, content=content, profile_type=kind, state=state, expires=expires
        )
    fake_apple.add_profile("B2", "P-w", content=b"widget", expires=now + 86400)
    fake_apple.add_profile("B3", "P-x", content=b"expired", expires=now - 1)
    configured = await put(
        setup,
        {
            "mode": "api",
            "team_id": TEAM_ID,
            "bundle_ids": ["com.example.app", "com.example.watch", "com.example.none"],
            "api_key": fake_apple.api_key(),
            "enabled": True,
        },
    )
    assert configured.status == 200, configured.body
    assert fake_apple.requests == []  # saving the key calls nobody

    clock.advance(60)
    synced = await setup.api.post(path(setup, "/sync"), token=setup.token)
    assert synced.status == 200, synced.body
    assert synced.body["synced"] == ["com.example.app"]
    assert synced.body["missing"] == ["com.example.watch", "com.example.none"]
    assert synced.body["last_synced_at"] == clock.now()
    (profile,) = synced.body["provisioning_profiles"]
    assert profile["profile_uuid"] == "uuid-newest"
    assert profile["profile_name"] == "App AdHoc 2027"
    assert profile["profile_filename"] == "com.example.app.mobileprovision"
    assert profile["expires_at"] == now + 86400 * 300

    header, claims = fake_apple.claims(fake_apple.requests[0])
    assert header["alg"] == "ES256" and header["kid"] == KEY_ID
    assert claims["iss"] == ISSUER_ID and claims["aud"] == "appstoreconnect-v1"
    assert claims["iat"] == clock.now() and 0 < claims["exp"] - claims["iat"] <= 20 * 60
    assert fake_apple.requests[0].query["filter[identifier]"] == "com.example.app"

    material = await runtime.ios_signing.runner_material(setup.pipeline_id)
    assert material is not None
    (served,) = material["bundle"]["provisioning_profiles"]
    assert base64.b64decode(served["profile_base64"]) == newest
    assert material["bundle"]["p12_base64"] is None
    entries = await audit(setup.api, setup.token, "pipeline_ios_signing_updated")
    assert json.loads(entries[0]["details"])["synced"] == ["com.example.app"]


async def test_devices_are_listed_across_pages_and_registered_once(
    setup: Setup, fake_apple: FakeAppStoreConnect
) -> None:
    for n in range(3):
        fake_apple.add_device(f"D{n}", f"Phone {n}", f"0000-{n}", model="iPhone 15" if n else None)
    assert (await put(setup, {"mode": "api", "api_key": fake_apple.api_key()})).status == 200
    listed = await setup.api.get(path(setup, "/devices"), token=setup.token)
    assert listed.status == 200, listed.body
    assert listed.body["devices"][0] == {
        "id": "D0",
        "name": "Phone 0",
        "udid": "0000-0",
        "platform": "IOS",
        "status": "ENABLED",
    }
    assert [d["model"] for d in listed.body["devices"][1:]] == ["iPhone 15", "iPhone 15"]

    register = path(setup, "/devices/register")
    created = await setup.api.post(
        register, json={"name": " QA iPad ", "udid": "00008030-000A"}, token=setup.token
    )
    assert created.status == 201, created.body
    assert created.body["device"] == {
        "id": "DEV0004",
        "name": "QA iPad",
        "udid": "00008030-000A",
        "platform": "IOS",
        "status": "ENABLED",
    }
    sent = json.loads(fake_apple.requests[-1].body)
    assert sent == {
        "data": {
            "type": "devices",
            "attributes": {"name": "QA iPad", "udid": "00008030-000A", "platform": "IOS"},
        }
    }
    again = await setup.api.post(
        register, json={"name": "Again", "udid": "00008030-000A"}, token=setup.token
    )
    assert (again.status, again.code) == (409, "device_already_registered")
    assert "already exists" in again.body["error"]
    for bad in (
        {"name": " ", "udid": "0001"},
        {"name": "n" * 129, "udid": "0001"},
        {"name": "ok", "udid": "u" * 65},
        {"name": "ok", "udid": "has space"},
        {"name": "ok", "udid": "0001", "platform": "ANDROID"},
    ):
        refused = await setup.api.post(register, json=bad, token=setup.token)
        assert (refused.status, refused.code) == (400, "invalid_input"), (bad, refused.body)
    missing = await setup.api.post(register, json={"udid": "0001"}, token=setup.token)
    assert (missing.status, missing.code) == (400, "invalid_request")
    (entry,) = await audit(setup.api, setup.token, "ios_device_registered")
    assert json.loads(entry["details"])["udid"] == "00008030-000A"


FAULTS = [
    ("broken", "HTTP 500: UNEXPECTED_ERROR: An unexpected error occurred."),
    ("reject", "HTTP 401: NOT_AUTHORIZED: Authentication credentials are missing or invalid."),
    ("garbage", "not JSON"),
    ("shapeless", "without"),
]


async def test_app_store_connect_failures_are_502_with_apples_detail(
    setup: Setup, fake_apple: FakeAppStoreConnect
) -> None:
    fake_apple.add_bundle("com.example.app", "B1")
    configured = await put(
        setup, {"mode": "api", "bundle_ids": ["com.example.app"], "api_key": fake_apple.api_key()}
    )
    assert configured.status == 200, configured.body
    for fault, said in FAULTS:
        fake_apple.fault = fault
        for method, tail, body in ROUTES[2:]:
            reply = await setup.api.call(method, path(setup, tail), json=body, token=setup.token)
            assert (reply.status, reply.code) == (502, "apple_api_error"), (fault, reply.body)
            assert said in reply.body["error"], (fault, tail, reply.body)
            assert "PRIVATE KEY" not in reply.body["error"]
    after = await setup.api.get(path(setup), token=setup.token)
    assert after.body["provisioning_profiles"] == [] and "last_synced_at" not in after.body


# Nothing listens on the discard port: the connection is refused at once.
@pytest.mark.parametrize("apple_config", [AppleConfig(base_url="http://127.0.0.1:9", timeout=5.0)])
async def test_an_unreachable_app_store_connect_is_502(setup: Setup) -> None:
    assert (
        await put(setup, {"mode": "api", "bundle_ids": ["com.example.app"], "api_key": API_KEY})
    ).status == 200
    for method, tail, body in ROUTES[2:]:
        reply = await setup.api.call(method, path(setup, tail), json=body, token=setup.token)
        assert (reply.status, reply.code) == (502, "apple_api_error"), reply.body
        assert "could not be reached" in reply.body["error"]
