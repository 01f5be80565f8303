"""Two daemons serving one database over loopback: what is changed through one daemon's
API is what the other answers with (network settings within a second; sessions and API
tokens at once, since they are read from the database on every request)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import trio

from oore.domain.crypto import SecretBox
from oore.http.app import create_app
from oore.runtime import open_runtime
from oore.services.artifact_storage import ArtifactsConfig
from oore.services.clock import SystemClock
from oore.store import open_store
from tests.http.sse_kit import serving

CLOCK = SystemClock()
KEY = SecretBox(bytes(range(32)))
BOUND = 20.0  # seconds a change may take to reach the other daemon on a loaded machine
NETWORK = "/v1/settings/external-access/network"
ORIGIN = "https://new.example.com"
PUBLIC = "https://ci.example.org"


@asynccontextmanager
async def daemon(database_url: str, data_dir: Path) -> AsyncIterator[str]:
    """One daemon on the shared database, served on a loopback port (its URL)."""
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(database_url, pool_size=4))
        await store.instance.ensure(CLOCK.now())
        runtime = await stack.enter_async_context(
            open_runtime(
                store, CLOCK, artifacts_config=ArtifactsConfig(data_dir=data_dir, secrets=KEY)
            )
        )
        yield await stack.enter_async_context(serving(create_app(runtime.app_services(store))))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(client: httpx.AsyncClient, url: str) -> str:
    reply = await client.post(f"{url}/v1/auth/local/login", json={})
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["session_token"]
    return token


async def preflight_allowed(client: httpx.AsyncClient, url: str) -> bool:
    """Does the daemon at ``url`` let a page of ORIGIN call the API?"""
    reply = await client.options(
        f"{url}/v1/projects",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert reply.status_code == 204
    return "access-control-allow-methods" in reply.headers


async def answers_to_public_name(client: httpx.AsyncClient, url: str) -> bool:
    reply = await client.get(f"{url}/healthz", headers={"Host": "ci.example.org"})
    return reply.status_code == 200


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Until another daemon makes ``check()`` true (bounded)."""
    with trio.fail_after(BOUND):
        while not await check():  # noqa: ASYNC110
            await trio.sleep(0.02)


async def test_network_settings_saved_through_one_daemon_are_what_the_other_answers_with(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        daemon(database_url, tmp_path / "a") as a,
        daemon(database_url, tmp_path / "b") as b,
        httpx.AsyncClient(timeout=10) as client,
    ):
        token = await login(client, a)
        assert not await preflight_allowed(client, b)
        assert not await answers_to_public_name(client, b)
        saved = await client.put(
            f"{a}{NETWORK}",
            json={"public_url": PUBLIC, "allowed_origins": [ORIGIN, PUBLIC]},
            headers=bearer(token),
        )
        assert saved.status_code == 200, saved.text

        await until(lambda: preflight_allowed(client, b))
        assert await answers_to_public_name(client, b)
        seen = await client.get(f"{b}{NETWORK}", headers=bearer(token))
        assert seen.json() == saved.json()
        simple = await client.get(f"{b}/healthz", headers={"Origin": ORIGIN})
        assert simple.headers["access-control-allow-origin"] == ORIGIN


async def _refused_soon(client: httpx.AsyncClient, url: str, token: str) -> httpx.Response:
    """The answer of ``url`` to ``token`` once it is refused: at the other daemon's notice,
    and never later than a credential is trusted unchecked (5 s)."""
    with trio.fail_after(6):
        while True:
            answer = await client.get(url, headers=bearer(token))
            if answer.status_code != 200:
                return answer
            await trio.sleep(0.02)


async def test_a_session_or_api_token_ended_on_one_daemon_is_refused_by_the_other_at_its_notice(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        daemon(database_url, tmp_path / "a") as a,
        daemon(database_url, tmp_path / "b") as b,
        httpx.AsyncClient(timeout=10) as client,
    ):
        token = await login(client, a)
        made = await client.post(
            f"{a}/v1/api-tokens", json={"name": "ci", "role": "developer"}, headers=bearer(token)
        )
        assert made.status_code == 200, made.text
        api_token = made.json()["token"]
        assert (await client.get(f"{b}/v1/users/me", headers=bearer(api_token))).status_code == 200
        revoked = await client.delete(
            f"{a}/v1/api-tokens/{made.json()['id']}", headers=bearer(token)
        )
        assert revoked.status_code == 200
        refused = await _refused_soon(client, f"{b}/v1/users/me", api_token)
        assert (refused.status_code, refused.json()["code"]) == (401, "invalid_session")

        assert (await client.get(f"{b}/v1/users/me", headers=bearer(token))).status_code == 200
        assert (await client.post(f"{a}/v1/auth/logout", headers=bearer(token))).status_code == 200
        refused = await _refused_soon(client, f"{b}/v1/users/me", token)
        assert (refused.status_code, refused.json()["code"]) == (401, "invalid_session")
