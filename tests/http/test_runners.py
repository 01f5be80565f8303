"""Runners API, enrollment tokens and the runner protocol without builds (contract §2.8, §5)."""

from __future__ import annotations

import pytest

from oore.domain.users import Role
from tests.http.conftest import Api, FakeClock, UserFactory


async def register(api: Api, token: str, name: str = "mac-1", **extra: object) -> dict[str, str]:
    reply = await api.post("/v1/runners/register", json={"name": name, **extra}, token=token)
    assert reply.status == 200, reply.body
    return {"id": reply.body["runner"]["id"], "token": reply.body["token"]}


async def test_register_returns_the_token_once_and_starts_offline(
    api: Api, owner_token: str
) -> None:
    reply = await api.post(
        "/v1/runners/register",
        json={"name": "  mac-1  ", "capabilities": {"os": "macos"}, "labels": ["macos", "arm64"]},
        token=owner_token,
    )
    assert reply.status == 200
    runner = reply.body["runner"]
    assert runner["name"] == "mac-1"
    assert runner["status"] == "offline"
    assert runner["capabilities"] == {"os": "macos"}
    assert runner["labels"] == ["arm64", "macos"]
    assert len(reply.body["token"]) == 64
    listed = await api.get("/v1/runners", token=owner_token)
    assert listed.body["total"] == 1 and "token" not in listed.body["runners"][0]


async def test_omitted_capabilities_are_null(api: Api, owner_token: str) -> None:
    reply = await api.post("/v1/runners/register", json={"name": "r"}, token=owner_token)
    assert reply.body["runner"]["capabilities"] is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "   "}, "invalid_name"),
        ({"name": "x" * 256}, "invalid_name"),
        ({"name": "r", "labels": ["bad label"]}, "invalid_labels"),
        ({"name": "r", "max_concurrent": 0}, "invalid_input"),
        ({"name": "r", "unknown": 1}, "invalid_request"),
        ({}, "invalid_request"),
    ],
)
async def test_register_refuses_bad_input(
    api: Api, owner_token: str, body: dict[str, object], code: str
) -> None:
    reply = await api.post("/v1/runners/register", json=body, token=owner_token)
    assert (reply.status, reply.code) == (400, code)


async def test_register_needs_an_admin_or_an_enrollment_token(
    api: Api, make_user: UserFactory
) -> None:
    developer = await make_user(Role.DEVELOPER)
    assert (await api.post("/v1/runners/register", json={"name": "r"})).code == "missing_auth"
    denied = await api.post("/v1/runners/register", json={"name": "r"}, token=developer.token)
    assert (denied.status, denied.code) == (403, "permission_denied")
    unknown = await api.post("/v1/runners/register", json={"name": "r"}, token="ab" * 32)
    assert (unknown.status, unknown.code) == (401, "invalid_session")


async def test_enrollment_tokens_register_runners_until_used_up(api: Api, owner_token: str) -> None:
    created = await api.post(
        "/v1/runner-enrollment-tokens",
        json={"label": "fleet", "max_uses": 2, "labels": ["linux"]},
        token=owner_token,
    )
    assert created.status == 201, created.body
    secret = created.body["token"]
    first = await api.post(
        "/v1/runners/register", json={"name": "a", "labels": ["x86"]}, token=secret
    )
    assert first.status == 200
    assert first.body["runner"]["labels"] == ["linux", "x86"]
    assert "registered_by" not in first.body["runner"]
    assert (await api.post("/v1/runners/register", json={"name": "b"}, token=secret)).status == 200
    third = await api.post("/v1/runners/register", json={"name": "c"}, token=secret)
    assert (third.status, third.code) == (401, "invalid_session")
    listed = await api.get("/v1/runner-enrollment-tokens", token=owner_token)
    assert listed.body["tokens"][0]["uses"] == 2
    assert secret not in str(listed.body)


async def test_revoked_and_expired_enrollment_tokens_are_refused(
    api: Api, owner_token: str, clock: FakeClock
) -> None:
    revoked = await api.post("/v1/runner-enrollment-tokens", json={"label": "a"}, token=owner_token)
    gone = await api.call(
        "DELETE",
        f"/v1/runner-enrollment-tokens/{revoked.body['enrollment_token']['id']}",
        token=owner_token,
    )
    assert gone.status == 200 and gone.body["revoked"] is True
    refused = await api.post(
        "/v1/runners/register", json={"name": "r"}, token=revoked.body["token"]
    )
    assert refused.status == 401
    expiring = await api.post(
        "/v1/runner-enrollment-tokens", json={"label": "b", "ttl_seconds": 60}, token=owner_token
    )
    clock.advance(61)
    late = await api.post("/v1/runners/register", json={"name": "r"}, token=expiring.body["token"])
    assert late.status == 401


async def test_enrollment_tokens_are_for_admins(api: Api, make_user: UserFactory) -> None:
    developer = await make_user(Role.DEVELOPER)
    reply = await api.post(
        "/v1/runner-enrollment-tokens", json={"label": "a"}, token=developer.token
    )
    assert (reply.status, reply.code) == (403, "permission_denied")
    missing = await api.call(
        "DELETE",
        "/v1/runner-enrollment-tokens/not-a-uuid",
        token=(await make_user(Role.ADMIN)).token,
    )
    assert (missing.status, missing.code) == (404, "not_found")


