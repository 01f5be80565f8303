"""The database holds no token or secret in the clear (contract §0.2, §8.4).

The test mints one of every credential and secret the API hands out or accepts, keeps
each clear value it saw, then reads every row of every table as text and looks for them.
"""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from oore.domain.integrations import SealedState
from oore.domain.tokens import hash_token
from oore.runtime import Runtime
from oore.services.scm import ScmConfig
from oore.store import Store
from oore.store.database import Connection
from tests.apple_kit import ISSUER_ID, KEY_ID, TEAM_ID, mobileprovision, new_p8
from tests.http.artifacts_kit import running_job
from tests.http.builds_kit import make_setup, repo
from tests.http.conftest import Api
from tests.oidc_kit import CLIENT_ID, REDIRECT_URI, OidcProvider, oidc_provider
from tests.scm_kit import CLIENT_SECRET, GITLAB_TOKEN, WEBHOOK_SECRET, FakeScm, fake_scm

__all__ = ["fake_scm", "oidc_provider", "repo"]


@pytest.fixture
def scm_config(fake_scm: FakeScm) -> ScmConfig:
    return fake_scm.scm_config


async def _mint_integration_secrets(
    api: Api, runtime: Runtime, store: Store, owner: str, fake_scm: FakeScm, seen: dict[str, str]
) -> None:
    """A GitHub App, a GitLab token integration, a rotated GitLab webhook secret and the
    nonce of a pending GitHub App flow."""

    async def remote(conn: Connection) -> None:
        # Integrations need remote mode; every other secret is minted by now.
        await conn.execute(
            """INSERT INTO instance_preferences (runtime_mode, updated_at) VALUES ('remote', 0)
               ON CONFLICT (singleton) DO UPDATE SET runtime_mode = 'remote'"""
        )

    await store.db.run(remote)
    app = await api.post(
        "/v1/integrations/github/complete", json={"code": "good-code"}, token=owner
    )
    assert app.status == 200, app.body
    seen["GitHub App client secret"] = CLIENT_SECRET
    seen["GitHub App webhook secret"] = WEBHOOK_SECRET
    seen["GitHub App private key"] = fake_scm.key.as_pem(private=True).decode().splitlines()[1]
    gitlab = await api.post(
        "/v1/integrations/gitlab/start",
        json={
            "host_url": fake_scm.base,
            "auth_mode": "personal_token",
            "access_token": GITLAB_TOKEN,
        },
        token=owner,
    )
    assert gitlab.status == 200, gitlab.body
    seen["GitLab access token"] = GITLAB_TOKEN
    repos = await api.get(
        f"/v1/integrations/{gitlab.body['integration']['id']}/repositories", token=owner
    )
    rotated = await api.post(
        f"/v1/integration-repositories/{repos.body['repositories'][0]['id']}/gitlab-webhook-secret",
        token=owner,
    )
    assert rotated.status == 200, rotated.body
    seen["GitLab webhook secret"] = rotated.body["webhook_secret"]
    flow = await api.post(
        "/v1/integrations/github/start",
        json={
            "webhook_url": "https://ci.example.com/v1/webhooks/github",
            "redirect_url": "https://ci.example.com/settings/integrations",
        },
        token=owner,
    )
    assert flow.status == 200, flow.body
    sealed = parse_qs(urlsplit(flow.body["create_url"]).query)["state"][0]
    assert runtime.identity.secrets is not None
    state = SealedState.loads(runtime.identity.secrets.decrypt(sealed))
    assert state is not None
    seen["integration flow nonce"] = state.nonce


async def _mint_ios_signing(api: Api, owner: str, pipeline_id: str, seen: dict[str, str]) -> None:
    """A P12 with its password, a provisioning profile and an App Store Connect key."""
    p12 = base64.b64encode(b"ios-signing-p12-bytes-example-000000001").decode()
    profile = base64.b64encode(mobileprovision("uuid-at-rest", "At rest", 1_900_000_000)).decode()
    p8 = new_p8()
    saved = await api.call(
        "PUT",
        f"/v1/pipelines/{pipeline_id}/ios-signing",
        json={
            "enabled": True,
            "mode": "hybrid",
            "team_id": TEAM_ID,
            "bundle_ids": ["com.example.app"],
            "p12": {"p12_base64": p12, "p12_password": "ios-p12-password-example-0001"},
            "provisioning_profiles": [
                {
                    "bundle_id": "com.example.app",
                    "profile_filename": "app.mobileprovision",
                    "profile_base64": profile,
                }
            ],
            "api_key": {
                "key_id": KEY_ID,
                "issuer_id": ISSUER_ID,
                "private_key_base64": base64.b64encode(p8.encode()).decode(),
            },
        },
        token=owner,
    )
    assert saved.status == 200, saved.body
    seen["iOS P12"] = p12
    seen["iOS P12 password"] = "ios-p12-password-example-0001"
    seen["iOS provisioning profile"] = profile[-200:]
    seen["App Store Connect private key"] = p8.splitlines()[1]


