"""``GET /v1/audit-logs`` (contract §2.14): role gate, filters, sort, pagination, codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oore.domain.users import Role
from oore.store import AuditEntry, Store
from tests.http.builds_kit import make_setup, repo
from tests.http.conftest import Api, FakeClock, Reply, UserFactory

__all__ = ["repo"]

ACTOR = "11111111-1111-4111-8111-111111111111"
OTHER = "22222222-2222-4222-8222-222222222222"
T0 = 1_700_000_000


def said(reply: Reply) -> tuple[int, str | None]:
    return reply.status, reply.code


@pytest.fixture
async def seeded(store: Store, owner_token: str) -> str:
    """Five known entries far in the past (setup wrote its own entries 'now')."""
    await store.audit.append(
        [
            AuditEntry(
                ACTOR, "carol@example.com", "project_created", "project", "p1", None, None, T0
            ),
            AuditEntry(
                ACTOR, "carol@example.com", "project_deleted", "project", "p1", None, None, T0 + 10
            ),
            AuditEntry(
                OTHER,
                "alice@example.com",
                "user_invited",
                "user",
                "u9",
                {"role": "qa_viewer"},
                "10.0.0.9",
                T0 + 20,
            ),
            AuditEntry(None, None, "webhook_received", "webhook", None, None, None, T0 + 30),
            AuditEntry(
                OTHER, "alice@example.com", "project_created", "project", "p2", None, None, T0 + 40
            ),
        ]
    )
    return owner_token


async def entries(api: Api, token: str, query: str) -> list[dict[str, object]]:
    reply = await api.get(f"/v1/audit-logs?{query}", token=token)
    assert reply.status == 200, reply.body
    found: list[dict[str, object]] = reply.body["entries"]
    return found


async def test_only_owner_and_admin_may_read(
    api: Api, make_user: UserFactory, refused_sessions: list[tuple[str | None, str]]
) -> None:
    for token, code in refused_sessions:
        assert said(await api.get("/v1/audit-logs", token=token)) == (401, code)
    for role in (Role.DEVELOPER, Role.QA_VIEWER):
        caller = await make_user(role)
        denied = await api.get("/v1/audit-logs?limit=0", token=caller.token)
        assert said(denied) == (403, "permission_denied")  # the gate comes before the query
    admin = await make_user(Role.ADMIN)
    assert (await api.get("/v1/audit-logs", token=admin.token)).status == 200


async def test_entry_shape(api: Api, seeded: str) -> None:
    found = await entries(api, seeded, "action=user_invited")
    assert len(found) == 1
    entry = found[0]
    assert isinstance(entry["id"], int)
    assert {k: v for k, v in entry.items() if k != "id"} == {
        "actor_id": OTHER,
        "actor_email": "alice@example.com",
        "action": "user_invited",
        "resource_type": "user",
        "resource_id": "u9",
        "details": json.dumps({"role": "qa_viewer"}, separators=(",", ":")),
        "client_ip": "10.0.0.9",
        "created_at": T0 + 20,
    }
    anonymous = (await entries(api, seeded, "action=webhook_received"))[0]
    assert anonymous["actor_id"] is None and anonymous["actor_email"] is None
    assert anonymous["resource_id"] is None and anonymous["details"] is None


async def test_filters(api: Api, seeded: str) -> None:
    window = f"from_ts={T0}&to_ts={T0 + 40}"
    everything = await api.get(f"/v1/audit-logs?{window}", token=seeded)
    assert everything.body["total"] == 5
    assert [e["created_at"] for e in everything.body["entries"]] == [
        T0 + 40,
        T0 + 30,
        T0 + 20,
        T0 + 10,
        T0,
    ]
    by_actor = await entries(api, seeded, f"actor_id={ACTOR}")
    assert [e["action"] for e in by_actor] == ["project_deleted", "project_created"]
    created = await entries(api, seeded, "action=project_created")
    assert [e["resource_id"] for e in created] == ["p2", "p1"]
    projects = await entries(api, seeded, f"resource_type=project&{window}")
    assert len(projects) == 3
    middle = await entries(api, seeded, f"from_ts={T0 + 10}&to_ts={T0 + 30}")
    assert [e["created_at"] for e in middle] == [T0 + 30, T0 + 20, T0 + 10]
    both = await entries(api, seeded, f"actor_id={OTHER}&action=project_created")
    assert [e["resource_id"] for e in both] == ["p2"]


async def test_sort_and_direction(api: Api, seeded: str) -> None:
    window = f"from_ts={T0}&to_ts={T0 + 40}"
    oldest = await entries(api, seeded, f"{window}&direction=asc")
    assert [e["created_at"] for e in oldest] == [T0, T0 + 10, T0 + 20, T0 + 30, T0 + 40]
    by_email = await entries(api, seeded, f"{window}&sort=actor_email&direction=asc")
    assert [e["actor_email"] for e in by_email] == [
        "alice@example.com",
        "alice@example.com",
        "carol@example.com",
        "carol@example.com",
        None,
    ]
    by_action = await entries(api, seeded, f"{window}&sort=action&direction=desc")
    assert by_action[0]["action"] == "webhook_received"
    by_type = await entries(api, seeded, f"{window}&sort=resource_type&direction=asc")
    assert [e["resource_type"] for e in by_type][:3] == ["project"] * 3


async def test_pagination_and_codes(api: Api, store: Store, seeded: str) -> None:
    await store.audit.append(
        [AuditEntry(None, None, "bulk", "test", None, None, None, T0 - n) for n in range(1, 251)]
    )
    default = await api.get("/v1/audit-logs?action=bulk", token=seeded)
    assert len(default.body["entries"]) == 50 and default.body["total"] == 250
    capped = await api.get("/v1/audit-logs?action=bulk&limit=500", token=seeded)
    assert len(capped.body["entries"]) == 200
    tail = await api.get("/v1/audit-logs?action=bulk&limit=100&offset=200", token=seeded)
    assert len(tail.body["entries"]) == 50
    assert tail.body["entries"][-1]["created_at"] == T0 - 250
    for query in ("limit=0", "limit=-1", "offset=-1", "sort=id", "direction=up", "actor_id=x"):
        assert said(await api.get(f"/v1/audit-logs?{query}", token=seeded)) == (
            400,
            "invalid_input",
        ), query
    for query in ("limit=ten", "from_ts=yesterday"):
        assert said(await api.get(f"/v1/audit-logs?{query}", token=seeded)) == (
            400,
            "invalid_request",
        ), query


async def test_details_name_roles_and_names_as_oored_does(
    api: Api, owner_token: str, make_user: UserFactory, repo: Path, store: Store
) -> None:
    """Full role names, and oored's field names, in every entry that records a role or a
    runner's name."""
    setup = await make_setup(api, owner_token, repo)
    developer = await make_user(Role.DEVELOPER)
    qa = await make_user(Role.QA_VIEWER)
    invited = await api.post(
        "/v1/users/invite", json={"email": "q@example.com", "role": "qa_viewer"}, token=owner_token
    )
    await api.call(
        "PATCH",
        f"/v1/users/{invited.body['user']['id']}/role",
        json={"role": "developer"},
        token=owner_token,
    )
    token = await api.post(
        "/v1/api-tokens", json={"name": "ci", "role": "qa_viewer"}, token=developer.token
    )
    members = f"/v1/projects/{setup.project_id}/members"
    for who, role in ((developer, "developer"), (qa, "viewer")):
        await api.post(members, json={"user_id": who.user.id, "role": role}, token=owner_token)
    await api.call(
        "PATCH", f"{members}/{developer.user.id}", json={"role": "maintainer"}, token=owner_token
    )
    await api.call("DELETE", f"{members}/{qa.user.id}", token=owner_token)
    runner = await api.post("/v1/runners/register", json={"name": "mac-1"}, token=owner_token)
    runner_id = runner.body["runner"]["id"]
    await api.call("PATCH", f"/v1/runners/{runner_id}", json={"name": "mac-2"}, token=owner_token)

    details = {e.action: e.details for e in reversed(await store.audit.recent(50))}
    owner = "owner@local"
    assert details["user_invited"] == {
        "email": "q@example.com",
        "role": "qa_viewer",
        "invited_by": owner,
    }
    assert details["user_role_changed"] == {
        "from_role": "qa_viewer",
        "to_role": "developer",
        "changed_by": owner,
    }
    assert details["api_token_created"] == {
        "name": "ci",
        "role": "qa_viewer",
        "prefix": token.body["prefix"],
    }
    assert details["project_member_added"] == {
        "added_user_id": qa.user.id,
        "role": "viewer",
        "added_by": owner,
    }
    assert details["project_member_updated"] == {
        "target_user_id": developer.user.id,
        "previous_role": "developer",
        "new_role": "maintainer",
        "updated_by": owner,
    }
    assert details["project_member_removed"] == {"removed_user_id": qa.user.id, "removed_by": owner}
    assert details["runner_registered"] == {
        "runner_id": runner_id,
        "runner_name": "mac-1",
        "registered_by": owner,
    }
    assert details["runner_renamed"] == {
        "previous_name": "mac-1",
        "new_name": "mac-2",
        "updated_by": owner,
    }


