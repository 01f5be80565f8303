"""What the daemon logs as things happen: builds, runners and sign-ins, one event each."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from oore.domain.users import Role, UserStatus
from oore.eventlog import EventFormatter, event_of
from oore.runtime import Runtime
from oore.scheduling import SchedulingConfig
from oore.store import Store
from tests.http.builds_kit import Setup, eventually, repo, setup
from tests.http.conftest import REMOTE, Api, FakeClock, Reply
from tests.http.setup_kit import proxy_ready, vouch
from tests.http.test_oidc import clock, sign_in, signin_ready
from tests.oidc_kit import OidcProvider, oidc_provider

__all__ = ["clock", "oidc_provider", "repo", "setup", "signin_ready"]

LEASE = 1.0


@pytest.fixture
def scheduling_config() -> SchedulingConfig:
    return SchedulingConfig(runner_lease=LEASE)


class Events:
    """The event records logged during the test, by name, as their fields."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    def __call__(self, name: str) -> list[dict[str, Any]]:
        return [dict(fields) for logged, fields in self._logged() if logged == name]

    def names(self) -> list[str]:
        return [logged for logged, _ in self._logged()]

    def _logged(self) -> list[tuple[str, dict[str, object]]]:
        return [found for record in self.caplog.records if (found := event_of(record))]

    def text(self) -> str:
        """Every record as the daemon would write it."""
        formatter = EventFormatter("text")
        return "\n".join(formatter.format(record) for record in self.caplog.records)


@pytest.fixture
def events(caplog: pytest.LogCaptureFixture) -> Iterator[Events]:
    caplog.set_level(logging.INFO)
    yield Events(caplog)


