"""Scoped download tokens and install links of artifacts (contract §0.2, §7.2)."""

from __future__ import annotations

import plistlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trio

from oore.domain.crypto import SecretBox
from oore.domain.setup import Preferences, RemoteAuthMode, RuntimeMode
from oore.domain.tokens import hash_token
from oore.domain.users import Role
from oore.services.artifact_storage import ArtifactsConfig
from oore.store import Store
from tests.http.artifacts_kit import Job, download, running_job
from tests.http.builds_kit import Setup, repo, setup
from tests.http.conftest import Api, FakeClock, Reply, UserFactory
from tests.s3_kit import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server, s3_server

__all__ = ["repo", "s3_server", "setup"]

UNKNOWN = "00000000-0000-4000-8000-000000000000"
PUBLIC = "https://ci.example.com"
DELIVERY = "https://dl.example.com"
IOS_APP = {"bundle_id": "com.example.app", "bundle_version": "1.2.3", "title": "Example"}


@pytest.fixture
def artifacts_config(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactsConfig:
    """Local storage, artifacts kept one day; tests may pass external URLs indirectly."""
    urls: dict[str, str | None] = getattr(request, "param", {})
    return ArtifactsConfig(
        data_dir=tmp_path / "data",
        secrets=SecretBox(bytes(32)),
        ttl_days=1,
        public_url=urls.get("public_url"),
        artifact_delivery_url=urls.get("artifact_delivery_url"),
    )


@pytest.fixture
async def job(setup: Setup) -> Job:
    return await running_job(setup)


async def mint(api: Api, artifact_id: str, token: str, body: Any = None) -> Reply:
    return await api.post(f"/v1/artifacts/{artifact_id}/scoped-token", json=body, token=token)


async def install_link(api: Api, artifact_id: str, token: str) -> Reply:
    return await api.post(f"/v1/artifacts/{artifact_id}/install-link", token=token)


async def redeem(api: Api, token: str, prefix: str = "/install/artifact/") -> Reply:
    return await api.get(f"{prefix}{token}")


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def actions(store: Store) -> list[str]:
    """The artifact audit actions, oldest first."""
    recent = await store.audit.recent()
    return [e.action for e in reversed(recent) if e.action.startswith("artifact_")]


# -- scoped tokens ----------------------------------------------------------------------


async def test_mint_redeem_follow_and_get_the_same_bytes(
    job: Job, clock: FakeClock, store: Store
) -> None:
    data = bytes(range(256)) * 300
    artifact = await job.publish("app.apk", data, artifact_type="apk")
    minted = await mint(job.api, artifact["id"], job.setup.token)
    assert minted.status == 200, minted.body
    token = minted.body["token"]
    assert minted.body == {
        "id": minted.body["id"],
        "download_url": f"http://127.0.0.1:8787/install/artifact/{token}",
        "token": token,
        "prefix": token[:8],
        "expires_at": clock.now() + 86400,
        "single_use": False,
    }
    assert len(token) == 64 and all(c in "0123456789abcdef" for c in token)
    for prefix in ("/install/artifact/", "/v1/artifacts/dl/"):
        moved = await redeem(job.api, token, prefix)
        assert moved.status == 307, moved.body
        location = moved.headers["Location"]
        assert location.startswith("http://127.0.0.1:8787/install/download/")
        got = await download(job.api, location)
        assert (got.status, got.body) == (200, data)
        assert got.headers["Content-Disposition"] == 'attachment; filename="app.apk"'
    assert await actions(store) == [
        "artifact_scoped_token_created",
        "artifact_scoped_token_redeemed",
        "artifact_scoped_token_redeemed",
    ]
    created = [e for e in await store.audit.recent() if e.action.endswith("_token_created")]
    assert created[0].details == {
        "token_id": minted.body["id"],
        "artifact_id": artifact["id"],
        "token_prefix": token[:8],
        "single_use": False,
        "ttl_secs": 86400,
        "expires_at": minted.body["expires_at"],
    }


async def test_only_hashes_are_stored(job: Job, store: Store) -> None:
    artifact = await job.publish("a.bin", b"a")
    minted = await mint(job.api, artifact["id"], job.setup.token)
    token = minted.body["token"]
    row = await store.artifact_tokens.by_hash(hash_token(token))
    assert row is not None and row.id == minted.body["id"]
    assert await store.artifact_tokens.by_hash(token) is None


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"ttl_secs": 59}, 400, "validation_error"),
        ({"ttl_secs": 0}, 400, "validation_error"),
        ({"ttl_secs": -5}, 400, "validation_error"),
        ({"ttl_secs": 604801}, 400, "validation_error"),
        ({"ttl_secs": "3600"}, 400, "invalid_request"),
        ({"single_use": "yes"}, 400, "invalid_request"),
        ({"ttl": 60}, 400, "invalid_request"),
        ({"ttl_secs": 60}, 200, None),
        ({"ttl_secs": 604800, "single_use": True}, 200, None),
        (None, 200, None),
    ],
)
async def test_ttl_bounds(
    job: Job, clock: FakeClock, body: Any, status: int, code: str | None
) -> None:
    artifact = await job.publish("a.bin", b"a")
    reply = await mint(job.api, artifact["id"], job.setup.token, body)
    assert (reply.status, reply.code) == (status, code), reply.body
    if status == 200:
        wanted = (body or {}).get("ttl_secs", 86400)
        assert reply.body["expires_at"] == clock.now() + wanted
        assert reply.body["single_use"] is bool((body or {}).get("single_use"))


