"""``GET /v1/events/stream`` over real loopback HTTP: build and runner changes as they
happen, to those who may see them, within bounded streams."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from oore.domain.events import RESYNC, Audience
from oore.domain.users import Role
from oore.live.events import Subscriber
from oore.runtime import Runtime
from oore.services.events import EventsConfig
from tests.http.builds_kit import Setup, repo, setup
from tests.http.conftest import Api, SignedIn, UserFactory
from tests.http.sse_kit import Stream, read_stream, served, until
from tests.http.test_projects import add_member

__all__ = ["repo", "served", "setup"]

# A client that stops reading a stream early leaves httpx's body generators to the
# garbage collector, which warns; the server side is what is under test here.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

STREAM = "/v1/events/stream"
QUICK = EventsConfig(check_every=0.2, keep_alive=0.3)


@pytest.fixture
def events_config() -> EventsConfig:
    return QUICK


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def watching(served: str, headers: dict[str, str]) -> AsyncIterator[Stream]:
    """An open events stream, read in the background, once it said ``ready``."""
    stream = Stream()
    async with (
        httpx.AsyncClient(base_url=served, timeout=30) as client,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(read_stream, client, STREAM, headers, stream)
        await until(lambda: bool(stream.named("ready")) or stream.ended)
        yield stream
        nursery.cancel_scope.cancel()


def builds(stream: Stream, build_id: str | None = None) -> list[dict[str, Any]]:
    found = [event.json()["build"] for event in stream.named("build")]
    return [b for b in found if build_id is None or b["id"] == build_id]


def statuses(stream: Stream, build_id: str) -> list[str]:
    return [build["status"] for build in builds(stream, build_id)]


def runner_events(stream: Stream) -> list[dict[str, Any]]:
    return [event.json() for event in stream.named("runner")]


async def second_project(api: Api, token: str, repo: Path) -> Setup:
    """Another project with its pipeline, on the same repository."""
    project = await api.post(
        "/v1/projects", json={"name": "other", "local_repository_path": str(repo)}, token=token
    )
    assert project.status == 201, project.body
    project_id = project.body["project"]["id"]
    created = await api.post(
        f"/v1/projects/{project_id}/pipelines",
        json={"name": "ci", "execution_config": {"platforms": ["android"], "commands": {}}},
        token=token,
    )
    assert created.status == 201, created.body
    return Setup(api, token, project_id, created.body["pipeline"]["id"], "")


async def member(api: Api, owner: str, project_id: str, user: SignedIn) -> None:
    added = await api.post(
        f"/v1/projects/{project_id}/members",
        json={"user_id": user.user.id, "role": "viewer"},
        token=owner,
    )
    assert added.status == 201, added.body


@pytest.fixture
async def runner_process(tmp_path: Path) -> AsyncIterator[Any]:
    """Start real ``oore runner`` processes; each is stopped (SIGTERM, then SIGKILL) after."""
    async with trio.open_nursery() as nursery:

        async def start(server: str, token: str, name: str) -> None:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("OORED_", "OORE_"))}
            log = (tmp_path / f"runner-{name}.log").open("wb")
            command = [
                sys.executable,
                "-m",
                "oore.cli",
                "runner",
                "--server",
                server,
                "--name",
                name,
                "--work-dir",
                str(tmp_path / f"work-{name}"),
            ]
            await nursery.start(
                partial(
                    trio.run_process,
                    command,
                    check=False,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=dict(env, PYTHONUNBUFFERED="1", OORE_RUNNER_TOKEN=token),
                )
            )
            log.close()

        yield start
        nursery.cancel_scope.cancel()


async def test_a_real_runner_takes_a_build_through_each_state_in_order(
    setup: Setup, served: str, runner_process: Any
) -> None:
    async with watching(served, bearer(setup.token)) as stream:
        build = await setup.trigger()
        await runner_process(served, setup.token, "real")
        await until(lambda: statuses(stream, build["id"])[-1:] == ["succeeded"], within=60)
        await until(lambda: any(r["runner"]["status"] == "online" for r in runner_events(stream)))
    assert statuses(stream, build["id"]) == ["queued", "assigned", "running", "succeeded"]
    # Each event is the build as GET /v1/builds/{id} shows it at that moment.
    assert builds(stream, build["id"])[-1] == (await setup.build(build["id"]))["build"]
    assigned = builds(stream, build["id"])[1]
    assert assigned["context"] == {"project_name": "app", "pipeline_name": "ci"} | {
        "runner_name": "real"
    }
    registered = runner_events(stream)[0]["runner"]
    assert registered["name"] == "real" and assigned["runner_id"] == registered["id"]


async def test_members_see_their_projects_builds_and_no_others(
    setup: Setup, served: str, make_user: UserFactory, repo: Path
) -> None:
    other = await second_project(setup.api, setup.token, repo)
    developer = await make_user(Role.DEVELOPER)
    await member(setup.api, setup.token, setup.project_id, developer)
    outsider = await make_user(Role.DEVELOPER)
    async with (
        watching(served, bearer(developer.token)) as theirs,
        watching(served, bearer(outsider.token)) as nobodys,
        watching(served, bearer(setup.token)) as owners,
    ):
        mine = await setup.trigger()
        hidden = await other.trigger()
        canceled = await setup.api.post(f"/v1/builds/{hidden['id']}/cancel", token=setup.token)
        assert canceled.status == 200
        await until(lambda: statuses(owners, hidden["id"]) == ["queued", "canceled"])
        await until(lambda: statuses(theirs, mine["id"]) == ["queued"])
    assert {build["project_id"] for build in builds(theirs)} == {setup.project_id}
    assert builds(nobodys) == []
    assert statuses(owners, mine["id"]) == ["queued"]


async def test_runner_events_go_only_to_those_who_may_read_runners(
    setup: Setup, served: str, make_user: UserFactory
) -> None:
    viewer = await make_user(Role.QA_VIEWER)
    developer = await make_user(Role.DEVELOPER)
    async with (
        watching(served, bearer(viewer.token)) as blind,
        watching(served, bearer(developer.token)) as sees,
    ):
        # An event carries the runner as it is when the hub gets to it, so each change
        # waits for the event of the one before (a busy hub would fold them together).
        runner = await setup.runner("fleet-1")
        await until(lambda: len(runner_events(sees)) == 1)
        path = f"/v1/runners/{runner.id}"
        assert (await setup.api.post(f"{path}/drain", token=setup.token)).status == 200
        await until(lambda: len(runner_events(sees)) == 2)
        assert (await setup.api.call("DELETE", path, token=setup.token)).status == 204
        await until(lambda: len(runner_events(sees)) == 3)
    registered, drained, deleted = runner_events(sees)
    assert registered["runner"]["name"] == "fleet-1" and not registered["runner"]["draining"]
    assert drained["runner"]["draining"] is True
    assert deleted == {"runner": {"id": runner.id}, "deleted": True}
    assert runner_events(blind) == []


async def test_the_browser_cookie_opens_the_stream_and_no_credential_is_401(
    setup: Setup, served: str
) -> None:
    async with httpx.AsyncClient(base_url=served, timeout=10) as client:
        signed = await client.post(
            "/v1/auth/local/login", json={}, headers={"X-Oore-Session": "cookie"}
        )
        assert signed.status_code == 200
        cookie = {"Cookie": f"oore_session={client.cookies['oore_session']}"}
    async with watching(served, cookie) as stream:
        build = await setup.trigger()
        await until(lambda: statuses(stream, build["id"]) == ["queued"])
    refused = Stream()
    async with httpx.AsyncClient(base_url=served, timeout=10) as client:
        await read_stream(client, STREAM, {}, refused)
    assert (refused.status, refused.error["code"]) == (401, "missing_auth")


async def test_pings_in_silence_and_done_when_the_session_ends(
    setup: Setup, served: str, make_user: UserFactory
) -> None:
    developer = await make_user(Role.DEVELOPER)
    async with watching(served, bearer(developer.token)) as stream:
        await until(lambda: stream.comments.count("ping") >= 2)
        metrics = await setup.api.get("/metrics")
        assert "\noore_event_streams 1.0\n" in metrics.body
        out = await setup.api.post("/v1/auth/logout", token=developer.token)
        assert out.status == 200
        await until(lambda: stream.ended)
    assert [event.name for event in stream.events] == ["ready", "done"]
    assert stream.named("done")[0].data == "authorization_ended"


async def test_a_new_membership_resyncs_the_stream_and_shows_that_project(
    setup: Setup, served: str, make_user: UserFactory
) -> None:
    developer = await make_user(Role.DEVELOPER)
    async with watching(served, bearer(developer.token)) as stream:
        before = await setup.trigger()
        await member(setup.api, setup.token, setup.project_id, developer)
        await until(lambda: bool(stream.named("resync")))
        after = await setup.trigger()
        await until(lambda: statuses(stream, after["id"]) == ["queued"])
    assert builds(stream, before["id"]) == []


@pytest.mark.parametrize(
    "events_config", [EventsConfig(viewers_per_user=2, viewers_total=3, check_every=0.2)]
)
async def test_streams_are_capped_per_user_and_in_total_before_they_start(
    setup: Setup, served: str, make_user: UserFactory, runtime: Runtime
) -> None:
    other = await make_user(Role.DEVELOPER)
    third = await make_user(Role.DEVELOPER)
    owner = bearer(setup.token)
    async with watching(served, owner), watching(served, owner):
        refused = Stream()
        async with httpx.AsyncClient(base_url=served, timeout=10) as client:
            await read_stream(client, STREAM, owner, refused)
            assert (refused.status, refused.error["code"]) == (429, "stream_limit")
            async with watching(served, bearer(other.token)):
                full = Stream()
                await read_stream(client, STREAM, bearer(third.token), full)
                assert (full.status, full.error["code"]) == (503, "stream_capacity")
    # Closed streams give their places back.
    await until(lambda: runtime.events.open_streams == 0)
    async with watching(served, bearer(third.token)) as stream:
        assert stream.status == 200


@pytest.mark.parametrize("events_config", [EventsConfig(stream_seconds=0.5, keep_alive=0.1)])
async def test_a_stream_ends_after_its_lifetime(setup: Setup, served: str) -> None:
    async with watching(served, bearer(setup.token)) as stream:
        await until(lambda: stream.ended)
    assert stream.status == 200 and stream.named("done") == []


@pytest.mark.parametrize("events_config", [EventsConfig(viewer_buffer_bytes=4096)])
async def test_a_reader_that_falls_behind_holds_bounded_memory_and_is_told_to_resync(
    setup: Setup, runtime: Runtime
) -> None:
    build = await setup.trigger()
    session = await runtime.identity.authenticate(f"Bearer {setup.token}")
    events = await runtime.events.open_stream(f"Bearer {setup.token}")
    stream = aiter(events)
    assert (await anext(stream)).startswith(b"retry:")  # ready; now it reads no more
    (subscriber,) = runtime.events.hub.subscribers
    detail = await runtime.builds.visible(session, build["id"])
    for _ in range(200):
        runtime.scheduling.events.build_changed(detail)
    await until(lambda: subscriber.missed)
    assert subscriber.queued_bytes == 0
    assert await anext(stream) == RESYNC
    # Once it reads again, changes flow again (after a resync each time it fell behind
    # while the flood drains: what arrives while it is behind is dropped, not queued).
    with trio.fail_after(10):
        while True:
            runtime.scheduling.events.build_changed(detail)
            chunk = await anext(stream)
            assert subscriber.queued_bytes <= 4096
            if chunk.startswith(b"event: build\n"):
                break
            assert chunk == RESYNC
    await events.aclose()
    assert runtime.events.open_streams == 0 and not runtime.events.hub.subscribers
    metrics = await setup.api.get("/metrics")
    assert f"\noore_event_stream_resyncs_total {float(runtime.events.resyncs)}\n" in metrics.body
    assert runtime.events.resyncs >= 1


def test_a_subscriber_buffer_never_exceeds_its_limit() -> None:
    subscriber = Subscriber(Audience(None, True), limit=100)
    for _ in range(3):
        subscriber.offer(b"x" * 40)
    assert subscriber.missed and subscriber.queued_bytes == 0 and not subscriber.queue
    subscriber.offer(b"y" * 10)
    assert not subscriber.queue  # dropped until the stream has said resync
    subscriber.resync()
    subscriber.offer(b"z" * 10)
    assert subscriber.take() == [b"z" * 10]


@pytest.mark.parametrize("events_config", [EventsConfig(check_every=3600.0, keep_alive=0.3)])
async def test_no_event_after_the_session_ends_without_waiting_for_the_recheck(
    setup: Setup, served: str, make_user: UserFactory
) -> None:
    developer = await make_user(Role.DEVELOPER)
    await add_member(setup.api, setup.token, setup.project_id, developer.user.id, "viewer")
    async with watching(served, bearer(developer.token)) as stream:
        out = await setup.api.post("/v1/auth/logout", token=developer.token)
        assert out.status == 200
        await setup.trigger()  # a build it could see, had its session not ended
        await until(lambda: stream.ended)
    assert [event.name for event in stream.events] == ["ready", "done"]
    assert stream.named("done")[0].data == "authorization_ended"
