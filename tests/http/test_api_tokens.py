"""API tokens (contract §0.2, §1.2, §2.14): creation rules, lists, revocation, and what a
token may do: the lower of its role and its creator's current role."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from oore.domain.tokens import hash_token, looks_like_token
from oore.domain.users import Role
from oore.store import Store
from tests.http.builds_kit import Setup, repo, setup
from tests.http.conftest import Api, FakeClock, Reply, UserFactory
from tests.http.test_build_logs import Events, chunks, claimed, read_stream, served, until

__all__ = ["repo", "served", "setup"]

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def said(reply: Reply) -> tuple[int, str | None]:
    return reply.status, reply.code


async def create(api: Api, token: str, **body: Any) -> Reply:
    return await api.post(
        "/v1/api-tokens", json={"name": "ci", "role": "developer", **body}, token=token
    )


async def made(api: Api, token: str, **body: Any) -> dict[str, Any]:
    reply = await create(api, token, **body)
    assert reply.status == 200, reply.body
    created: dict[str, Any] = reply.body
    return created


async def patch_role(api: Api, token: str, user_id: str, role: str) -> None:
    reply = await api.call("PATCH", f"/v1/users/{user_id}/role", json={"role": role}, token=token)
    assert reply.status == 200, reply.body


# -- creation ------------------------------------------------------------------------------


async def test_created_token_is_shown_once(
    api: Api, make_user: UserFactory, store: Store, clock: FakeClock
) -> None:
    developer = await make_user(Role.DEVELOPER)
    body = await made(api, developer.token, name="  laptop ", expires_at=clock.now() + 3600)
    assert set(body) == {"id", "name", "prefix", "role", "created_at", "expires_at", "token"}
    assert looks_like_token(body["token"]) and body["prefix"] == body["token"][:8]
    assert (body["name"], body["role"], body["created_at"]) == ("laptop", "developer", clock.now())
    assert body["expires_at"] == clock.now() + 3600
    forever = await made(api, developer.token)
    assert forever["expires_at"] is None
    listed = await api.get("/v1/api-tokens", token=developer.token)
    assert listed.body["total"] == 2
    assert all("token" not in t for t in listed.body["tokens"])
    assert {t["id"] for t in listed.body["tokens"]} == {body["id"], forever["id"]}
    found = await store.api_tokens.holder(hash_token(body["token"]), clock.now())
    assert found is not None and found[0].prefix == body["prefix"]  # stored as its hash
    entry = (await store.audit.recent(1))[0]
    assert (entry.action, entry.resource_type, entry.resource_id, entry.actor_id) == (
        "api_token_created",
        "api_token",
        forever["id"],
        developer.user.id,
    )


async def test_creation_errors(api: Api, make_user: UserFactory, clock: FakeClock) -> None:
    developer = await make_user(Role.DEVELOPER)
    for name in ("", "   ", "x" * 257):
        assert said(await create(api, developer.token, name=name)) == (400, "invalid_name")
    assert said(await create(api, developer.token, role="boss")) == (400, "invalid_role")
    assert said(await create(api, developer.token, role="admin")) == (403, "role_escalation")
    past = await create(api, developer.token, expires_at=clock.now())
    assert said(past) == (400, "invalid_input")
    assert said(await create(api, developer.token, expires_at="soon")) == (400, "invalid_request")
    qa = await make_user(Role.QA_VIEWER)
    assert said(await create(api, qa.token, role="qa_viewer")) == (403, "permission_denied")
    assert said(await api.get("/v1/api-tokens", token=qa.token)) == (403, "permission_denied")
    revoke = await api.call("DELETE", f"/v1/api-tokens/{'0' * 8}", token=qa.token)
    assert said(revoke) == (403, "permission_denied")


async def test_routes_refuse_bad_credentials(
    api: Api, refused_sessions: list[tuple[str | None, str]]
) -> None:
    for token, code in refused_sessions:
        assert said(await api.get("/v1/api-tokens", token=token)) == (401, code)
        reply = await api.post(
            "/v1/api-tokens", json={"name": "n", "role": "qa_viewer"}, token=token
        )
        assert said(reply) == (401, code)


# -- lists and revocation ------------------------------------------------------------------


async def test_lists_show_others_tokens_only_to_owner_and_admin(
    api: Api, make_user: UserFactory, owner_token: str
) -> None:
    developer = await make_user(Role.DEVELOPER)
    other = await make_user(Role.DEVELOPER)
    admin = await make_user(Role.ADMIN)
    mine = await made(api, developer.token)
    await made(api, other.token)
    await made(api, admin.token, role="admin")
    own = await api.get("/v1/api-tokens", token=developer.token)
    assert [t["id"] for t in own.body["tokens"]] == [mine["id"]]
    assert own.body["tokens"][0]["user_id"] == developer.user.id
    peek = await api.get(f"/v1/api-tokens?user_id={other.user.id}", token=developer.token)
    assert said(peek) == (403, "permission_denied")
    assert said(await api.get("/v1/api-tokens?all=true", token=developer.token)) == (
        403,
        "permission_denied",
    )
    self_by_id = await api.get(f"/v1/api-tokens?user_id={developer.user.id}", token=developer.token)
    assert self_by_id.body["total"] == 1
    theirs = await api.get(f"/v1/api-tokens?user_id={developer.user.id}", token=admin.token)
    assert [t["id"] for t in theirs.body["tokens"]] == [mine["id"]]
    everyone = await api.get("/v1/api-tokens?all=true", token=owner_token)
    assert everyone.body["total"] == 3
    paged = await api.get("/v1/api-tokens?all=true&limit=2&offset=2", token=owner_token)
    assert len(paged.body["tokens"]) == 1 and paged.body["total"] == 3
    bad = await api.get("/v1/api-tokens?user_id=nope", token=admin.token)
    assert said(bad) == (400, "invalid_input")


async def test_revocation(api: Api, make_user: UserFactory, store: Store) -> None:
    developer = await make_user(Role.DEVELOPER)
    other = await make_user(Role.DEVELOPER)
    admin = await make_user(Role.ADMIN)
    mine = await made(api, developer.token)
    theirs = await made(api, other.token)
    assert (await api.get("/v1/users/me", token=mine["token"])).status == 200
    hidden = await api.call("DELETE", f"/v1/api-tokens/{theirs['id']}", token=developer.token)
    assert said(hidden) == (404, "not_found")
    for missing in ("00000000-0000-4000-8000-000000000000", "not-a-uuid"):
        reply = await api.call("DELETE", f"/v1/api-tokens/{missing}", token=developer.token)
        assert said(reply) == (404, "not_found")
    done = await api.call("DELETE", f"/v1/api-tokens/{mine['id']}", token=developer.token)
    assert (done.status, done.body) == (200, {"revoked": True})
    assert said(await api.get("/v1/users/me", token=mine["token"])) == (401, "invalid_session")
    again = await api.call("DELETE", f"/v1/api-tokens/{mine['id']}", token=developer.token)
    assert said(again) == (404, "not_found")
    assert (await api.get("/v1/api-tokens", token=developer.token)).body["total"] == 0
    by_admin = await api.call("DELETE", f"/v1/api-tokens/{theirs['id']}", token=admin.token)
    assert by_admin.status == 200
    assert said(await api.get("/v1/users/me", token=theirs["token"])) == (401, "invalid_session")
    entry = (await store.audit.recent(1))[0]
    assert (entry.action, entry.actor_id, entry.resource_id) == (
        "api_token_revoked",
        admin.user.id,
        theirs["id"],
    )
    assert entry.details is not None and entry.details["user_id"] == other.user.id


# -- what a token may do -------------------------------------------------------------------


async def test_effective_role_follows_the_creator_down_but_never_up(
    api: Api, make_user: UserFactory, owner_token: str
) -> None:
    admin = await make_user(Role.ADMIN)
    admin_token = (await made(api, admin.token, role="admin"))["token"]
    developer_token = (await made(api, admin.token, role="developer"))["token"]
    assert (await api.get("/v1/users", token=admin_token)).status == 200
    me = await api.get("/v1/users/me", token=developer_token)
    assert me.body["user"]["role"] == "developer"
    assert said(await api.get("/v1/users", token=developer_token)) == (403, "permission_denied")

    await patch_role(api, owner_token, admin.user.id, "developer")
    assert said(await api.get("/v1/users", token=admin_token)) == (403, "permission_denied")
    me = await api.get("/v1/users/me", token=admin_token)
    assert me.body["user"]["role"] == "developer"
    # A demoted creator cannot mint above the role it has now.
    assert said(await create(api, admin_token, role="admin")) == (403, "role_escalation")

    await patch_role(api, owner_token, admin.user.id, "admin")
    assert (await api.get("/v1/users", token=admin_token)).status == 200  # back to its own role
    # The developer token stays a developer token however high its creator rises.
    assert said(await api.get("/v1/users", token=developer_token)) == (403, "permission_denied")


async def test_tokens_stop_working_when_revoked_expired_or_creator_disabled(
    api: Api, make_user: UserFactory, owner_token: str, clock: FakeClock
) -> None:
    developer = await make_user(Role.DEVELOPER)
    short = (await made(api, developer.token, expires_at=clock.now() + 60))["token"]
    kept = (await made(api, developer.token))["token"]
    assert (await api.get("/v1/users/me", token=short)).status == 200
    clock.advance(60)
    assert said(await api.get("/v1/users/me", token=short)) == (401, "invalid_session")
    assert (await api.get("/v1/users/me", token=kept)).status == 200
    disabled = await api.call("DELETE", f"/v1/users/{developer.user.id}", token=owner_token)
    assert disabled.status == 200
    assert said(await api.get("/v1/users/me", token=kept)) == (401, "invalid_session")


async def test_logout_and_the_sse_header_take_sessions_only(
    setup: Setup, make_user: UserFactory
) -> None:
    api = setup.api
    token = (await made(api, setup.token, role="owner"))["token"]
    assert said(await api.post("/v1/auth/logout", token=token)) == (401, "invalid_session")
    assert (await api.get("/v1/users/me", token=token)).status == 200  # still good
    build, _ = await claimed(setup)
    stream = await api.get(f"/v1/builds/{build['id']}/logs/stream", token=token)
    assert said(stream) == (401, "invalid_session")
    minted = await api.post(f"/v1/builds/{build['id']}/stream-token", token=token)
    assert minted.status == 200  # a stream token may be minted with an API token


async def test_a_token_on_a_project_is_capped_at_developer_or_viewer(
    setup: Setup, make_user: UserFactory
) -> None:
    api = setup.api
    developer = await make_user(Role.DEVELOPER)
    added = await api.post(
        f"/v1/projects/{setup.project_id}/members",
        json={"user_id": developer.user.id, "role": "maintainer"},
        token=setup.token,
    )
    assert added.status == 201, added.body
    as_developer = (await made(api, developer.token, role="developer"))["token"]
    as_viewer = (await made(api, developer.token, role="qa_viewer"))["token"]
    project = f"/v1/projects/{setup.project_id}"

    async def role_with(token: str) -> str:
        reply = await api.get(project, token=token)
        assert reply.status == 200, reply.body
        found: str = reply.body["current_user_role"]
        return found

    assert await role_with(developer.token) == "maintainer"
    assert await role_with(as_developer) == "developer"
    assert await role_with(as_viewer) == "viewer"
    listed = await api.get("/v1/projects", token=as_developer)
    assert listed.body["projects"][0]["current_user_role"] == "developer"
    rename = {"name": "renamed"}
    assert said(await api.call("PATCH", project, json=rename, token=as_developer)) == (
        403,
        "permission_denied",
    )
    assert (await api.call("PATCH", project, json=rename, token=developer.token)).status == 200
    trigger = {"pipeline_id": setup.pipeline_id}
    by_developer = await api.post(f"{project}/builds", json=trigger, token=as_developer)
    assert by_developer.status == 201
    by_viewer = await api.post(f"{project}/builds", json=trigger, token=as_viewer)
    assert said(by_viewer) == (403, "permission_denied")


async def test_a_stream_opened_with_an_api_token_ends_when_it_is_revoked(
    setup: Setup, served: str
) -> None:
    created = await made(setup.api, setup.token, role="admin")
    build, runner = await claimed(setup)
    await runner.logs(build["id"], chunks(0, 2))
    minted = await setup.api.post(f"/v1/builds/{build['id']}/stream-token", token=created["token"])
    url = f"{served}/v1/builds/{build['id']}/logs/stream?token={minted.body['token']}"
    events = Events()
    async with httpx.AsyncClient(timeout=10) as client, trio.open_nursery() as nursery:
        nursery.start_soon(read_stream, client, url, {}, events)
        await until(lambda: len(events.logs) >= 2)
        revoked = await setup.api.call(
            "DELETE", f"/v1/api-tokens/{created['id']}", token=setup.token
        )
        assert revoked.status == 200
        await until(lambda: events.done is not None)
    assert events.done == "authorization_ended" and events.sequences == [0, 1]


async def test_last_use_is_shown_to_the_minute(
    api: Api, make_user: UserFactory, clock: FakeClock
) -> None:
    developer = await make_user(Role.DEVELOPER)
    token = (await made(api, developer.token))["token"]

    async def last_used() -> int | None:
        listed = await api.get("/v1/api-tokens", token=developer.token)
        found: int | None = listed.body["tokens"][0]["last_used_at"]
        return found

    assert await last_used() is None
    used_at = clock.now()
    assert (await api.get("/v1/users/me", token=token)).status == 200
    assert await last_used() == used_at
    clock.advance(30)
    await api.get("/v1/users/me", token=token)
    assert await last_used() == used_at  # written at most once a minute
    clock.advance(30)
    await api.get("/v1/users/me", token=token)
    assert await last_used() == clock.now()