async def test_who_may_mint_and_list(setup: Setup, job: Job, make_user: UserFactory) -> None:
    artifact = await job.publish("a.bin", b"a")
    pending = (await job.reserve("p.bin")).body["artifact"]["id"]
    api = setup.api
    outsider = await make_user(Role.DEVELOPER)
    viewer = await make_user(Role.DEVELOPER)
    developer = await make_user(Role.DEVELOPER)
    for who, role in ((viewer, "viewer"), (developer, "developer")):
        added = await api.post(
            f"/v1/projects/{setup.project_id}/members",
            json={"user_id": who.user.id, "role": role},
            token=setup.token,
        )
        assert added.status == 201, added.body
    cases: list[tuple[str, str | None, int, str | None]] = [
        (artifact["id"], None, 401, "missing_auth"),
        (artifact["id"], "ab" * 32, 401, "invalid_session"),
        (UNKNOWN, setup.token, 404, "not_found"),
        ("nonsense", setup.token, 404, "not_found"),
        (pending, setup.token, 404, "not_found"),
        (artifact["id"], outsider.token, 404, "not_found"),
        (artifact["id"], viewer.token, 403, "permission_denied"),
        (artifact["id"], developer.token, 200, None),
        (artifact["id"], setup.token, 200, None),
    ]
    for artifact_id, token, status, code in cases:
        minted = await api.post(f"/v1/artifacts/{artifact_id}/scoped-token", token=token)
        assert (minted.status, minted.code) == (status, code), (artifact_id, token)
        listed = await api.get(f"/v1/artifacts/{artifact_id}/scoped-tokens", token=token)
        assert (listed.status, listed.code) == (status, code), (artifact_id, token)


async def test_listing_shows_state_without_the_token(
    job: Job, clock: FakeClock, store: Store
) -> None:
    artifact = await job.publish("a.bin", b"a")
    api, owner = job.api, job.setup.token
    first = (await mint(api, artifact["id"], owner, {"single_use": True})).body
    clock.advance(1)
    second = (await mint(api, artifact["id"], owner, {"ttl_secs": 60})).body
    clock.advance(1)
    third = (await mint(api, artifact["id"], owner)).body
    assert (await redeem(api, first["token"])).status == 307
    revoked_at = clock.now()
    assert (await api.call("DELETE", f"/v1/artifact-tokens/{third['id']}", token=owner)).status
    clock.advance(60)
    listed = await api.get(f"/v1/artifacts/{artifact['id']}/scoped-tokens", token=owner)
    assert listed.status == 200
    owner_id = (await api.get("/v1/users/me", token=owner)).body["user"]["id"]
    base = {"artifact_id": artifact["id"], "created_by": owner_id}
    assert listed.body == {
        "tokens": [
            {
                **base,
                "id": third["id"],
                "prefix": third["prefix"],
                "created_by_email": listed.body["tokens"][0]["created_by_email"],
                "expires_at": third["expires_at"],
                "single_use": False,
                "revoked_at": revoked_at,
                "is_expired": False,
                "is_used": False,
                "is_revoked": True,
                "created_at": third["expires_at"] - 86400,
            },
            {
                **base,
                "id": second["id"],
                "prefix": second["prefix"],
                "created_by_email": listed.body["tokens"][0]["created_by_email"],
                "expires_at": second["expires_at"],
                "single_use": False,
                "is_expired": True,
                "is_used": False,
                "is_revoked": False,
                "created_at": second["expires_at"] - 60,
            },
            {
                **base,
                "id": first["id"],
                "prefix": first["prefix"],
                "created_by_email": listed.body["tokens"][0]["created_by_email"],
                "expires_at": first["expires_at"],
                "single_use": True,
                "used_at": revoked_at,
                "is_expired": False,
                "is_used": True,
                "is_revoked": False,
                "created_at": first["expires_at"] - 86400,
            },
        ]
    }
    assert listed.body["tokens"][0]["created_by_email"]
    assert all("token" not in t for t in listed.body["tokens"])


