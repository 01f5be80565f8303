from __future__ import annotations

import trio

from oore.domain.setup import Preferences, RuntimeMode
from oore.runtime import Runtime
from oore.store import Store
from tests.http.conftest import Api, FakeClock


async def test_fresh_instance_reports_bootstrap_pending(api: Api) -> None:
    reply = await api.get("/v1/public/setup-status")
    assert reply.status == 200
    body = reply.body
    assert body["state"] == "bootstrap_pending"
    assert body["runtime_mode"] == "local" and body["remote_auth_mode"] == "oidc"
    assert body["setup_mode"] is True and body["is_configured"] is False
    assert len(body["instance_id"]) == 36


async def test_status_follows_preferences(api: Api, store: Store, clock: FakeClock) -> None:
    await store.instance.set_preferences(Preferences(runtime_mode=RuntimeMode.REMOTE), clock.now())
    assert (await api.get("/v1/public/setup-status")).body["runtime_mode"] == "remote"


async def test_verify_without_a_minted_token_is_500_no_bootstrap_token(api: Api) -> None:
    reply = await api.post("/v1/setup/bootstrap-token/verify", json={"token": "0" * 64})
    assert (reply.status, reply.code) == (500, "no_bootstrap_token")


async def test_right_token_opens_a_setup_session_once(api: Api, runtime: Runtime) -> None:
    minted = await runtime.identity.mint_bootstrap_token(900)
    reply = await api.post("/v1/setup/bootstrap-token/verify", json={"token": minted.token})
    assert reply.status == 200
    assert len(reply.body["session_token"]) == 64
    assert reply.body["expires_at"] > minted.expires_at - 900
    again = await api.post("/v1/setup/bootstrap-token/verify", json={"token": minted.token})
    assert (again.status, again.code) == (410, "token_consumed")


async def test_expired_token_is_410(api: Api, runtime: Runtime, clock: FakeClock) -> None:
    minted = await runtime.identity.mint_bootstrap_token(60)
    clock.advance(60)
    reply = await api.post("/v1/setup/bootstrap-token/verify", json={"token": minted.token})
    assert (reply.status, reply.code) == (410, "token_expired")


async def test_wrong_guesses_lock_out_after_five(api: Api, runtime: Runtime) -> None:
    minted = await runtime.identity.mint_bootstrap_token(900)
    seen = []
    for _ in range(6):
        reply = await api.post("/v1/setup/bootstrap-token/verify", json={"token": "f" * 64})
        seen.append((reply.status, reply.code))
    assert seen == [(401, "invalid_token")] * 5 + [(429, "too_many_attempts")]
    ok = await api.post("/v1/setup/bootstrap-token/verify", json={"token": minted.token})
    assert ok.status == 200


async def test_minting_again_resets_the_budget(api: Api, runtime: Runtime) -> None:
    await runtime.identity.mint_bootstrap_token(900)
    for _ in range(6):
        await api.post("/v1/setup/bootstrap-token/verify", json={"token": "f" * 64})
    await runtime.identity.mint_bootstrap_token(900)
    reply = await api.post("/v1/setup/bootstrap-token/verify", json={"token": "f" * 64})
    assert (reply.status, reply.code) == (401, "invalid_token")


async def test_concurrent_verifications_consume_the_token_once(api: Api, runtime: Runtime) -> None:
    minted = await runtime.identity.mint_bootstrap_token(900)
    statuses: list[int] = []

    async def verify() -> None:
        reply = await api.post("/v1/setup/bootstrap-token/verify", json={"token": minted.token})
        statuses.append(reply.status)

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(verify)
    assert sorted(statuses) == [200] + [410] * 7


async def test_verify_after_setup_is_409_already_configured(
    api: Api, runtime: Runtime, owner_token: str
) -> None:
    reply = await api.post("/v1/setup/bootstrap-token/verify", json={"token": "0" * 64})
    assert (reply.status, reply.code) == (409, "already_configured")


async def test_minting_after_setup_is_refused(runtime: Runtime, owner_token: str) -> None:
    import pytest

    from oore.errors import ApiError

    with pytest.raises(ApiError) as caught:
        await runtime.identity.mint_bootstrap_token(900)
    assert caught.value.code == "already_configured"