async def test_heartbeat_sets_status_and_capabilities(api: Api, owner_token: str) -> None:
    runner = await register(api, owner_token, capabilities={"os": "linux"})
    path = f"/v1/runners/{runner['id']}/heartbeat"
    beat = await api.post(path, json={"status": "online"}, token=runner["token"])
    assert beat.status == 204 and not beat.body
    shown = await api.get(f"/v1/runners/{runner['id']}", token=owner_token)
    assert shown.body["runner"]["status"] == "online"
    assert shown.body["runner"]["capabilities"] == {"os": "linux"}
    assert "last_heartbeat_at" in shown.body["runner"]
    await api.post(
        path, json={"status": "busy", "capabilities": {"os": "mac"}}, token=runner["token"]
    )
    shown = await api.get(f"/v1/runners/{runner['id']}", token=owner_token)
    assert (shown.body["runner"]["status"], shown.body["runner"]["capabilities"]) == (
        "busy",
        {"os": "mac"},
    )
    listed = await api.get("/v1/runners", token=owner_token)
    assert listed.body["online_total"] == 1


async def test_runner_credentials_are_checked(api: Api, owner_token: str) -> None:
    first = await register(api, owner_token, "a")
    second = await register(api, owner_token, "b")
    path = f"/v1/runners/{first['id']}/heartbeat"
    cases = [
        (None, 401, "missing_auth"),
        ("not-a-token", 401, "invalid_token"),
        ("cd" * 32, 401, "invalid_token"),
        (owner_token, 401, "invalid_token"),
        (second["token"], 403, "runner_mismatch"),
    ]
    for token, status, code in cases:
        reply = await api.post(path, json={"status": "online"}, token=token)
        assert (reply.status, reply.code) == (status, code), token
    bad = await api.post(path, json={"status": "sleeping"}, token=first["token"])
    assert (bad.status, bad.code) == (400, "invalid_status")


async def test_claim_checks_the_protocol_and_answers_empty(api: Api, owner_token: str) -> None:
    runner = await register(api, owner_token)
    path = f"/v1/runners/{runner['id']}/claim"
    wrong = await api.post(path, json={"protocol_version": 3}, token=runner["token"])
    assert (wrong.status, wrong.code) == (409, "runner_protocol_mismatch")
    too_long = await api.post(
        path, json={"protocol_version": 4, "wait_seconds": 61}, token=runner["token"]
    )
    assert (too_long.status, too_long.code) == (400, "invalid_input")
    empty = await api.post(path, json={"protocol_version": 4}, token=runner["token"])
    assert (empty.status, empty.body) == (200, {})


async def test_patch_renames_relabels_and_drains(api: Api, owner_token: str) -> None:
    runner = await register(api, owner_token)
    path = f"/v1/runners/{runner['id']}"
    renamed = await api.call(
        "PATCH", path, json={"name": "mac-2", "labels": ["b", "a"]}, token=owner_token
    )
    assert renamed.status == 200
    assert (renamed.body["runner"]["name"], renamed.body["runner"]["labels"]) == (
        "mac-2",
        ["a", "b"],
    )
    drained = await api.post(f"{path}/drain", token=owner_token)
    assert drained.body["runner"]["draining"] is True
    undrained = await api.post(f"{path}/undrain", token=owner_token)
    assert undrained.body["runner"]["draining"] is False
    empty = await api.call("PATCH", path, json={}, token=owner_token)
    assert (empty.status, empty.code) == (400, "invalid_input")
    blank = await api.call("PATCH", path, json={"name": " "}, token=owner_token)
    assert (blank.status, blank.code) == (400, "invalid_name")
    missing = await api.call(
        "PATCH",
        "/v1/runners/00000000-0000-4000-8000-000000000000",
        json={"name": "x"},
        token=owner_token,
    )
    assert (missing.status, missing.code) == (404, "not_found")


async def test_delete_an_unused_runner(api: Api, owner_token: str) -> None:
    runner = await register(api, owner_token)
    gone = await api.call("DELETE", f"/v1/runners/{runner['id']}", token=owner_token)
    assert gone.status == 204
    again = await api.call("DELETE", f"/v1/runners/{runner['id']}", token=owner_token)
    assert (again.status, again.code) == (404, "not_found")


@pytest.mark.parametrize(
    ("role", "read", "write"),
    [
        (Role.ADMIN, 200, 200),
        (Role.DEVELOPER, 200, 403),
        (Role.QA_VIEWER, 403, 403),
    ],
)
async def test_runner_permissions_follow_the_matrix(
    api: Api, owner_token: str, make_user: UserFactory, role: Role, read: int, write: int
) -> None:
    runner = await register(api, owner_token)
    user = await make_user(role)
    assert (await api.get("/v1/runners", token=user.token)).status == read
    assert (await api.get(f"/v1/runners/{runner['id']}", token=user.token)).status == read
    patched = await api.call(
        "PATCH", f"/v1/runners/{runner['id']}", json={"name": "n"}, token=user.token
    )
    assert patched.status == write
    if write == 403:
        assert patched.code == "permission_denied"