async def test_a_single_use_token_is_redeemed_once(job: Job) -> None:
    artifact = await job.publish("a.bin", b"once")
    token = (await mint(job.api, artifact["id"], job.setup.token, {"single_use": True})).body[
        "token"
    ]
    first = await redeem(job.api, token)
    assert first.status == 307
    again = await redeem(job.api, token, "/v1/artifacts/dl/")
    assert (again.status, again.code) == (401, "invalid_token")
    # The URL it was redirected to stays good for its own 15 minutes.
    assert (await download(job.api, first.headers["Location"])).body == b"once"


async def test_two_concurrent_redeems_of_a_single_use_token(job: Job) -> None:
    artifact = await job.publish("a.bin", b"race")
    for _ in range(5):
        minted = await mint(job.api, artifact["id"], job.setup.token, {"single_use": True})
        replies: list[Reply] = []

        async def one(token: str, into: list[Reply]) -> None:
            into.append(await redeem(job.api, token))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, minted.body["token"], replies)
            nursery.start_soon(one, minted.body["token"], replies)
        assert sorted((r.status, r.code) for r in replies) == [
            (307, None),
            (401, "invalid_token"),
        ]


@pytest.mark.parametrize(
    "token", ["f" * 64, "F" * 64, "abc", "g" * 64, "0" * 63], ids=lambda t: t[:4] + str(len(t))
)
async def test_unknown_tokens_are_invalid(job: Job, token: str) -> None:
    for prefix in ("/install/artifact/", "/v1/artifacts/dl/"):
        reply = await redeem(job.api, token, prefix)
        assert (reply.status, reply.code) == (401, "invalid_token")


async def test_expiry_of_tokens_and_artifacts(
    job: Job, clock: FakeClock, make_user: UserFactory
) -> None:
    artifact = await job.publish("a.bin", b"a")
    short = (await mint(job.api, artifact["id"], job.setup.token, {"ttl_secs": 60})).body
    long = (await mint(job.api, artifact["id"], job.setup.token, {"ttl_secs": 604800})).body
    clock.advance(59)
    assert (await redeem(job.api, short["token"])).status == 307
    clock.advance(1)
    expired = await redeem(job.api, short["token"])
    assert (expired.status, expired.code) == (401, "invalid_token")
    assert (await redeem(job.api, long["token"])).status == 307
    clock.advance(86400)  # the artifact is kept one day
    gone = await redeem(job.api, long["token"])
    assert (gone.status, gone.code) == (410, "artifact_expired")
    admin = await make_user(Role.ADMIN)  # the owner's session has expired too
    late = await mint(job.api, artifact["id"], admin.token)
    assert (late.status, late.code) == (410, "artifact_expired")


async def test_an_artifact_gone_before_a_single_use_redeem_does_not_consume_it(
    job: Job, clock: FakeClock, store: Store
) -> None:
    artifact = await job.publish("a.bin", b"a")
    body = {"single_use": True, "ttl_secs": 604800}
    minted = (await mint(job.api, artifact["id"], job.setup.token, body)).body
    clock.advance(86400)
    assert (await redeem(job.api, minted["token"])).code == "artifact_expired"
    row = await store.artifact_tokens.get(minted["id"])
    assert row is not None and row.used_at is None


async def test_redeem_with_storage_disabled_is_503_and_keeps_the_token(
    job: Job, store: Store
) -> None:
    artifact = await job.publish("a.bin", b"a")
    minted = (await mint(job.api, artifact["id"], job.setup.token, {"single_use": True})).body
    off = await job.api.call(
        "PUT", "/v1/settings/artifact-storage", json={"provider": "disabled"}, token=job.setup.token
    )
    assert off.status == 200
    refused = await redeem(job.api, minted["token"])
    assert (refused.status, refused.code) == (503, "storage_not_configured")
    row = await store.artifact_tokens.get(minted["id"])
    assert row is not None and row.used_at is None


