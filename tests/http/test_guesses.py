"""Credential guessing over HTTP: a client whose credentials keep failing is answered 429
``too_many_attempts`` (with ``Retry-After``) for every credential-bearing request until the
window passes; credentials that checked out before still work from its address, other
clients are untouched, and ``/metrics`` shows every rate limit without an address."""

from __future__ import annotations

import re

from oore.domain.rate_limit import GUESS_LIMIT, GUESS_WINDOW
from oore.domain.tokens import new_token
from tests.http.builds_kit import Setup, repo, setup
from tests.http.channel_kit import RawChannel
from tests.http.conftest import Api, FakeClock, Reply
from tests.http.lean.test_log_stream import exchange
from tests.http.sse_kit import served
from tests.http.test_runners import register

__all__ = ["repo", "served", "setup"]

MISSING = "00000000-0000-4000-8000-000000000000"

ATTACKER = ("203.0.113.7", 40000)
NEIGHBOUR = ("198.51.100.9", 40000)


async def guess(api: Api, peer: tuple[str, int] = ATTACKER) -> Reply:
    return await api.get("/v1/projects", token=new_token(), peer=peer)


async def metric(api: Api, name: str, **labels: str) -> float:
    page = await api.get("/metrics")
    assert page.status == 200
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    found = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", page.body, re.M)
    assert found, f"{name}{{{wanted}}} not in /metrics"
    return float(found.group(1))


async def test_a_guessing_client_is_locked_out_until_the_window_passes(
    api: Api, owner_token: str, clock: FakeClock
) -> None:
    assert (await api.get("/v1/projects", token=owner_token, peer=ATTACKER)).status == 200
    for _ in range(GUESS_LIMIT):
        refused = await guess(api)
        assert (refused.status, refused.code) == (401, "invalid_session")
    locked = await guess(api)
    assert (locked.status, locked.code) == (429, "too_many_attempts")
    assert locked.headers["Retry-After"] == str(GUESS_WINDOW)
    assert "request_id" in locked.body
    # Every credential-bearing request of that client, whatever the credential's kind.
    stream = await api.get(
        f"/v1/builds/{new_token()}/logs/stream?token={new_token()}", peer=ATTACKER
    )
    assert (stream.status, stream.code) == (429, "too_many_attempts")
    download = await api.get(f"/install/artifact/{new_token()}", peer=ATTACKER)
    assert (download.status, download.code) == (429, "too_many_attempts")
    # A session that checked out before still works from the same address (a shared NAT).
    assert (await api.get("/v1/projects", token=owner_token, peer=ATTACKER)).status == 200
    # A request without a credential is not refused; another client is not locked.
    assert (await api.get("/v1/projects", peer=ATTACKER)).code == "missing_auth"
    assert (await api.get("/healthz", peer=ATTACKER)).status == 200
    assert (await guess(api, NEIGHBOUR)).status == 401
    clock.advance(GUESS_WINDOW - 1)
    assert (await guess(api)).headers["Retry-After"] == "1"
    clock.advance(1)
    assert (await guess(api)).status == 401
    assert await metric(api, "oore_rate_limited_total", limit="credential_guess") == 4


async def test_the_client_is_the_forwarded_address_behind_a_loopback_proxy(
    api: Api, owner_token: str
) -> None:
    behind = {"X-Forwarded-For": "192.0.2.44"}
    for _ in range(GUESS_LIMIT):
        await api.get("/v1/projects", token=new_token(), headers=behind)
    assert (await api.get("/v1/projects", token=new_token(), headers=behind)).status == 429
    other = {"X-Forwarded-For": "192.0.2.45"}
    assert (await api.get("/v1/projects", token=new_token(), headers=other)).status == 401
    # The proxy itself (loopback, nothing forwarded) is another client.
    assert (await api.get("/v1/projects", token=owner_token)).status == 200