async def test_user_actions_are_recorded_with_actor_target_and_address(
    api: Api, owner_token: str, make_user: UserFactory, clock: FakeClock
) -> None:
    developer = await make_user(Role.DEVELOPER)
    clock.advance(1)  # after setup's own entries
    since = f"from_ts={clock.now()}"
    invited = await api.post(
        "/v1/users/invite", json={"email": "z@example.com", "role": "qa_viewer"}, token=owner_token
    )
    target = invited.body["user"]["id"]
    await api.call(
        "PATCH", f"/v1/users/{target}/role", json={"role": "developer"}, token=owner_token
    )
    await api.call("DELETE", f"/v1/users/{target}", token=owner_token)
    await api.post(f"/v1/users/{target}/enable", token=owner_token)
    created = await api.post(
        "/v1/api-tokens", json={"name": "ci", "role": "developer"}, token=developer.token
    )
    await api.call("DELETE", f"/v1/api-tokens/{created.body['id']}", token=developer.token)
    await api.post("/v1/runners/register", json={"name": "r1"}, token=owner_token)
    await api.post("/v1/auth/logout", token=developer.token)
    log = await entries(api, owner_token, f"{since}&direction=asc")
    assert [e["action"] for e in log] == [
        "user_invited",
        "user_role_changed",
        "user_disabled",
        "user_enabled",
        "api_token_created",
        "api_token_revoked",
        "runner_registered",
        "logout",
    ]
    users = [e for e in log if e["resource_type"] == "user"]
    assert {e["resource_id"] for e in users[:4]} == {target}
    assert users[-1]["resource_id"] == developer.user.id
    assert all(e["client_ip"] == "127.0.0.1" for e in users + log[4:6])
    assert json.loads(str(log[1]["details"])) == {
        "from_role": "qa_viewer",
        "to_role": "developer",
        "changed_by": "owner@local",
    }
    assert log[4]["actor_id"] == developer.user.id and log[4]["resource_type"] == "api_token"