async def test_revoke(setup: Setup, job: Job, make_user: UserFactory, store: Store) -> None:
    artifact = await job.publish("a.bin", b"a")
    api = setup.api
    developer = await make_user(Role.DEVELOPER)
    other = await make_user(Role.DEVELOPER)
    admin = await make_user(Role.ADMIN)
    for who in (developer, other):
        await api.post(
            f"/v1/projects/{setup.project_id}/members",
            json={"user_id": who.user.id, "role": "developer"},
            token=setup.token,
        )
    mine = (await mint(api, artifact["id"], developer.token)).body
    theirs = (await mint(api, artifact["id"], other.token)).body
    assert (await redeem(api, mine["token"])).status == 307

    def delete(token_id: str, token: str | None) -> Any:
        return api.call("DELETE", f"/v1/artifact-tokens/{token_id}", token=token)

    cases: list[tuple[str, str | None, int, Any]] = [
        (mine["id"], None, 401, "missing_auth"),
        (UNKNOWN, developer.token, 404, "not_found"),
        ("nonsense", developer.token, 404, "not_found"),
        (theirs["id"], developer.token, 403, "permission_denied"),
        (mine["id"], developer.token, 200, {"revoked": True}),
        (mine["id"], developer.token, 200, {"revoked": True}),  # idempotent
        (theirs["id"], admin.token, 200, {"revoked": True}),
    ]
    for token_id, token, status, expected in cases:
        reply = await delete(token_id, token)
        got = reply.body if status == 200 else reply.code
        assert (reply.status, got) == (status, expected), (token_id, token)
    for revoked in (mine, theirs):
        refused = await redeem(api, revoked["token"])
        assert (refused.status, refused.code) == (401, "invalid_token")
    recorded = await actions(store)
    assert recorded.count("artifact_scoped_token_revoked") == 2


async def test_redeem_with_s3_redirects_to_a_presigned_get(
    job: Job, s3_server: S3Server, store: Store
) -> None:
    bucket = await trio.to_thread.run_sync(s3_server.new_bucket)
    settings = {
        "provider": "s3",
        "s3_bucket": bucket,
        "s3_endpoint": s3_server.endpoint,
        "access_key_id": ACCESS_KEY_ID,
        "secret_access_key": SECRET_ACCESS_KEY,
    }
    saved = await job.api.call(
        "PUT", "/v1/settings/artifact-storage", json=settings, token=job.setup.token
    )
    assert saved.status == 200, saved.body
    data = bytes(range(256)) * 64
    reserved = await job.reserve("app.apk", artifact_type="apk")
    async with httpx.AsyncClient() as http:
        put = await http.put(reserved.body["upload_url"], content=data)
        assert put.status_code == 200
        artifact_id = reserved.body["artifact"]["id"]
        assert (await job.finish(artifact_id, "complete")).status == 200
        minted = (await mint(job.api, artifact_id, job.setup.token, {"single_use": True})).body
        moved = await redeem(job.api, minted["token"])
        assert moved.status == 307, moved.body
        location = moved.headers["Location"]
        parts = urlsplit(location)
        assert f"{parts.scheme}://{parts.netloc}" == s3_server.endpoint
        assert parse_qs(parts.query)["X-Amz-Expires"] == ["900"]
        fetched = await http.get(location)
        assert fetched.status_code == 200 and fetched.content == data
    again = await redeem(job.api, minted["token"])
    assert (again.status, again.code) == (401, "invalid_token")


# -- install links ----------------------------------------------------------------------

EXTERNAL = {"public_url": PUBLIC}
BOTH = {"public_url": PUBLIC, "artifact_delivery_url": DELIVERY}


@pytest.mark.parametrize("artifacts_config", [BOTH], indirect=True)
async def test_delivery_url_is_the_base_of_redirects(job: Job) -> None:
    artifact = await job.publish("a.bin", b"delivered")
    minted = (await mint(job.api, artifact["id"], job.setup.token)).body
    assert minted["download_url"] == f"{PUBLIC}/install/artifact/{minted['token']}"
    moved = await redeem(job.api, minted["token"])
    assert moved.headers["Location"].startswith(f"{DELIVERY}/install/download/")
    assert (await download(job.api, moved.headers["Location"])).body == b"delivered"