async def test_every_kind_of_credential_counts_toward_one_limit(api: Api, setup: Setup) -> None:
    runner = await register(api, setup.token, "r1")
    beat = await api.post(
        f"/v1/runners/{runner['id']}/heartbeat", json={"status": "online"}, token=runner["token"]
    )
    assert beat.status == 204, beat.body
    kinds = [
        lambda: api.get(f"/install/artifact/{new_token()}", peer=ATTACKER),
        lambda: api.get(f"/v1/artifacts/download/{new_token()}", peer=ATTACKER),
        lambda: api.post(
            f"/v1/runners/{runner['id']}/heartbeat",
            json={"status": "online"},
            token=new_token(),
            peer=ATTACKER,
        ),
        lambda: api.post("/v1/auth/logout", token=new_token(), peer=ATTACKER),
        lambda: api.get(f"/v1/projects/{setup.project_id}", token=new_token(), peer=ATTACKER),
    ]
    for n in range(GUESS_LIMIT):
        answer = await kinds[n % len(kinds)]()
        assert answer.status in (401, 404), answer.body
    failed = await api.get(f"/v1/artifacts/download/{new_token()}", peer=ATTACKER)
    assert (failed.status, failed.code) == (429, "too_many_attempts")
    # The runner whose token checked out before keeps heartbeating from that address.
    beat = await api.post(
        f"/v1/runners/{runner['id']}/heartbeat",
        json={"status": "online"},
        token=runner["token"],
        peer=ATTACKER,
    )
    assert beat.status == 204, beat.body


async def test_webhooks_never_count_nor_lock(api: Api, owner_token: str) -> None:
    for _ in range(GUESS_LIMIT + 5):
        answer = await api.post(
            "/v1/webhooks/github",
            data=b"{}",
            headers={
                "X-Hub-Signature-256": "sha256=" + "0" * 64,
                "Authorization": f"Bearer {new_token()}",
                "Content-Type": "application/json",
            },
            peer=ATTACKER,
        )
        assert answer.status != 429
    assert (await guess(api)).status == 401


async def test_metrics_show_every_limit_and_no_address(api: Api, owner_token: str) -> None:
    for _ in range(GUESS_LIMIT + 1):
        await guess(api)
    assert (
        await metric(api, "oore_rate_limit_limit", limit="credential_guess", scope="client") == 20
    )
    assert await metric(api, "oore_rate_limit_window_seconds", limit="credential_guess") == 60
    assert await metric(api, "oore_rate_limited_total", limit="credential_guess") == 1
    assert await metric(api, "oore_rate_limit_limit", limit="local_login", scope="client") == 20
    assert await metric(api, "oore_rate_limit_limit", limit="local_login", scope="global") == 60
    assert await metric(api, "oore_rate_limit_limit", limit="oidc_start", scope="client") == 20
    assert await metric(api, "oore_rate_limit_limit", limit="oidc_start", scope="global") == 120
    assert await metric(api, "oore_rate_limit_limit", limit="bootstrap", scope="client") == 5
    assert await metric(api, "oore_rate_limit_window_seconds", limit="bootstrap") == 0
    # The owner's login was the first local login: 19 more are let in, the next refused.
    for _ in range(19):
        await api.post("/v1/auth/local/login", json={})
    refused = await api.post("/v1/auth/local/login", json={})
    assert (refused.status, refused.code) == (429, "local_login_rate_limited")
    assert await metric(api, "oore_rate_limited_total", limit="local_login") == 1
    page = (await api.get("/metrics")).body
    assert ATTACKER[0] not in page and "127.0.0.1" not in page


async def test_the_lean_listener_counts_and_refuses_with_the_same_limiter(
    api: Api, owner_token: str, served: str
) -> None:
    runner = await register(api, owner_token, "r1")
    beat = await api.post(
        f"/v1/runners/{runner['id']}/heartbeat", json={"status": "online"}, token=runner["token"]
    )
    assert beat.status == 204, beat.body
    stream = f"/v1/builds/{MISSING}/logs/stream?token="
    for n in range(GUESS_LIMIT):
        if n % 2:
            answer = await exchange(served, stream + new_token())
            assert (answer.status, answer.json()["code"]) == (401, "invalid_stream_token")
        else:
            channel = await RawChannel.open(served, runner["id"], new_token())
            assert channel.status == 401
            await channel.aclose()
    locked = await exchange(served, stream + new_token())
    assert (locked.status, locked.json()["code"]) == (429, "too_many_attempts")
    assert locked.header("retry-after") == str(GUESS_WINDOW)
    channel = await RawChannel.open(served, runner["id"], new_token())
    assert (channel.status, channel.headers.get("retry-after")) == (429, str(GUESS_WINDOW))
    await channel.aclose()
    # The runner's own token, which checked out before, still opens its channel.
    channel = await RawChannel.open(served, runner["id"], runner["token"])
    assert channel.status == 101
    await channel.aclose()
    # The Quart side of the same port refuses that client too: one limiter.
    assert (await guess(api, ("127.0.0.1", 40000))).status == 429
