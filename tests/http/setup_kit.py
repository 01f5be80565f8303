"""Walking an instance through setup over HTTP, shared by the setup and settings tests."""

from __future__ import annotations

from typing import Any

from oore.runtime import Runtime
from oore.store import Store
from oore.store.database import Connection
from tests.http.conftest import REMOTE, Api, Reply

SECRET = "proxy-shared-secret"
PROXY_CIDR = "203.0.113.0/24"


async def setup_session(api: Api, runtime: Runtime) -> str:
    """Mint a bootstrap token out of band and exchange it for a setup session token."""
    minted = await runtime.identity.mint_bootstrap_token(900)
    reply = await api.post("/v1/setup/bootstrap-token/verify", json={"token": minted.token})
    assert reply.status == 200, reply.body
    token: str = reply.body["session_token"]
    return token


async def choose(api: Api, token: str | None, runtime_mode: str, auth: str | None = None) -> Reply:
    body: dict[str, Any] = {"runtime_mode": runtime_mode}
    if auth is not None:
        body["remote_auth_mode"] = auth
    return await api.post("/v1/setup/preferences", json=body, token=token)


async def configure_proxy(api: Api, token: str | None, **body: Any) -> Reply:
    return await api.post("/v1/setup/trusted-proxy/configure", json=body, token=token)


def vouch(
    email: str | None, secret: str | None = SECRET, header: str = "X-Oore-User-Email"
) -> dict[str, str]:
    """The headers a trusted proxy adds to a request it forwards."""
    headers: dict[str, str] = {}
    if secret is not None:
        headers["X-Oore-Trusted-Proxy-Secret"] = secret
    if email is not None:
        headers[header] = email
    return headers


async def proxy_ready(api: Api, runtime: Runtime, owner: str = "owner@example.com") -> None:
    """A remote instance behind a trusted proxy, setup complete with ``owner``."""
    token = await setup_session(api, runtime)
    assert (await choose(api, token, "remote", "trusted_proxy")).status == 200
    configured = await configure_proxy(
        api, token, trusted_proxy_cidrs=[PROXY_CIDR], shared_secret=SECRET
    )
    assert configured.status == 200, configured.body
    claimed = await api.post(
        "/v1/setup/owner/claim-trusted-proxy", token=token, headers=vouch(owner), peer=REMOTE
    )
    assert claimed.status == 200, claimed.body
    done = await api.post("/v1/setup/complete", token=token)
    assert done.status == 200, done.body


async def store_oidc_config(store: Store, now: int, *, secret: str | None = None) -> None:
    """Stand in for the OIDC configure step (another endpoint): a saved provider row."""

    async def insert(conn: Connection) -> None:
        await conn.execute(
            """INSERT INTO oidc_config (issuer_url, client_id, client_secret_enc, configured_at,
                   updated_at) VALUES ('https://idp.example.com', 'oore', $1, $2, $2)""",
            secret,
            now,
        )
        await conn.execute("UPDATE instance SET state = 'idp_configured' WHERE state <> 'ready'")

    await store.db.run(insert)


async def actions(store: Store) -> list[str]:
    """Audit actions, oldest first."""
    return [entry.action for entry in reversed(await store.audit.recent(200))]