@pytest.mark.parametrize("artifacts_config", [EXTERNAL], indirect=True)
async def test_android_install_link(job: Job, clock: FakeClock, store: Store) -> None:
    artifact = await job.publish("app.apk", b"apk bytes", artifact_type="apk")
    link = await install_link(job.api, artifact["id"], job.setup.token)
    assert link.status == 200, link.body
    url = link.body["download_url"]
    assert url.startswith(f"{PUBLIC}/install/artifact/")
    assert link.body == {
        "platform": "android",
        "install_url": url,
        "download_url": url,
        "expires_at": clock.now() + 3600,
    }
    moved = await job.api.get(path_of(url))
    assert moved.status == 307
    assert (await download(job.api, moved.headers["Location"])).body == b"apk bytes"
    assert (await job.api.get(path_of(url))).status == 307  # not single use
    recorded = [e for e in await store.audit.recent() if e.action.startswith("artifact_install")]
    row = await store.artifact_tokens.by_hash(hash_token(url.rsplit("/", 1)[1]))
    assert row is not None
    assert [e.details for e in recorded] == [
        {
            "token_id": row.id,
            "artifact_id": artifact["id"],
            "platform": "android",
            "token_prefix": url.rsplit("/", 1)[1][:8],
            "expires_at": link.body["expires_at"],
        }
    ]
    listed = await job.api.get(
        f"/v1/artifacts/{artifact['id']}/scoped-tokens", token=job.setup.token
    )
    assert listed.body == {"tokens": []}  # install tokens are not scoped tokens
    clock.advance(3600)
    expired = await job.api.get(path_of(url))
    assert (expired.status, expired.code) == (401, "invalid_token")


@pytest.mark.parametrize("artifacts_config", [BOTH], indirect=True)
async def test_ios_install_link_and_manifest(job: Job, clock: FakeClock) -> None:
    artifact = await job.publish(
        "App.ipa", b"ipa bytes", artifact_type="ipa", metadata={"ios_app": IOS_APP}
    )
    clock.advance(86400 - 600)  # the artifact expires in ten minutes: so does the link
    link = await install_link(job.api, artifact["id"], job.setup.token)
    assert link.status == 200, link.body
    body = link.body
    token = body["download_url"].rsplit("/", 1)[1]
    manifest = f"{DELIVERY}/install/ios/{token}/manifest.plist"
    assert body == {
        "platform": "ios",
        "install_url": body["install_url"],
        "download_url": f"{DELIVERY}/install/artifact/{token}",
        "manifest_url": manifest,
        "expires_at": clock.now() + 600,
    }
    scheme, rest = body["install_url"].split("://?", 1)
    assert scheme == "itms-services"
    assert parse_qs(rest) == {"action": ["download-manifest"], "url": [manifest]}
    for path in (path_of(manifest), f"/v1/artifacts/install/ios/{token}/manifest.plist"):
        got = await job.api.get(path)
        assert got.status == 200
        assert got.headers["Content-Type"] == "application/xml; charset=utf-8"
        assert plistlib.loads(got.body.encode()) == {
            "items": [
                {
                    "assets": [{"kind": "software-package", "url": body["download_url"]}],
                    "metadata": {
                        "bundle-identifier": "com.example.app",
                        "bundle-version": "1.2.3",
                        "kind": "software",
                        "title": "Example",
                    },
                }
            ]
        }
    moved = await job.api.get(path_of(body["download_url"]))
    assert moved.status == 307
    assert (await download(job.api, moved.headers["Location"])).body == b"ipa bytes"
    clock.advance(600)
    gone = await job.api.get(path_of(manifest))
    assert (gone.status, gone.code) == (401, "invalid_token")


@pytest.mark.parametrize("artifacts_config", [BOTH], indirect=True)
async def test_manifests_need_an_install_token_of_an_ipa(job: Job) -> None:
    apk = await job.publish("app.apk", b"a", artifact_type="apk")
    android = (await install_link(job.api, apk["id"], job.setup.token)).body
    scoped = (await mint(job.api, apk["id"], job.setup.token)).body
    for token in (android["download_url"].rsplit("/", 1)[1], scoped["token"], "f" * 64):
        refused = await job.api.get(f"/install/ios/{token}/manifest.plist")
        assert (refused.status, refused.code) == (401, "invalid_token")