async def _mint_notification_secrets(api: Api, owner: str, seen: dict[str, str]) -> None:
    """A signed webhook channel, a Mattermost channel (its URL is its secret) and an
    email channel with an SMTP password."""
    root = "/v1/settings/notification-channels"
    hook_url = "https://hooks.example.com/notify/token-in-the-webhook-path-0001"
    chat_url = "https://chat.example.com/hooks/mattermost-incoming-token-0001"
    hook = await api.post(
        root,
        json={
            "name": "hook",
            "kind": "webhook",
            "events": ["build_failed"],
            "url": hook_url,
            "secret": "notification-hmac-secret-000000000001",
        },
        token=owner,
    )
    assert hook.status == 201, hook.body
    chat = await api.post(
        root,
        json={"name": "chat", "kind": "mattermost", "events": ["build_failed"], "url": chat_url},
        token=owner,
    )
    assert chat.status == 201, chat.body
    mail = await api.post(
        root,
        json={
            "name": "mail",
            "kind": "email",
            "events": ["build_failed"],
            "email": {
                "smtp_host": "smtp.example.com",
                "username": "ci",
                "password": "smtp-password-example-000000000001",
                "from_address": "ci@example.com",
                "to_addresses": ["dev@example.com"],
            },
        },
        token=owner,
    )
    assert mail.status == 201, mail.body
    seen["notification webhook URL token"] = "token-in-the-webhook-path-0001"
    seen["notification webhook secret"] = "notification-hmac-secret-000000000001"
    seen["Mattermost incoming-webhook token"] = "mattermost-incoming-token-0001"
    seen["SMTP password"] = "smtp-password-example-000000000001"


async def _every_row_as_text(store: Store) -> list[str]:
    async def dump(conn: Connection) -> list[str]:
        tables = await conn.fetch(
            """SELECT quote_ident(table_name) AS name FROM information_schema.tables
               WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"""
        )
        rows: list[str] = []
        for table in tables:
            # Identifiers cannot be $n parameters; quote_ident made this one safe.
            found = await conn.fetch(f"SELECT t::text AS row FROM {table['name']} t")
            rows.extend(r["row"] for r in found)
        return rows

    return await store.db.run(dump)


