"""Runners API, enrollment tokens and the runner protocol without builds (contract §2.8, §5)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from oore.domain.users import Role
from oore.runtime import Runtime
from oore.store import Store
from oore.store.database import Connection
from tests.http.builds_kit import Setup, repo, setup
from tests.http.conftest import Api, FakeClock, UserFactory

__all__ = ["repo", "setup"]

MISSING = "00000000-0000-4000-8000-000000000000"


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


async def test_an_enrollment_token_needs_a_label_or_labels(api: Api, owner_token: str) -> None:
    path = "/v1/runner-enrollment-tokens"
    by_labels = await api.post(path, json={"labels": ["linux", "gpu"]}, token=owner_token)
    assert by_labels.status == 201, by_labels.body
    made = by_labels.body["enrollment_token"]
    assert (made["label"], made["labels"]) == ("gpu, linux", ["gpu", "linux"])
    by_label = await api.post(path, json={"label": "fleet"}, token=owner_token)
    assert (by_label.status, by_label.body["enrollment_token"]["labels"]) == (201, [])
    bodies: list[dict[str, object]] = [{}, {"labels": []}]
    for body in bodies:
        neither = await api.post(path, json=body, token=owner_token)
        assert (neither.status, neither.code) == (400, "invalid_input")
        assert "label" in neither.body["error"] and "labels" in neither.body["error"]
    blank = await api.post(path, json={"label": " ", "labels": ["gpu"]}, token=owner_token)
    assert (blank.status, blank.code) == (400, "invalid_name")


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


# (action, expected status for owner, admin, developer, qa_viewer): runners:read for
# developers, runners:write and runners:delete for owner/admin only (contract §1.1).
RUNNER_RBAC: list[tuple[str, list[int]]] = [
    ("list", [200, 200, 200, 403]),
    ("get", [200, 200, 200, 403]),
    ("register", [200, 200, 403, 403]),
    ("patch", [200, 200, 403, 403]),
    ("drain", [200, 200, 403, 403]),
    ("undrain", [200, 200, 403, 403]),
    ("create enrollment token", [201, 201, 403, 403]),
    ("list enrollment tokens", [200, 200, 403, 403]),
    ("delete", [204, 204, 403, 403]),
]
ROLES = [Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.QA_VIEWER]


@pytest.mark.parametrize("role", ROLES)
async def test_runner_permissions_follow_the_matrix(
    api: Api, owner_token: str, make_user: UserFactory, role: Role
) -> None:
    runner = await register(api, owner_token)
    path = f"/v1/runners/{runner['id']}"
    token = owner_token if role is Role.OWNER else (await make_user(role)).token
    column = ROLES.index(role)
    for action, statuses in RUNNER_RBAC:
        if action == "list":
            reply = await api.get("/v1/runners", token=token)
        elif action == "get":
            reply = await api.get(path, token=token)
        elif action == "register":
            reply = await api.post("/v1/runners/register", json={"name": "r"}, token=token)
        elif action == "patch":
            reply = await api.call("PATCH", path, json={"name": "n"}, token=token)
        elif action in ("drain", "undrain"):
            reply = await api.post(f"{path}/{action}", token=token)
        elif action == "create enrollment token":
            reply = await api.post("/v1/runner-enrollment-tokens", json={"label": "a"}, token=token)
        elif action == "list enrollment tokens":
            reply = await api.get("/v1/runner-enrollment-tokens", token=token)
        else:
            reply = await api.call("DELETE", path, token=token)
        expected = statuses[column]
        assert reply.status == expected, (action, reply.body)
        if expected == 403:
            assert reply.code == "permission_denied", (action, reply.body)
    still = await api.get(path, token=owner_token)
    assert still.status == (404 if RUNNER_RBAC[-1][1][column] == 204 else 200)


async def test_every_user_route_needs_a_live_session(
    api: Api, owner_token: str, refused_sessions: list[tuple[str | None, str]]
) -> None:
    runner = await register(api, owner_token)
    path = f"/v1/runners/{runner['id']}"
    enrollment = await api.post(
        "/v1/runner-enrollment-tokens", json={"label": "a"}, token=owner_token
    )
    calls: list[tuple[str, str, object]] = [
        ("POST", "/v1/runners/register", {"name": "r"}),
        ("GET", "/v1/runners", None),
        ("GET", path, None),
        ("PATCH", path, {"name": "n"}),
        ("POST", f"{path}/drain", None),
        ("POST", f"{path}/undrain", None),
        ("DELETE", path, None),
        ("POST", "/v1/runner-enrollment-tokens", {"label": "b"}),
        ("GET", "/v1/runner-enrollment-tokens", None),
        (
            "DELETE",
            f"/v1/runner-enrollment-tokens/{enrollment.body['enrollment_token']['id']}",
            None,
        ),
    ]
    for method, route, body in calls:
        for token, code in refused_sessions:
            reply = await api.call(method, route, json=body, token=token)
            assert (reply.status, reply.code) == (401, code), (method, route, token)
    listed = await api.get("/v1/runners", token=owner_token)
    assert [(r["name"], r["draining"]) for r in listed.body["runners"]] == [("mac-1", False)]


async def test_unknown_runners_are_not_found(api: Api, owner_token: str) -> None:
    for missing in (MISSING, "not-a-uuid"):
        path = f"/v1/runners/{missing}"
        for method, route, body in (
            ("GET", path, None),
            ("PATCH", path, {"name": "n"}),
            ("POST", f"{path}/drain", None),
            ("POST", f"{path}/undrain", None),
            ("DELETE", path, None),
        ):
            reply = await api.call(method, route, json=body, token=owner_token)
            assert (reply.status, reply.code) == (404, "not_found"), (method, route)


async def test_rename_refuses_a_name_over_255_bytes(api: Api, owner_token: str) -> None:
    runner = await register(api, owner_token)
    path = f"/v1/runners/{runner['id']}"
    for name in ("x" * 256, "é" * 128):
        reply = await api.call("PATCH", path, json={"name": name}, token=owner_token)
        assert (reply.status, reply.code) == (400, "invalid_name"), len(name)
    fits = await api.call("PATCH", path, json={"name": "é" * 127}, token=owner_token)
    assert fits.status == 200


async def test_a_busy_runner_cannot_be_deleted_one_that_ran_builds_can(setup: Setup) -> None:
    build = await setup.trigger()
    runner = await setup.runner("worker")
    await runner.claim()
    path = f"/v1/runners/{runner.id}"
    shown = (await setup.api.get(path, token=setup.token)).body["runner"]
    assert shown["current_builds"] == [build["id"]]
    listed = (await setup.api.get("/v1/runners", token=setup.token)).body["runners"]
    assert [r["current_builds"] for r in listed] == [[build["id"]]]
    busy = await setup.api.call("DELETE", path, token=setup.token)
    assert (busy.status, busy.code) == (409, "runner_has_builds")
    assert build["id"] in busy.body["error"] and "drain" in busy.body["error"]
    await runner.report(build["id"], "running")
    await runner.report(build["id"], "succeeded", exit_code=0)
    assert (await setup.api.get(path, token=setup.token)).body["runner"]["current_builds"] == []
    gone = await setup.api.call("DELETE", path, token=setup.token)
    assert gone.status == 204, gone.body
    assert (await setup.api.get(path, token=setup.token)).status == 404
    # The build keeps the record of the runner that ran it, and its events name it.
    detail = await setup.build(build["id"])
    assert detail["build"].get("last_runner_id") == runner.id, detail["build"]
    assert "runner_id" not in detail["build"]
    assert detail["build"]["context"]["runner_name"] == "worker"
    assert f"runner:{runner.id}" in [event.get("actor") for event in detail["events"]]
    [listed_build] = (await setup.api.get("/v1/builds", token=setup.token)).body["builds"]
    assert listed_build["context"]["runner_name"] == "worker"


async def wait_until_parked(runtime: Runtime) -> None:
    """Until a claim is parked in the dispatcher (the caller bounds the wait)."""
    while runtime.scheduling.depth()[1] == 0:  # noqa: ASYNC110
        await trio.sleep(0.01)


async def test_a_deleted_runner_loses_its_parked_claim_and_the_build_stays_queued(
    setup: Setup, runtime: Runtime
) -> None:
    runner = await setup.runner("leaving")
    other = await setup.runner("staying")
    answers: list[Any] = []

    async def park() -> None:
        answers.append(
            await setup.api.post(
                f"/v1/runners/{runner.id}/claim",
                json={"protocol_version": 4, "wait_seconds": 30},
                token=runner.token,
            )
        )

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(park)
            await wait_until_parked(runtime)
            gone = await setup.api.call("DELETE", f"/v1/runners/{runner.id}", token=setup.token)
            assert gone.status == 204
            build = await setup.trigger()
    assert (answers[0].status, answers[0].code) == (401, "invalid_token")
    assert (await setup.build(build["id"]))["build"]["status"] == "queued"
    job = await other.claim()
    assert job is not None and job["build_id"] == build["id"]


async def test_a_parked_runner_is_assigned_a_new_build_in_the_triggers_transaction(
    setup: Setup, runtime: Runtime, store: Store
) -> None:
    runner = await setup.runner("waiting")
    jobs: list[dict[str, Any] | None] = []

    async def park() -> None:
        jobs.append(await runner.claim(wait=30))

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(park)
            await wait_until_parked(runtime)
            build = await setup.trigger()
    [job] = jobs
    assert job is not None and job["build_id"] == build["id"]

    async def transactions(conn: Connection) -> set[str]:
        rows = await conn.fetch(
            """SELECT xmin::text AS xid FROM builds WHERE id = $1
               UNION SELECT xmin::text FROM build_events WHERE build_id = $1""",
            build["id"],
        )
        return {row["xid"] for row in rows}

    # Created, scheduled and assigned to the waiting runner in one commit, its events too.
    assert len(await store.db.run(transactions)) == 1
    detail = await setup.build(build["id"])
    assert detail["build"]["status"] == "assigned"
    assert [e["to_status"] for e in detail["events"]] == ["queued", "scheduled", "assigned"]


# -- runner side: every protocol route checks the runner token the same way ---------------------


def runner_routes(runner_id: str, build_id: str) -> list[tuple[str, str, object]]:
    """The runner-token routes of contract §5 (artifacts and signing aside), valid bodies."""
    job = f"/v1/runners/{runner_id}/jobs/{build_id}"
    return [
        ("POST", f"/v1/runners/{runner_id}/heartbeat", {"status": "online"}),
        ("POST", f"/v1/runners/{runner_id}/claim", {"protocol_version": 4}),
        ("GET", job, None),
        ("POST", f"{job}/status", {"status": "running"}),
        ("POST", f"{job}/logs", {"chunks": []}),
    ]


async def test_runner_routes_check_the_runner_token(api: Api, owner_token: str) -> None:
    first = await register(api, owner_token, "a")
    second = await register(api, owner_token, "b")
    credentials = [
        (None, 401, "missing_auth"),
        ("not-a-token", 401, "invalid_token"),
        ("cd" * 32, 401, "invalid_token"),
        (owner_token, 401, "invalid_token"),
        (second["token"], 403, "runner_mismatch"),
    ]
    for method, route, body in runner_routes(first["id"], MISSING):
        for token, status, code in credentials:
            reply = await api.call(method, route, json=body, token=token)
            assert (reply.status, reply.code) == (status, code), (method, route, token)
    shown = await api.get(f"/v1/runners/{first['id']}", token=owner_token)
    assert shown.body["runner"]["status"] == "offline"


async def test_job_routes_answer_not_found_for_unknown_builds(api: Api, owner_token: str) -> None:
    runner = await register(api, owner_token)
    for build_id in (MISSING, "not-a-uuid"):
        for method, route, body in runner_routes(runner["id"], build_id)[2:]:
            reply = await api.call(method, route, json=body, token=runner["token"])
            assert (reply.status, reply.code) == (404, "not_found"), (method, route)


async def test_claim_checks_the_runner_before_the_protocol(api: Api, owner_token: str) -> None:
    first = await register(api, owner_token, "a")
    second = await register(api, owner_token, "b")
    path = f"/v1/runners/{first['id']}/claim"
    other = await api.post(path, json={"protocol_version": 3}, token=second["token"])
    assert (other.status, other.code) == (403, "runner_mismatch")
    own = await api.post(path, json={"protocol_version": 5}, token=first["token"])
    assert (own.status, own.code) == (409, "runner_protocol_mismatch")


# -- the runner pause (direct_macos_runner_paused) ----------------------------------------------

MAC = {"os": "darwin", "arch": "arm64", "agent": "oore-runner"}  # how oore's agent reports a Mac


async def pause(setup: Setup, paused: bool) -> None:
    reply = await setup.api.call(
        "PUT",
        "/v1/settings/preferences",
        json={"key_storage_mode": "file", "direct_macos_runner_paused": paused},
        token=setup.token,
    )
    assert reply.status == 200, reply.body


async def test_the_runner_pause_holds_back_macos_runners_and_no_other(setup: Setup) -> None:
    mac = await setup.runner("mac", capabilities=MAC)
    rust = await setup.runner("mac-rust", capabilities={"os": "macos", "protocol_version": 4})
    linux = await setup.runner("linux", capabilities={"os": "linux"})
    later_mac = await setup.runner("said-nothing")
    assert await later_mac.claim() is None  # remembered without capabilities
    beat = await setup.api.post(
        f"/v1/runners/{later_mac.id}/heartbeat",
        json={"status": "online", "capabilities": {"os": "Darwin"}},
        token=later_mac.token,
    )
    assert beat.status == 204
    await pause(setup, True)
    first, second = await setup.trigger(), await setup.trigger()
    for runner in (mac, rust, later_mac):
        assert await runner.claim() is None
    job = await linux.claim()
    assert job is not None and job["build_id"] == first["id"]
    assert (await setup.build(second["id"]))["build"]["status"] == "queued"
    await pause(setup, False)
    job = await mac.claim()
    assert job is not None and job["build_id"] == second["id"]


async def test_a_waiting_macos_claim_gets_its_build_when_the_pause_is_lifted(
    setup: Setup, runtime: Runtime
) -> None:
    mac = await setup.runner("mac", capabilities=MAC)
    await pause(setup, True)
    jobs: list[dict[str, Any] | None] = []

    async def park() -> None:
        jobs.append(await mac.claim(wait=30))

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(park)
            await wait_until_parked(runtime)
            build = await setup.trigger()  # not handed to the paused runner waiting
            assert (await setup.build(build["id"]))["build"]["status"] == "queued"
            assert not jobs
            await pause(setup, False)
    [job] = jobs
    assert job is not None and job["build_id"] == build["id"]
    assert (await setup.build(build["id"]))["build"]["status"] == "assigned"