TICKET = "ios ticket/+?"
TICKET_QUERY = "warpgate-ticket=ios+ticket%2F%2B%3F"


@pytest.mark.parametrize("artifacts_config", [BOTH], indirect=True)
async def test_warpgate_mode_puts_the_ticket_on_ios_urls(
    job: Job, store: Store, clock: FakeClock
) -> None:
    """Remote mode signed in through a trusted proxy with a Warpgate ticket saved: the iOS
    install link, its manifest's download URL and an IPA's redeem redirect carry the
    ticket, so an iPhone gets through Warpgate without signing in; Android links and
    other artifacts do not, and nothing does outside that mode or without a ticket."""
    ipa = await job.publish(
        "App.ipa",
        b"ipa bytes",
        artifact_type="ipa",
        # as an oored-format runner describes the app
        metadata={
            "ios_app": {"bundle_identifier": "com.example.kite", "version": "3.2.1"},
            "display_name": "ignored: not under ios_app",
        },
    )
    refused = await install_link(job.api, ipa["id"], job.setup.token)
    assert (refused.status, refused.code) == (422, "ios_artifact_not_installable")
    ipa = await job.publish(
        "Kite.ipa",
        b"ipa bytes",
        artifact_type="ipa",
        metadata={
            "ios_app": {
                "bundle_identifier": "com.example.kite",
                "display_name": "Kite",
                "version": "3.2.1",
                "build_number": "42",
            }
        },
    )
    apk = await job.publish("app.apk", b"apk bytes", artifact_type="apk")
    settings = {"shared_secret": "proxy-secret", "warpgate_ticket": TICKET}
    saved = await job.api.call(
        "PUT", "/v1/settings/external-access/trusted-proxy", json=settings, token=job.setup.token
    )
    assert saved.status == 200, saved.body

    async def urls() -> tuple[dict[str, Any], str, str, str, str]:
        ios = await install_link(job.api, ipa["id"], job.setup.token)
        assert ios.status == 200, ios.body
        android = await install_link(job.api, apk["id"], job.setup.token)
        manifest = await job.api.get(path_of(ios.body["manifest_url"]))
        assert manifest.status == 200, manifest.body
        asset = plistlib.loads(manifest.body.encode())["items"][0]["assets"][0]["url"]
        scoped_ipa = (await mint(job.api, ipa["id"], job.setup.token)).body["token"]
        scoped_apk = (await mint(job.api, apk["id"], job.setup.token)).body["token"]
        ipa_moved = (await redeem(job.api, scoped_ipa)).headers["Location"]
        apk_moved = (await redeem(job.api, scoped_apk)).headers["Location"]
        return ios.body, android.body["download_url"], asset, ipa_moved, apk_moved

    ios, android, asset, ipa_moved, apk_moved = await urls()  # local mode: no ticket
    assert "warpgate" not in str([ios, android, asset, ipa_moved, apk_moved])

    await store.instance.set_preferences(
        Preferences(RuntimeMode.REMOTE, RemoteAuthMode.TRUSTED_PROXY), clock.now()
    )
    ios, android, asset, ipa_moved, apk_moved = await urls()
    token = urlsplit(ios["download_url"]).path.rsplit("/", 1)[1]
    assert ios["download_url"] == f"{DELIVERY}/install/artifact/{token}?{TICKET_QUERY}"
    manifest = f"{DELIVERY}/install/ios/{token}/manifest.plist?{TICKET_QUERY}"
    assert ios["manifest_url"] == manifest
    assert parse_qs(ios["install_url"].split("://?", 1)[1])["url"] == [manifest]
    assert asset == ios["download_url"]
    assert ipa_moved.startswith(f"{DELIVERY}/install/download/")
    assert ipa_moved.endswith(f"?{TICKET_QUERY}")
    assert parse_qs(urlsplit(ipa_moved).query) == {"warpgate-ticket": [TICKET]}
    # The proxy passes the parameter on; the download ignores it.
    assert (await download(job.api, ipa_moved)).body == b"ipa bytes"
    followed = await job.api.get(path_of(ios["download_url"]))
    assert followed.status == 307 and followed.headers["Location"].endswith(f"?{TICKET_QUERY}")
    assert "warpgate" not in android + apk_moved

    await store.instance.set_preferences(
        Preferences(RuntimeMode.REMOTE, RemoteAuthMode.OIDC), clock.now()
    )
    assert "warpgate" not in str(await urls())
    await store.instance.set_preferences(
        Preferences(RuntimeMode.REMOTE, RemoteAuthMode.TRUSTED_PROXY), clock.now()
    )
    cleared = await job.api.call(
        "PUT",
        "/v1/settings/external-access/trusted-proxy",
        json={"warpgate_ticket": ""},
        token=job.setup.token,
        peer=("203.0.113.7", 40000),
    )
    assert cleared.status == 200, cleared.body
    assert "warpgate" not in str(await urls())


