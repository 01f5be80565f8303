"""End to end: a real ``oored`` set up in remote + OIDC mode against a real OpenID Provider
on loopback, then the owner and an invited user signing in and out through it."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import trio

from tests.e2e.conftest import DaemonFactory
from tests.oidc_kit import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, OidcProvider, oidc_provider

__all__ = ["oidc_provider"]


def _mint_bootstrap_token(data_dir: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "oore.cli", "--data-dir", data_dir, "setup", "bootstrap-token"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _ok(reply: httpx.Response, status: int = 200) -> Any:
    assert reply.status_code == status, reply.text
    return reply.json()


async def _sign_in(client: httpx.AsyncClient, provider: OidcProvider, login_hint: str) -> Any:
    started = _ok(await client.get("/v1/auth/oidc/start", params={"redirect_uri": REDIRECT_URI}))
    code, state = await provider.authorize(started["authorization_url"], login_hint)
    return _ok(await client.post("/v1/auth/oidc/callback", json={"code": code, "state": state}))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_remote_oidc_setup_and_sign_in(
    make_daemon: DaemonFactory, oidc_provider: OidcProvider
) -> None:
    daemon = await trio.to_thread.run_sync(make_daemon().start)
    bootstrap = await trio.to_thread.run_sync(_mint_bootstrap_token, str(daemon.data_dir))
    async with httpx.AsyncClient(base_url=daemon.url, timeout=30.0) as client:
        # Setup: bootstrap token -> setup session -> remote mode -> provider -> owner.
        verify = await client.post("/v1/setup/bootstrap-token/verify", json={"token": bootstrap})
        setup = _ok(verify)
        setup_auth = _bearer(setup["session_token"])
        chosen = _ok(
            await client.post(
                "/v1/setup/preferences", json={"runtime_mode": "remote"}, headers=setup_auth
            )
        )
        assert (chosen["runtime_mode"], chosen["remote_auth_mode"]) == ("remote", "oidc")
        configured = _ok(
            await client.post(
                "/v1/setup/oidc/configure",
                json={
                    "issuer_url": oidc_provider.issuer,
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                },
                headers=setup_auth,
            )
        )
        assert configured["discovered_issuer"] == oidc_provider.issuer
        started = _ok(
            await client.post(
                "/v1/setup/owner/start-oidc",
                json={"redirect_uri": REDIRECT_URI},
                headers=setup_auth,
            )
        )
        code, state = await oidc_provider.authorize(started["authorization_url"], "owner-sub")
        verified = _ok(
            await client.post("/v1/setup/owner/verify-oidc", json={"code": code, "state": state})
        )
        assert (verified["state"], verified["owner_email"], verified["oidc_subject"]) == (
            "owner_created",
            "owner@example.com",
            "owner-sub",
        )
        done = _ok(await client.post("/v1/setup/complete", headers=setup_auth))
        assert done["state"] == "ready"
        status = _ok(await client.get("/v1/public/setup-status"))
        assert (status["state"], status["runtime_mode"], status["is_configured"]) == (
            "ready",
            "remote",
            True,
        )

        # The owner signs in through the provider.
        owner = await _sign_in(client, oidc_provider, "owner-sub")
        assert (owner["user"]["email"], owner["user"]["role"]) == ("owner@example.com", "owner")
        owner_auth = _bearer(owner["session_token"])
        me = _ok(await client.get("/v1/users/me", headers=owner_auth))
        assert (me["user"]["role"], me["user"]["status"]) == ("owner", "active")

        # An invited developer's first sign-in activates the invitation.
        invited = _ok(
            await client.post(
                "/v1/users/invite",
                json={"email": "dev@example.com", "role": "developer"},
                headers=owner_auth,
            ),
            201,
        )
        assert invited["user"]["status"] == "invited"
        developer = await _sign_in(client, oidc_provider, "dev-sub")
        assert developer["user"]["user_id"] == invited["user"]["id"]
        assert (developer["user"]["oidc_subject"], developer["user"]["role"]) == (
            "dev-sub",
            "developer",
        )
        dev_auth = _bearer(developer["session_token"])
        me = _ok(await client.get("/v1/users/me", headers=dev_auth))
        assert (me["user"]["email"], me["user"]["status"]) == ("dev@example.com", "active")
        assert me["user"]["avatar_url"] == "https://img.example.com/dev.png"

        # Signing out ends exactly that session.
        assert _ok(await client.post("/v1/auth/logout", headers=dev_auth)) == {"ok": True}
        gone = await client.get("/v1/users/me", headers=dev_auth)
        assert (gone.status_code, gone.json()["code"]) == (401, "invalid_session")
        assert _ok(await client.get("/v1/users/me", headers=owner_auth))["user"]["role"] == "owner"
        assert _ok(await client.post("/v1/auth/logout", headers=owner_auth)) == {"ok": True}
        gone = await client.get("/v1/users/me", headers=owner_auth)
        assert (gone.status_code, gone.json()["code"]) == (401, "invalid_session")
    assert await trio.to_thread.run_sync(daemon.stop) == 0