async def test_no_credential_or_secret_is_stored_in_the_clear(
    api: Api,
    runtime: Runtime,
    store: Store,
    repo: Path,
    oidc_provider: OidcProvider,
    fake_scm: FakeScm,
) -> None:
    seen: dict[str, str] = {}

    minted = await runtime.identity.mint_bootstrap_token(900)
    seen["bootstrap token"] = minted.token
    verified = await api.post("/v1/setup/bootstrap-token/verify", json={"token": minted.token})
    assert verified.status == 200, verified.body
    seen["setup session"] = verified.body["session_token"]

    login = await api.post("/v1/auth/local/login", json={})
    assert login.status == 200, login.body
    owner = login.body["session_token"]
    seen["user session"] = owner

    s3_key, s3_secret = "AKIAEXAMPLEKEY000001", "s3-secret-example-value-000000000001"
    saved = await api.call(
        "PUT",
        "/v1/settings/artifact-storage",
        json={
            "provider": "s3",
            "s3_bucket": "bucket",
            "access_key_id": s3_key,
            "secret_access_key": s3_secret,
        },
        token=owner,
    )
    assert saved.status == 200, saved.body
    seen["S3 access key id"] = s3_key
    seen["S3 secret access key"] = s3_secret
    back = await api.call(
        "PUT",
        "/v1/settings/artifact-storage",
        json={"provider": "local", "local_base_dir": str(repo.parent / "artifacts")},
        token=owner,
    )
    assert back.status == 200, back.body

    client_secret = "oidc-client-secret-example-0000000001"
    configured = await api.call(
        "PUT",
        "/v1/settings/external-access/oidc",
        json={
            "issuer_url": oidc_provider.issuer,
            "client_id": CLIENT_ID,
            "client_secret": client_secret,
        },
        token=owner,
    )
    assert configured.status == 200, configured.body
    seen["OIDC client secret"] = client_secret
    started = await api.get(f"/v1/auth/oidc/start?redirect_uri={REDIRECT_URI}")
    assert started.status == 200, started.body
    sign_in = parse_qs(urlsplit(started.body["authorization_url"]).query)
    seen["OIDC sign-in state"] = sign_in["state"][0]
    seen["OIDC sign-in nonce"] = sign_in["nonce"][0]
    proxy_secret = "trusted-proxy-shared-secret-00000001"
    warpgate_ticket = "warpgate-access-ticket-000000000001"
    proxied = await api.call(
        "PUT",
        "/v1/settings/external-access/trusted-proxy",
        json={"shared_secret": proxy_secret, "warpgate_ticket": warpgate_ticket},
        token=owner,
    )
    assert proxied.status == 200, proxied.body
    assert proxied.body["settings"]["warpgate_ticket_source"] == "database"
    seen["trusted-proxy shared secret"] = proxy_secret
    seen["Warpgate ticket"] = warpgate_ticket
    api_token = await api.post(
        "/v1/api-tokens", json={"name": "cli", "role": "developer"}, token=owner
    )
    assert api_token.status == 200, api_token.body
    seen["API token"] = api_token.body["token"]

    enrollment = await api.post(
        "/v1/runner-enrollment-tokens", json={"label": "fleet"}, token=owner
    )
    assert enrollment.status == 201, enrollment.body
    seen["enrollment token"] = enrollment.body["token"]

    setup = await make_setup(api, owner, repo)
    variable_secret = "server-side-secret-variable-0000000001"
    variable_plain = "server-side-plain-variable-0000000001"
    for name, value, secret in (
        ("DEPLOY", variable_secret, True),
        ("PLAIN", variable_plain, False),
    ):
        created = await api.post(
            f"/v1/pipelines/{setup.pipeline_id}/variables",
            json={"name": name, "value": value, "secret": secret},
            token=owner,
        )
        assert created.status == 201, created.body
    seen["secret variable"] = variable_secret
    seen["plain variable (encrypted too)"] = variable_plain
    await _mint_ios_signing(api, owner, setup.pipeline_id, seen)
    keystore = b"android-keystore-bytes-example-0000000001"
    store_password, key_password = "keystore-password-00000001", "key-password-0000000000001"
    key_alias = "upload-key-alias-0000000001"
    signing = await api.call(
        "PUT",
        f"/v1/pipelines/{setup.pipeline_id}/android-signing",
        json={
            "release": {
                "enabled": True,
                "keystore_base64": base64.b64encode(keystore).decode(),
                "store_password": store_password,
                "key_alias": key_alias,
                "key_password": key_password,
            }
        },
        token=owner,
    )
    assert signing.status == 200, signing.body
    seen["Android keystore (base64)"] = base64.b64encode(keystore).decode()
    seen["Android keystore (bytes as text)"] = keystore.decode()
    seen["Android store password"] = store_password
    seen["Android key password"] = key_password
    seen["Android key alias"] = key_alias
    job = await running_job(setup)
    seen["runner token"] = job.runner.token
    seen["signing token"] = job.signing_token
    fetched = await api.get(
        f"/v1/runners/{job.runner.id}/jobs/{job.build_id}/android-signing",
        token=job.runner.token,
        headers={"X-Oore-Signing-Token": job.signing_token},
    )
    assert fetched.status == 200 and fetched.body["release"]["key_password"] == key_password
    ios = await api.get(
        f"/v1/runners/{job.runner.id}/jobs/{job.build_id}/ios-signing",
        token=job.runner.token,
        headers={"X-Oore-Signing-Token": job.signing_token},
    )
    assert ios.status == 200 and ios.body["bundle"]["p12_password"] == seen["iOS P12 password"]
    # A build that prints the P12 password: the stored log holds only the mask.
    p12_line = {"sequence": 2, "content": f"p12={seen['iOS P12 password']}", "stream": "stdout"}
    assert (await job.runner.logs(job.build_id, [p12_line])).status == 200
    # A build that prints a signing password: the stored log holds only the mask.
    leaked = await job.runner.logs(
        job.build_id, [{"sequence": 1, "content": f"pw={store_password}", "stream": "stdout"}]
    )
    assert leaked.status == 200, leaked.body
    # The build prints the secret: the stored log holds only the mask.
    printed = await job.runner.logs(
        job.build_id, [{"sequence": 0, "content": f"key={variable_secret}", "stream": "stdout"}]
    )
    assert printed.status == 200, printed.body
    reserved = await job.reserve("app.txt")
    assert reserved.status == 200, reserved.body
    seen["upload URL token"] = reserved.body["upload_url"].rstrip("/").rsplit("/", 1)[-1]

    artifact = await job.publish("other.txt", b"payload")
    link = await job.link(artifact["id"])
    assert link.status == 200, link.body
    seen["download URL token"] = link.body["download_url"].rstrip("/").rsplit("/", 1)[-1]
    scoped = await api.post(f"/v1/artifacts/{artifact['id']}/scoped-token", token=owner)
    assert scoped.status == 200, scoped.body
    seen["scoped download token"] = scoped.body["token"]
    stream = await api.post(f"/v1/builds/{job.build_id}/stream-token", token=owner)
    assert stream.status == 200, stream.body
    seen["stream token"] = stream.body["token"]
    await _mint_integration_secrets(api, runtime, store, owner, fake_scm, seen)
    await _mint_notification_secrets(api, owner, seen)

    rows = await _every_row_as_text(store)
    # The PKCE verifier never leaves the server: read it back from the pending sign-in.
    pending = await runtime.signin.pending.take(seen["OIDC sign-in state"])
    assert pending is not None
    seen["PKCE verifier"] = pending.verifier
    assert all(len(value) >= 16 for value in seen.values()), seen
    leaks = sorted(name for name, value in seen.items() if any(value in row for row in rows))
    assert leaks == []
    # The scan does see stored text: the owner's address and the session's hash are there.
    assert any("owner@local" in row for row in rows)
    assert any(hash_token(owner) in row for row in rows)