INCOMPLETE_IOS = [
    None,
    {"ios_app": None},
    {"ios_app": "x"},
    {"ios_app": {**IOS_APP, "title": "  "}},
    {"ios_app": {"bundle_id": "a", "bundle_version": "1"}},
    {"ios_app": {**IOS_APP, "bundle_version": 1}},
]


@pytest.mark.parametrize(
    ("artifacts_config", "kind", "metadata", "status", "code"),
    [
        (EXTERNAL, "generic", None, 422, "artifact_not_installable"),
        (EXTERNAL, "app", None, 422, "artifact_not_installable"),
        ({}, "apk", None, 412, "external_access_required"),
        ({}, "ipa", {"ios_app": IOS_APP}, 412, "external_access_required"),
        ({"artifact_delivery_url": "not a url"}, "apk", None, 412, "external_access_invalid"),
        ({"public_url": "https://u:p@ci.example.com"}, "apk", None, 412, "external_access_invalid"),
        ({"public_url": "https://ci.example.com:x"}, "apk", None, 412, "external_access_invalid"),
        ({"artifact_delivery_url": "ftp://dl"}, "apk", None, 412, "external_access_invalid"),
        ({"public_url": "http://ci.example.com"}, "apk", None, 200, None),
        ({"public_url": "http://ci.example.com"}, "ipa", None, 412, "ios_install_requires_https"),
        (
            {"public_url": PUBLIC, "artifact_delivery_url": "http://dl.example.com"},
            "ipa",
            {"ios_app": IOS_APP},
            412,
            "ios_install_requires_https",
        ),
        ({"artifact_delivery_url": DELIVERY}, "ipa", {"ios_app": IOS_APP}, 200, None),
        *((EXTERNAL, "ipa", m, 422, "ios_artifact_not_installable") for m in INCOMPLETE_IOS),
    ],
    indirect=["artifacts_config"],
)
async def test_install_link_refusals(
    job: Job, kind: str, metadata: Any, status: int, code: str | None
) -> None:
    artifact = await job.publish(f"a.{kind}", b"a", artifact_type=kind, metadata=metadata)
    reply = await install_link(job.api, artifact["id"], job.setup.token)
    assert (reply.status, reply.code) == (status, code), reply.body


@pytest.mark.parametrize("artifacts_config", [EXTERNAL], indirect=True)
async def test_who_may_make_install_links(
    setup: Setup, job: Job, make_user: UserFactory, clock: FakeClock
) -> None:
    artifact = await job.publish("a.apk", b"a", artifact_type="apk")
    pending = (await job.reserve("p.apk", artifact_type="apk")).body["artifact"]["id"]
    outsider = await make_user(Role.DEVELOPER)
    viewer = await make_user(Role.QA_VIEWER)
    await setup.api.post(
        f"/v1/projects/{setup.project_id}/members",
        json={"user_id": viewer.user.id, "role": "viewer"},
        token=setup.token,
    )
    cases: list[tuple[str, str | None, int, str | None]] = [
        (artifact["id"], None, 401, "missing_auth"),
        (UNKNOWN, setup.token, 404, "not_found"),
        (pending, setup.token, 404, "not_found"),
        (artifact["id"], outsider.token, 404, "not_found"),
        (artifact["id"], viewer.token, 200, None),  # ReadArtifacts is enough
    ]
    for artifact_id, token, status, code in cases:
        reply = await setup.api.post(f"/v1/artifacts/{artifact_id}/install-link", token=token)
        assert (reply.status, reply.code) == (status, code), (artifact_id, token)
    clock.advance(86400)
    admin = await make_user(Role.ADMIN)
    gone = await install_link(setup.api, artifact["id"], admin.token)
    assert (gone.status, gone.code) == (410, "artifact_expired")
