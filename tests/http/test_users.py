"""Users API (contract §2.4): list, invite, role changes, disable and enable, in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from oore.domain.users import Role
from oore.store import Store
from tests.http.builds_kit import Setup, repo, setup
from tests.http.conftest import Api, FakeClock, Reply, SignedIn, UserFactory
from tests.http.test_build_logs import Events, chunks, claimed, read_stream, served, until

__all__ = ["repo", "served", "setup"]

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

UNKNOWN = "00000000-0000-4000-8000-000000000000"


async def owner_id(api: Api, owner_token: str) -> str:
    me = await api.get("/v1/users/me", token=owner_token)
    found: str = me.body["user"]["id"]
    return found


async def patch_role(api: Api, token: str, user_id: str, role: str) -> Reply:
    return await api.call("PATCH", f"/v1/users/{user_id}/role", json={"role": role}, token=token)


async def delete(api: Api, token: str, user_id: str) -> Reply:
    return await api.call("DELETE", f"/v1/users/{user_id}", token=token)


async def enable(api: Api, token: str, user_id: str) -> Reply:
    return await api.post(f"/v1/users/{user_id}/enable", token=token)


def said(reply: Reply) -> tuple[int, str | None]:
    return reply.status, reply.code


@pytest.fixture
async def admin(make_user: UserFactory) -> SignedIn:
    return await make_user(Role.ADMIN)


# -- list ----------------------------------------------------------------------------------


async def test_listing_needs_users_read(
    api: Api, make_user: UserFactory, refused_sessions: list[tuple[str | None, str]]
) -> None:
    for token, code in refused_sessions:
        assert said(await api.get("/v1/users", token=token)) == (401, code)
    for role in (Role.DEVELOPER, Role.QA_VIEWER):
        caller = await make_user(role)
        assert said(await api.get("/v1/users", token=caller.token)) == (403, "permission_denied")


async def test_list_filters_sorts_and_pages(
    api: Api, owner_token: str, make_user: UserFactory, clock: FakeClock
) -> None:
    for email, role in (
        ("Zed@Example.com", Role.DEVELOPER),
        ("amy@example.com", Role.QA_VIEWER),
        ("bob@other.org", Role.ADMIN),
    ):
        clock.advance(1)
        await make_user(role, email)
    everyone = await api.get("/v1/users", token=owner_token)
    assert everyone.status == 200 and everyone.body["total"] == 4
    emails = [u["email"] for u in everyone.body["users"]]
    assert emails == ["bob@other.org", "amy@example.com", "Zed@Example.com", "owner@local"]
    by_email = await api.get("/v1/users?sort=email&direction=asc", token=owner_token)
    assert [u["email"] for u in by_email.body["users"]] == sorted(emails)
    found = await api.get("/v1/users?q=EXAMPLE.COM", token=owner_token)
    assert found.body["total"] == 2
    by_role = await api.get("/v1/users?q=qa_view", token=owner_token)
    assert [u["email"] for u in by_role.body["users"]] == ["amy@example.com"]
    by_status = await api.get("/v1/users?q=active", token=owner_token)
    assert by_status.body["total"] == 4
    page = await api.get("/v1/users?limit=2&offset=1&sort=nonsense", token=owner_token)
    assert [u["email"] for u in page.body["users"]] == emails[1:3]
    assert page.body["total"] == 4
    clamped = await api.get("/v1/users?limit=0&offset=-5", token=owner_token)
    assert len(clamped.body["users"]) == 1
    bad = await api.get("/v1/users?limit=many", token=owner_token)
    assert said(bad) == (400, "invalid_request")


# -- invite --------------------------------------------------------------------------------


async def test_invite_creates_an_invited_user(api: Api, owner_token: str, store: Store) -> None:
    reply = await api.post(
        "/v1/users/invite",
        json={"email": "New@Example.com", "role": "developer"},
        token=owner_token,
    )
    assert reply.status == 201
    user = reply.body["user"]
    assert user["email"] == "New@Example.com" and user["status"] == "invited"
    assert user["role"] == "developer" and "display_name" not in user
    listed = await api.get("/v1/users?q=new@", token=owner_token)
    assert listed.body["users"][0]["display_name"] == "New@Example.com"
    entry = (await store.audit.recent(1))[0]
    assert (entry.action, entry.resource_id, entry.client_ip) == (
        "user_invited",
        user["id"],
        "127.0.0.1",
    )


async def test_invite_errors(api: Api, owner_token: str, make_user: UserFactory) -> None:
    async def invite(email: str, role: str, token: str = owner_token) -> Reply:
        return await api.post("/v1/users/invite", json={"email": email, "role": role}, token=token)

    for email in ("", "no-at-sign", "a@" + "x" * 255):
        assert said(await invite(email, "developer")) == (400, "invalid_email")
    for role in ("owner", "root", ""):
        assert said(await invite("a@example.com", role)) == (400, "invalid_role")
    assert said(await invite("", "owner")) == (400, "invalid_email")
    assert (await invite("dup@example.com", "qa_viewer")).status == 201
    assert said(await invite("dup@example.com", "developer")) == (409, "email_exists")
    assert (await invite("DUP@example.com", "developer")).status == 201  # case-sensitive
    assert said(await invite(" dup@example.com", "developer"))[0] == 201  # not trimmed
    developer = await make_user(Role.DEVELOPER)
    denied = await invite("b@example.com", "developer", developer.token)
    assert said(denied) == (403, "permission_denied")
    admin = await make_user(Role.ADMIN)
    assert (await invite("c@example.com", "admin", admin.token)).status == 201
    missing = await api.post("/v1/users/invite", json={"email": "x@y"}, token=owner_token)
    assert said(missing) == (400, "invalid_request")


# -- role changes --------------------------------------------------------------------------


async def test_role_change_checks_in_order(
    api: Api, owner_token: str, admin: SignedIn, make_user: UserFactory
) -> None:
    owner = await owner_id(api, owner_token)
    other_admin = await make_user(Role.ADMIN)
    developer = await make_user(Role.DEVELOPER)
    # 400 invalid_role comes before everything, even an unknown user.
    assert said(await patch_role(api, admin.token, UNKNOWN, "owner")) == (400, "invalid_role")
    # Making someone admin needs the owner, checked before the user lookup.
    assert said(await patch_role(api, admin.token, UNKNOWN, "admin")) == (
        403,
        "insufficient_role",
    )
    assert said(await patch_role(api, admin.token, UNKNOWN, "developer")) == (
        404,
        "user_not_found",
    )
    assert said(await patch_role(api, admin.token, "not-a-uuid", "developer")) == (
        404,
        "user_not_found",
    )
    assert said(await patch_role(api, admin.token, owner, "developer")) == (
        403,
        "cannot_change_owner",
    )
    assert said(await patch_role(api, owner_token, owner, "developer")) == (
        403,
        "cannot_change_owner",
    )
    assert said(await patch_role(api, admin.token, other_admin.user.id, "developer")) == (
        403,
        "insufficient_role",
    )
    denied = await patch_role(api, developer.token, admin.user.id, "developer")
    assert said(denied) == (403, "permission_denied")
    changed = await patch_role(api, admin.token, developer.user.id, "qa_viewer")
    assert changed.status == 200 and changed.body["user"]["role"] == "qa_viewer"


async def test_demotion_takes_effect_on_open_sessions(
    api: Api, owner_token: str, admin: SignedIn, store: Store
) -> None:
    assert (await api.get("/v1/users", token=admin.token)).status == 200
    demoted = await patch_role(api, owner_token, admin.user.id, "developer")
    assert demoted.status == 200 and demoted.body["user"]["role"] == "developer"
    after = await api.get("/v1/users", token=admin.token)
    assert said(after) == (403, "permission_denied")
    me = await api.get("/v1/users/me", token=admin.token)
    assert me.body["user"]["role"] == "developer"
    entry = (await store.audit.recent(1))[0]
    assert entry.action == "user_role_changed" and entry.resource_id == admin.user.id
    assert entry.details == {
        "from_role": "admin",
        "to_role": "developer",
        "changed_by": "owner@local",
    }
    promoted = await patch_role(api, owner_token, admin.user.id, "admin")
    assert promoted.body["user"]["role"] == "admin"


# -- disable and enable --------------------------------------------------------------------


async def test_disable_checks_in_order(
    api: Api, owner_token: str, admin: SignedIn, make_user: UserFactory
) -> None:
    owner = await owner_id(api, owner_token)
    other_admin = await make_user(Role.ADMIN)
    developer = await make_user(Role.DEVELOPER)
    assert said(await delete(api, admin.token, admin.user.id)) == (400, "cannot_delete_self")
    assert said(await delete(api, owner_token, owner)) == (400, "cannot_delete_self")
    assert said(await delete(api, admin.token, UNKNOWN)) == (404, "user_not_found")
    assert said(await delete(api, admin.token, "nope")) == (404, "user_not_found")
    assert said(await delete(api, admin.token, owner)) == (403, "cannot_delete_owner")
    assert said(await delete(api, admin.token, other_admin.user.id)) == (
        403,
        "insufficient_role",
    )
    denied = await delete(api, developer.token, admin.user.id)
    assert said(denied) == (403, "permission_denied")
    assert (await delete(api, owner_token, other_admin.user.id)).body == {"ok": True}


async def test_disabling_ends_sessions_and_tokens_for_good(
    api: Api, owner_token: str, admin: SignedIn, make_user: UserFactory, store: Store
) -> None:
    developer = await make_user(Role.DEVELOPER)
    made = await api.post(
        "/v1/api-tokens", json={"name": "ci", "role": "developer"}, token=developer.token
    )
    api_token = made.body["token"]
    assert (await api.get("/v1/users/me", token=api_token)).status == 200
    reply = await delete(api, admin.token, developer.user.id)
    assert (reply.status, reply.body) == (200, {"ok": True})
    for token in (developer.token, api_token):
        assert said(await api.get("/v1/users/me", token=token)) == (401, "invalid_session")
    listed = await api.get(f"/v1/users?q={developer.user.email}", token=admin.token)
    assert listed.body["users"][0]["status"] == "disabled"
    entry = (await store.audit.recent(1))[0]
    assert (entry.action, entry.actor_id, entry.resource_id) == (
        "user_disabled",
        admin.user.id,
        developer.user.id,
    )
    enabled = await enable(api, admin.token, developer.user.id)
    assert enabled.status == 200 and enabled.body["user"]["status"] == "active"
    assert (await store.audit.recent(1))[0].action == "user_enabled"
    for token in (developer.token, api_token):  # re-enabling restores neither
        assert said(await api.get("/v1/users/me", token=token)) == (401, "invalid_session")


async def test_enable_checks_in_order(
    api: Api, owner_token: str, admin: SignedIn, make_user: UserFactory
) -> None:
    owner = await owner_id(api, owner_token)
    other_admin = await make_user(Role.ADMIN)
    developer = await make_user(Role.DEVELOPER)
    assert said(await enable(api, admin.token, admin.user.id)) == (400, "cannot_enable_self")
    assert said(await enable(api, admin.token, UNKNOWN)) == (404, "user_not_found")
    assert said(await enable(api, admin.token, "x")) == (404, "user_not_found")
    assert said(await enable(api, admin.token, owner)) == (403, "cannot_enable_owner")
    assert (await delete(api, owner_token, other_admin.user.id)).status == 200
    assert said(await enable(api, admin.token, other_admin.user.id)) == (
        403,
        "insufficient_role",
    )
    assert said(await enable(api, admin.token, developer.user.id)) == (409, "not_disabled")
    denied = await enable(api, developer.token, other_admin.user.id)
    assert said(denied) == (403, "permission_denied")
    assert (await enable(api, owner_token, other_admin.user.id)).status == 200


# -- open log streams ----------------------------------------------------------------------


@pytest.fixture
async def watched(setup: Setup, served: str, admin: SignedIn) -> AsyncIterator[Any]:
    """An admin's open SSE stream of a running build with three lines already read."""
    build, runner = await claimed(setup)
    await runner.logs(build["id"], chunks(0, 3))
    events = Events()
    url = f"{served}/v1/builds/{build['id']}/logs/stream"
    auth = {"Authorization": f"Bearer {admin.token}"}
    async with httpx.AsyncClient(timeout=10) as client, trio.open_nursery() as nursery:
        nursery.start_soon(read_stream, client, url, auth, events)
        await until(lambda: len(events.logs) >= 3)
        yield events
        await until(lambda: events.done is not None)


async def test_an_open_stream_ends_when_its_user_is_disabled(
    setup: Setup, admin: SignedIn, watched: Events
) -> None:
    assert (await delete(setup.api, setup.token, admin.user.id)).status == 200
    await until(lambda: watched.done is not None)
    assert watched.done == "authorization_ended" and watched.sequences == [0, 1, 2]


async def test_an_open_stream_ends_when_its_user_loses_the_project(
    setup: Setup, admin: SignedIn, watched: Events
) -> None:
    # An admin sees every project; as a developer without a membership, not this one.
    assert (await patch_role(setup.api, setup.token, admin.user.id, "developer")).status == 200
    await until(lambda: watched.done is not None)
    assert watched.done == "authorization_ended"