def only(found: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(found) == 1, found
    return found[0]


async def test_a_build_is_logged_when_queued_claimed_and_finished(
    setup: Setup, events: Events
) -> None:
    runner = await setup.runner("mac-1", labels=["macos"])
    build = await setup.trigger(branch="main")
    queued = only(events("build.queued"))
    assert queued == {
        "build_id": build["id"],
        "project": "app",
        "number": 1,
        "pipeline": "ci",
        "trigger": "manual",
        "by": "owner@local",
        "request_id": queued["request_id"],
    }
    job = await runner.claim()
    assert job is not None
    claimed = only(events("build.claimed"))
    assert (claimed["build_id"], claimed["project"], claimed["number"]) == (build["id"], "app", 1)
    assert (claimed["runner_id"], claimed["runner"], claimed["attempt"]) == (runner.id, "mac-1", 1)
    assert claimed["queued_s"] == 0  # the test's wall clock stands still
    await runner.report(build["id"], "running")
    assert events("build.finished") == []
    await runner.report(build["id"], "succeeded", exit_code=0)
    finished = only(events("build.finished"))
    assert (finished["build_id"], finished["project"], finished["number"]) == (
        build["id"],
        "app",
        1,
    )
    assert (finished["status"], finished["duration_s"]) == ("succeeded", 0)
    assert finished["runner_id"] == runner.id

    waiting = await setup.trigger()
    canceled = await setup.api.post(f"/v1/builds/{waiting['id']}/cancel", token=setup.token)
    assert canceled.status == 200, canceled.body
    last = events("build.finished")[-1]
    assert (last["build_id"], last["number"], last["status"]) == (waiting["id"], 2, "canceled")
    assert last["duration_s"] is None and last["runner_id"] is None
    assert runner.token not in events.text() and setup.token not in events.text()


async def test_runners_are_logged_when_registered_drained_lost_and_deleted(
    setup: Setup, events: Events
) -> None:
    runner = await setup.runner("linux-1", labels=["linux", "x64"])
    registered = only(events("runner.registered"))
    assert registered["runner_id"] == runner.id and registered["name"] == "linux-1"
    assert registered["labels"] == ("linux", "x64") and registered["by"] == "owner@local"
    enrollment = await setup.api.post(
        "/v1/runner-enrollment-tokens", json={"label": "fleet"}, token=setup.token
    )
    enrolled = await setup.api.post(
        "/v1/runners/register",
        json={"name": "linux-2"},
        token=enrollment.body["token"],
    )
    assert enrolled.status == 200, enrolled.body
    assert events("runner.registered")[-1]["by"] == "enrollment_token"

    for action in ("drain", "undrain"):
        reply = await setup.api.post(f"/v1/runners/{runner.id}/{action}", token=setup.token)
        assert reply.status == 200, reply.body
    assert only(events("runner.drained"))["runner_id"] == runner.id
    assert only(events("runner.undrained"))["by"] == "owner@local"

    build = await setup.trigger()
    assert await runner.claim() is not None
    await eventually(setup, build["id"], "queued", within=LEASE * 20)
    lost = only(events("runner.lost"))
    assert (lost["runner_id"], lost["lease_s"]) == (runner.id, LEASE)
    requeued = only(events("build.requeued"))
    assert (requeued["build_id"], requeued["runner_id"], requeued["attempt"]) == (
        build["id"],
        runner.id,
        2,
    )
    assert events.names().index("runner.lost") < events.names().index("build.requeued")

    spare = enrolled.body["runner"]["id"]
    deleted = await setup.api.call("DELETE", f"/v1/runners/{spare}", token=setup.token)
    assert deleted.status == 204, deleted.body
    assert only(events("runner.deleted")) == {
        "runner_id": spare,
        "by": "owner@local",
        "request_id": deleted.headers["X-Request-Id"],
    }
    text = events.text()
    for secret in (runner.token, enrollment.body["token"], enrolled.body["token"], setup.token):
        assert secret not in text


async def test_local_sign_ins_and_failures_are_logged_without_credentials(
    api: Api, events: Events
) -> None:
    first = await api.post("/v1/auth/local/login", json={})
    assert first.status == 200
    signed_in = only(events("auth.signed_in"))
    assert signed_in == {
        "method": "local",
        "user_id": first.body["user"]["user_id"],
        "email": "owner@local",
        "role": "owner",
        "client_ip": "127.0.0.1",
        "request_id": first.headers["X-Request-Id"],
    }
    refused = await api.post("/v1/auth/local/login", json={"email": "nobody@example.com"})
    remote = await api.post("/v1/auth/local/login", json={}, peer=REMOTE)
    failures = events("auth.signin_failed")
    assert [(f["method"], f["status"], f["code"]) for f in failures] == [
        ("local", refused.status, refused.code),
        ("local", remote.status, remote.code),
    ]
    assert failures[1]["client_ip"] == REMOTE[0]
    assert first.body["session_token"] not in events.text()


async def test_trusted_proxy_sign_ins_are_logged_without_the_shared_secret(
    api: Api, runtime: Runtime, events: Events
) -> None:
    await proxy_ready(api, runtime)
    headers = vouch("owner@example.com")
    reply: Reply = await api.post("/v1/auth/trusted-proxy/login", headers=headers, peer=REMOTE)
    assert reply.status == 200, reply.body
    signed_in = events("auth.signed_in")[-1]
    assert (signed_in["method"], signed_in["email"]) == ("trusted_proxy", "owner@example.com")
    wrong = dict(headers)
    secret_header = next(name for name in wrong if "secret" in name.lower())
    wrong[secret_header] = "not-the-shared-secret"
    refused = await api.post("/v1/auth/trusted-proxy/login", headers=wrong, peer=REMOTE)
    assert refused.status in (401, 403), refused.body
    failed = only(events("auth.signin_failed"))
    assert (failed["method"], failed["code"]) == ("trusted_proxy", refused.code)
    text = events.text()
    assert headers[secret_header] not in text and "not-the-shared-secret" not in text
    assert reply.body["session_token"] not in text


async def test_oidc_sign_ins_are_logged(
    api: Api,
    store: Store,
    clock: FakeClock,
    signin_ready: str,
    oidc_provider: OidcProvider,
    events: Events,
) -> None:
    await store.users.create(
        email="owner@example.com",
        role=Role.ADMIN,
        status=UserStatus.ACTIVE,
        subject="owner-sub",
        now=clock.now(),
    )
    reply = await sign_in(api, oidc_provider, "owner-sub")
    assert reply.status == 200, reply.body
    signed_in = events("auth.signed_in")[-1]  # the owner's local sign-in came first
    assert (signed_in["method"], signed_in["user_id"]) == ("oidc", reply.body["user"]["user_id"])
    stale = await api.post("/v1/auth/oidc/callback", json={"code": "c", "state": "unknown"})
    failed = only(events("auth.signin_failed"))
    assert (failed["method"], failed["status"], failed["code"]) == ("oidc", 400, stale.code)
    assert reply.body["session_token"] not in events.text()
