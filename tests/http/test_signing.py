"""Android signing profiles of a pipeline, and the runner's signing grant to the Android
and iOS material (contract §5.6, §8.3)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from oore.domain.logs import MASK
from oore.domain.signing import MAX_KEYSTORE_BYTES, MAX_REQUEST_BYTES
from oore.domain.users import Role
from oore.scheduling import SchedulingConfig
from tests.http.builds_kit import Runner, Setup, eventually, repo, setup
from tests.http.conftest import Api, Reply, UserFactory
from tests.http.test_ios_signing import P12, P12_PASSWORD, PROFILE, manual_body

__all__ = ["repo", "setup"]

KEYSTORE = bytes(range(256)) * 9 + b"end"  # 2307 bytes: base64 needs padding
STORE_PASSWORD = "store-pass-7c1e"
KEY_PASSWORD = "key-pass-93ad"
UNKNOWN = "00000000-0000-4000-8000-000000000001"


def b64(data: bytes, *, padded: bool = True) -> str:
    text = base64.b64encode(data).decode()
    return text if padded else text.rstrip("=")


def full(**extra: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "keystore_base64": b64(KEYSTORE, padded=False),
        "store_password": STORE_PASSWORD,
        "key_alias": "upload",
        "key_password": KEY_PASSWORD,
        **extra,
    }


def path(setup: Setup) -> str:
    return f"/v1/pipelines/{setup.pipeline_id}/android-signing"


async def put(setup: Setup, body: Any, token: str | None = None) -> Reply:
    return await setup.api.call("PUT", path(setup), json=body, token=token or setup.token)


def grant_path(runner: Runner, build_id: str, platform: str = "android") -> str:
    return f"/v1/runners/{runner.id}/jobs/{build_id}/{platform}-signing"


async def fetch(
    api: Api, runner: Runner, build_id: str, signing: str | None, platform: str = "android"
) -> Reply:
    headers = {} if signing is None else {"X-Oore-Signing-Token": signing}
    return await api.get(
        grant_path(runner, build_id, platform), token=runner.token, headers=headers
    )


async def put_ios(setup: Setup, body: Any) -> None:
    saved = await setup.api.call(
        "PUT", f"/v1/pipelines/{setup.pipeline_id}/ios-signing", json=body, token=setup.token
    )
    assert saved.status == 200, saved.body


async def enable(setup: Setup, platform: str) -> None:
    """Complete, enabled signing material of the platform."""
    if platform == "ios":
        await put_ios(setup, manual_body())
    else:
        assert (await put(setup, {"release": full()})).status == 200


EMPTY = {"enabled": False, "has_keystore": False, "has_store_password": False}
EMPTY |= {"has_key_password": False}


async def test_put_then_get_round_trip_keeps_what_is_omitted(setup: Setup) -> None:
    new = await setup.api.get(path(setup), token=setup.token)
    assert new.status == 200, new.body
    assert new.body == {
        "pipeline_id": setup.pipeline_id,
        "debug": {"build_type": "debug", **EMPTY},
        "release": {"build_type": "release", **EMPTY},
    }
    saved = await put(setup, {"release": full()})
    assert saved.status == 200, saved.body
    release = saved.body["release"]
    assert release == {
        "build_type": "release",
        "enabled": True,
        "has_keystore": True,
        "keystore_filename": "release.jks",
        "keystore_checksum": hashlib.sha256(KEYSTORE).hexdigest(),
        "key_alias": "upload",
        "has_store_password": True,
        "has_key_password": True,
        "updated_at": release["updated_at"],
    }
    assert saved.body["debug"]["has_keystore"] is False
    assert (await setup.api.get(path(setup), token=setup.token)).body == saved.body
    assert STORE_PASSWORD not in json.dumps(saved.body) and b64(KEYSTORE) not in json.dumps(
        saved.body
    )

    # Omitted and blank parts stay; a new file name and alias replace the old ones.
    changed = await put(
        setup,
        {"release": {"keystore_filename": "upload.keystore", "store_password": "  "}},
    )
    assert changed.status == 200, changed.body
    assert changed.body["release"] == {**release, "keystore_filename": "upload.keystore"}
    disabled = await put(setup, {"release": {"enabled": False}, "debug": {"key_alias": "dbg"}})
    assert disabled.status == 200, disabled.body
    assert disabled.body["release"]["enabled"] is False
    assert disabled.body["release"]["has_keystore"] is True
    assert disabled.body["debug"]["key_alias"] == "dbg"
    assert disabled.body["debug"]["has_keystore"] is False

    # A padded keystore of other bytes gets its own checksum; the filename stays.
    other = b"another keystore"
    replaced = await put(setup, {"release": {"keystore_base64": b64(other)}})
    assert replaced.body["release"]["keystore_checksum"] == hashlib.sha256(other).hexdigest()
    assert replaced.body["release"]["keystore_filename"] == "upload.keystore"

    audit = await setup.api.get("/v1/audit-logs?resource_type=pipeline", token=setup.token)
    entries = [
        e for e in audit.body["entries"] if e["action"] == "pipeline_android_signing_updated"
    ]
    assert len(entries) == 4
    details = [
        json.loads(e["details"]) if isinstance(e["details"], str) else e["details"] for e in entries
    ]
    assert {
        "release": {
            "enabled": True,
            "changed": ["enabled", "keystore", "store_password", "key_alias", "key_password"],
        }
    } in details
    text = json.dumps(audit.body)
    assert STORE_PASSWORD not in text and KEY_PASSWORD not in text and "upload" not in text


REFUSED: list[tuple[Any, str]] = [
    ({}, "invalid_input"),
    ({"debug": None}, "invalid_input"),
    ({"debug": {"keystore_base64": "not base64!"}}, "invalid_keystore"),
    ({"debug": {"keystore_base64": "QUJD*"}}, "invalid_keystore"),
    ({"debug": {"keystore_base64": "A"}}, "invalid_keystore"),
    ({"debug": {"enabled": True}}, "incomplete_signing_profile"),
    ({"release": full(key_password="")}, "incomplete_signing_profile"),
    ({"debug": {"keystore_filename": "../evil.jks"}}, "invalid_input"),
    ({"debug": {"key_alias": "x" * 1025}}, "invalid_input"),
    ({"debug": {"enabled": "yes"}}, "invalid_request"),
    ({"debug": {"keystore": "QUJD"}}, "invalid_request"),
    ({"profile": {}}, "invalid_request"),
    ({"debug": full(), "release": {"enabled": True}}, "incomplete_signing_profile"),
]


async def test_refused_changes_are_400_and_change_nothing(setup: Setup) -> None:
    for body, code in REFUSED:
        reply = await put(setup, body)
        assert (reply.status, reply.body["code"]) == (400, code), (body, reply.body)
    # A keystore just past 5 MiB is judged by the keystore rule (the body may hold two of
    # the largest keystores); a body past that room is refused before it is read.
    too_big = b64(b"k" * (MAX_KEYSTORE_BYTES + 1))
    reply = await put(setup, {"debug": {"keystore_base64": too_big}})
    assert (reply.status, reply.body["code"]) == (400, "invalid_keystore")
    past_the_room = b64(b"k" * MAX_REQUEST_BYTES)
    reply = await put(setup, {"debug": {"keystore_base64": past_the_room}})
    assert (reply.status, reply.body["code"]) == (413, "payload_too_large")
    after = await setup.api.get(path(setup), token=setup.token)
    assert after.body["debug"] == {"build_type": "debug", **EMPTY}
    assert after.body["release"] == {"build_type": "release", **EMPTY}


async def test_hidden_pipelines_are_404_and_viewers_are_403(
    setup: Setup, make_user: UserFactory
) -> None:
    api = setup.api
    for pipeline in (UNKNOWN, "nope"):
        for method in ("GET", "PUT"):
            reply = await api.call(
                method,
                f"/v1/pipelines/{pipeline}/android-signing",
                json={"debug": {"enabled": False}} if method == "PUT" else None,
                token=setup.token,
            )
            assert (reply.status, reply.body["code"]) == (404, "not_found")
    developer = await make_user(Role.DEVELOPER)
    stranger = await api.get(path(setup), token=developer.token)
    assert (stranger.status, stranger.body["code"]) == (404, "not_found")
    assert (await put(setup, {"debug": {}}, developer.token)).status == 404
    viewer = await make_user(Role.DEVELOPER)
    for user, role in ((developer, "developer"), (viewer, "viewer")):
        added = await api.post(
            f"/v1/projects/{setup.project_id}/members",
            json={"user_id": user.user.id, "role": role},
            token=setup.token,
        )
        assert added.status == 201, added.body
    for method in ("GET", "PUT"):
        body = {"debug": {"enabled": False}} if method == "PUT" else None
        denied = await api.call(method, path(setup), json=body, token=viewer.token)
        assert (denied.status, denied.body["code"]) == (403, "permission_denied")
        allowed = await api.call(method, path(setup), json=body, token=developer.token)
        assert allowed.status == 200, allowed.body


async def test_the_claim_says_which_signing_material_to_fetch(setup: Setup) -> None:
    runner = await setup.runner()

    async def flag() -> Any:
        build = await setup.trigger()
        job = await runner.claim()
        assert job is not None and job["build_id"] == build["id"]
        assert (await runner.report(build["id"], "running")).status == 200
        assert (await runner.report(build["id"], "succeeded", exit_code=0)).status == 200
        return job["signing"]

    assert await flag() == {"android": False, "ios": False}
    assert (await put(setup, {"debug": full(enabled=False)})).status == 200
    await put_ios(setup, manual_body(enabled=False))
    assert await flag() == {"android": False, "ios": False}
    assert (await put(setup, {"debug": {"enabled": True}})).status == 200
    assert await flag() == {"android": True, "ios": False}
    await put_ios(setup, {"enabled": True})
    assert await flag() == {"android": True, "ios": True}
    assert (await put(setup, {"debug": {"enabled": False}})).status == 200
    assert await flag() == {"android": False, "ios": True}


async def test_the_runner_holding_the_build_gets_the_enabled_profiles(setup: Setup) -> None:
    api = setup.api
    assert (await put(setup, {"release": full(), "debug": full(enabled=False)})).status == 200
    build = await setup.trigger()
    runner = await setup.runner()
    job = await runner.claim()
    assert job is not None
    # Assigned (not yet running) already holds the grant.
    reply = await fetch(api, runner, build["id"], job["signing_token"])
    assert reply.status == 200, reply.body
    assert reply.body == {
        "release": {
            "build_type": "release",
            "enabled": True,
            "keystore_filename": "release.jks",
            "keystore_base64": b64(KEYSTORE),
            "store_password": STORE_PASSWORD,
            "key_alias": "upload",
            "key_password": KEY_PASSWORD,
        }
    }
    assert (await runner.report(build["id"], "running")).status == 200
    # A runner that does not mask what the build prints: the server masks the passwords.
    line = f"store={STORE_PASSWORD} key={KEY_PASSWORD}"
    printed = await runner.logs(build["id"], [{"sequence": 0, "content": line, "stream": "stdout"}])
    assert printed.status == 200, printed.body
    stored = await api.get(f"/v1/builds/{build['id']}/logs", token=setup.token)
    assert [entry["content"] for entry in stored.body["logs"]] == [f"store={MASK} key={MASK}"]
    again = await fetch(api, runner, build["id"], job["signing_token"])
    assert again.status == 200 and base64.b64decode(again.body["release"]["keystore_base64"]) == (
        KEYSTORE
    )


async def test_a_password_changed_after_the_claim_is_masked_as_the_runner_fetches_it(
    setup: Setup,
) -> None:
    # The claim read the pipeline's passwords; the runner fetches the material later, as
    # it is then: the log masks the password it could have fetched.
    assert (await put(setup, {"release": full()})).status == 200
    build = await setup.trigger()
    runner = await setup.runner()
    job = await runner.claim()
    assert job is not None and job["signing"]["android"] is True
    changed = "store-pass-changed-51f0"
    assert (await put(setup, {"release": {"store_password": changed}})).status == 200
    fetched = await fetch(setup.api, runner, build["id"], job["signing_token"])
    assert fetched.body["release"]["store_password"] == changed
    assert (await runner.report(build["id"], "running")).status == 200
    line = {"sequence": 0, "content": f"store={changed}", "stream": "stdout"}
    assert (await runner.logs(build["id"], [line])).status == 200
    stored = await setup.api.get(f"/v1/builds/{build['id']}/logs", token=setup.token)
    assert [entry["content"] for entry in stored.body["logs"]] == [f"store={MASK}"]


async def test_the_runner_holding_the_build_gets_the_ios_material(setup: Setup) -> None:
    api = setup.api
    runner = await setup.runner()

    async def held() -> tuple[str, str]:
        build = await setup.trigger()
        job = await runner.claim()
        assert job is not None and job["build_id"] == build["id"]
        return build["id"], job["signing_token"]

    # Never configured, then configured but disabled: nothing to hand over.
    build_id, token = await held()
    assert (await fetch(api, runner, build_id, token, "ios")).body == {}
    await put_ios(setup, manual_body(enabled=False, export_method="app_store"))
    nothing = await fetch(api, runner, build_id, token, "ios")
    assert (nothing.status, nothing.body) == (200, {})
    assert (await runner.report(build_id, "running")).status == 200
    assert (await runner.report(build_id, "succeeded", exit_code=0)).status == 200
    # A runner that does not mask what the build prints: the server masks the password,
    # stored even while signing is disabled.
    build_id, token = await held()
    assert (await runner.report(build_id, "running")).status == 200
    line = f"p12 password={P12_PASSWORD}"
    printed = await runner.logs(build_id, [{"sequence": 0, "content": line, "stream": "stdout"}])
    assert printed.status == 200, printed.body
    stored = await api.get(f"/v1/builds/{build_id}/logs", token=setup.token)
    assert [entry["content"] for entry in stored.body["logs"]] == [f"p12 password={MASK}"]
    assert (await runner.report(build_id, "succeeded", exit_code=0)).status == 200

    await put_ios(setup, {"enabled": True})
    build_id, token = await held()
    reply = await fetch(api, runner, build_id, token, "ios")
    assert reply.status == 200, reply.body
    assert reply.body == {
        "bundle": {
            "enabled": True,
            "mode": "manual",
            "team_id": manual_body()["team_id"],
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
    # The Android route of the same grant answers the (absent) Android material.
    assert (await fetch(api, runner, build_id, token)).body == {}


@pytest.mark.parametrize("platform", ["android", "ios"])
async def test_the_grant_is_checked_in_order_and_ends_with_the_build(
    setup: Setup, platform: str
) -> None:
    api = setup.api
    await enable(setup, platform)
    build = await setup.trigger()
    runner = await setup.runner()
    other = await setup.runner("other")
    job = await runner.claim()
    assert job is not None
    token = job["signing_token"]

    def code(reply: Reply) -> tuple[int, str]:
        return reply.status, reply.body["code"]

    assert code(await fetch(api, runner, build["id"], None, platform)) == (
        401,
        "signing_grant_required",
    )
    assert code(await fetch(api, runner, build["id"], "", platform)) == (
        401,
        "signing_grant_required",
    )
    assert code(await fetch(api, runner, build["id"], "0" * 64, platform)) == (
        401,
        "invalid_signing_grant",
    )
    # Another runner is refused before its token is looked at.
    assert code(await fetch(api, other, build["id"], None, platform)) == (403, "runner_mismatch")
    assert code(await fetch(api, other, build["id"], token, platform)) == (403, "runner_mismatch")
    assert code(await fetch(api, runner, UNKNOWN, token, platform)) == (404, "not_found")
    assert code(await fetch(api, runner, "nope", token, platform)) == (404, "not_found")
    # The runner's token must match the path (403) and be a runner's (401).
    mismatch = await api.get(
        f"/v1/runners/{other.id}/jobs/{build['id']}/{platform}-signing",
        token=runner.token,
        headers={"X-Oore-Signing-Token": token},
    )
    assert code(mismatch) == (403, "runner_mismatch")
    anonymous = await api.get(
        grant_path(runner, build["id"], platform), headers={"X-Oore-Signing-Token": token}
    )
    assert code(anonymous) == (401, "missing_auth")

    assert (await runner.report(build["id"], "running")).status == 200
    assert (await runner.report(build["id"], "succeeded", exit_code=0)).status == 200
    # Ended: 409 before anything else, whoever asks and with whatever token.
    for who, signing in ((runner, token), (runner, None), (other, "0" * 64)):
        assert code(await fetch(api, who, build["id"], signing, platform)) == (
            409,
            "job_not_active",
        )


@pytest.mark.parametrize("platform", ["android", "ios"])
async def test_a_canceled_build_loses_its_grant(setup: Setup, platform: str) -> None:
    api = setup.api
    await enable(setup, platform)
    build = await setup.trigger()
    runner = await setup.runner()
    job = await runner.claim()
    assert job is not None
    canceled = await api.post(f"/v1/builds/{build['id']}/cancel", token=setup.token)
    assert canceled.status == 200, canceled.body
    gone = await fetch(api, runner, build["id"], job["signing_token"], platform)
    assert (gone.status, gone.body["code"]) == (409, "job_not_active")


@pytest.mark.parametrize("scheduling_config", [SchedulingConfig(runner_lease=0.5)])
async def test_a_requeued_build_is_claimed_with_a_new_grant(setup: Setup) -> None:
    api = setup.api
    assert (await put(setup, {"release": full()})).status == 200
    build = await setup.trigger()
    lost = await setup.runner("lost")
    first = await lost.claim()
    assert first is not None
    # The runner never reports running: its lease runs out and the build is requeued.
    await eventually(setup, build["id"], "queued")
    queued = await fetch(api, lost, build["id"], first["signing_token"])
    assert (queued.status, queued.body["code"]) == (409, "job_not_active")
    taker = await setup.runner("taker")
    second = await taker.claim()
    assert second is not None and second["build_id"] == build["id"]
    old = await fetch(api, taker, build["id"], first["signing_token"])
    assert (old.status, old.body["code"]) == (401, "invalid_signing_grant")
    assert (await fetch(api, taker, build["id"], second["signing_token"])).status == 200
    mine = await fetch(api, lost, build["id"], first["signing_token"])
    assert (mine.status, mine.body["code"]) == (403, "runner_mismatch")
