"""``/metrics`` as an operator reads it: builds, the queue, runners, logs, webhooks, the pool."""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from oore.http.app import create_app
from oore.http.metrics import QUEUE_LABEL_SETS, queue_depths
from oore.runtime import Runtime, open_runtime
from oore.services.artifact_storage import ArtifactsConfig
from oore.store import open_store
from oore.store.embedded import EmbeddedPostgres
from tests.http.builds_kit import Setup, git, make_setup, repo, setup
from tests.http.conftest import Api, FakeClock
from tests.http.test_build_logs import Events, chunks, read_stream, served, until
from tests.http.test_webhooks import Hooks, hooks
from tests.webhook_kit import github_push

__all__ = ["hooks", "repo", "served", "setup"]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(api: Api) -> Samples:
    reply = await api.get("/metrics")
    assert reply.status == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(reply.body):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def live(samples: Samples) -> dict[str, float | None]:
    return {
        status: value(samples, "oore_builds", status=status)
        for status in ("queued", "scheduled", "assigned", "running")
    }


# The SSE client returns at ``done`` and leaves httpx's body generators to the garbage
# collector, which warns (as in test_build_logs); the server side is under test here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_build_run_through_the_api_shows_on_metrics(
    setup: Setup, served: str, clock: FakeClock, runtime: Runtime
) -> None:
    api: Api = setup.api
    first = await scrape(api)
    assert live(first) == {"queued": 0, "scheduled": 0, "assigned": 0, "running": 0}
    assert value(first, "oore_builds_finished_total", status="succeeded") == 0
    assert value(first, "oore_build_queue_wait_seconds_count") == 0
    assert series(first, "oore_build_queue_depth") == {}
    assert value(first, "oore_database_up") == 1
    assert value(first, "oore_database_pool_connections_max") == 4
    open_now = value(first, "oore_database_pool_connections_open")
    assert open_now is not None and open_now >= 1

    runner = await setup.runner("r1")
    heartbeat = await api.post(
        f"/v1/runners/{runner.id}/heartbeat", json={"status": "online"}, token=runner.token
    )
    assert heartbeat.status == 204, heartbeat.body
    build = await setup.trigger()
    other = await setup.trigger()
    queued = await scrape(api)
    assert live(queued) == {"queued": 2, "scheduled": 0, "assigned": 0, "running": 0}
    assert series(queued, "oore_build_queue_depth") == {frozenset({("runner_labels", "")}): 2}
    assert value(queued, "oore_runners", state="online") == 1
    assert value(queued, "oore_runners", state="offline") == 0

    clock.advance(7)
    job = await runner.claim()
    assert job is not None and job["build_id"] == build["id"]
    canceled = await api.post(f"/v1/builds/{other['id']}/cancel", token=setup.token)
    assert canceled.status == 200, canceled.body
    assert (await runner.report(build["id"], "running")).status == 200
    running = await scrape(api)
    assert live(running) == {"queued": 0, "scheduled": 0, "assigned": 0, "running": 1}
    assert value(running, "oore_build_queue_wait_seconds_count") == 1
    assert value(running, "oore_build_queue_wait_seconds_sum") == 7
    assert value(running, "oore_build_queue_wait_seconds_bucket", le="5.0") == 0
    assert value(running, "oore_build_queue_wait_seconds_bucket", le="10.0") == 1
    assert value(running, "oore_builds_finished_total", status="canceled") == 1
    assert value(running, "oore_build_duration_seconds_count", status="canceled") == 0

    events = Events()
    url = f"{served}/v1/builds/{build['id']}/logs/stream"
    auth = {"Authorization": f"Bearer {setup.token}"}
    async with httpx.AsyncClient(timeout=30) as client, trio.open_nursery() as nursery:
        nursery.start_soon(read_stream, client, url, auth, events)
        await until(lambda: runtime.logs.open_streams == 1)
        assert value(await scrape(api), "oore_log_viewers") == 1
        lines = chunks(0, 3, "héllo")
        assert (await runner.logs(build["id"], lines)).body == {"appended": 3}
        again = await runner.logs(build["id"], lines)  # a retry stores nothing new
        assert again.status == 200, again.body
        clock.advance(30)
        assert (await runner.report(build["id"], "succeeded")).status == 200
    assert events.done is not None and events.sequences == [0, 1, 2]

    done = await scrape(api)
    assert live(done) == {"queued": 0, "scheduled": 0, "assigned": 0, "running": 0}
    assert len(series(done, "oore_builds")) == 4 and len(series(done, "oore_runners")) == 4
    assert value(done, "oore_builds_finished_total", status="succeeded") == 1
    assert value(done, "oore_builds_finished_total", status="canceled") == 1
    assert value(done, "oore_builds_finished_total", status="failed") == 0
    assert value(done, "oore_build_duration_seconds_count", status="succeeded") == 1
    assert value(done, "oore_build_duration_seconds_sum", status="succeeded") == 30
    assert value(done, "oore_build_duration_seconds_bucket", status="succeeded", le="10.0") == 0
    assert value(done, "oore_build_duration_seconds_bucket", status="succeeded", le="30.0") == 1
    assert value(done, "oore_log_stored_lines_total") == 3
    stored = sum(len(line["content"].encode()) for line in lines)
    assert value(done, "oore_log_stored_bytes_total") == stored
    assert value(done, "oore_log_viewers") == 0
    assert value(done, "oore_build_queue_wait_seconds_count") == 1

    drained = await api.post(f"/v1/runners/{runner.id}/drain", token=setup.token)
    assert drained.status == 200, drained.body
    runners = await scrape(api)
    assert value(runners, "oore_runners", state="draining") == 1
    assert value(runners, "oore_runners", state="online") == 0


async def test_queue_depth_by_runner_labels_stays_bounded(
    api: Api, owner_token: str, repo: Path
) -> None:
    base = await make_setup(api, owner_token, repo)
    for n in range(QUEUE_LABEL_SETS + 3):
        created = await api.post(
            f"/v1/projects/{base.project_id}/pipelines",
            json={
                "name": f"ci-{n}",
                "execution_config": {"platforms": ["android"], "commands": {"build": ["true"]}},
                "runner_labels": ["linux", f"pool-{n:02}"],
            },
            token=owner_token,
        )
        assert created.status == 201, created.body
        kit = replace(base, pipeline_id=created.body["pipeline"]["id"])
        for _ in range(2 if n < QUEUE_LABEL_SETS else 1):  # the last three are shallower
            await kit.trigger()
    samples = await scrape(api)
    depth = {
        dict(labels)["runner_labels"]: v
        for labels, v in series(samples, "oore_build_queue_depth").items()
    }
    assert len(depth) == QUEUE_LABEL_SETS + 1
    assert depth["other"] == 3
    assert depth["linux,pool-00"] == 2
    assert "linux,pool-22" not in depth
    assert sum(depth.values()) == value(samples, "oore_builds", status="queued") == 2 * 20 + 3


async def test_builds_canceled_by_a_change_of_source_count_as_finished(
    setup: Setup, tmp_path: Path
) -> None:
    await setup.trigger()
    await setup.trigger()
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q", "-b", "main")
    git(other, "commit", "-q", "--allow-empty", "-m", "first")
    elsewhere = await setup.api.post(
        "/v1/projects",
        json={"name": "other", "local_repository_path": str(other)},
        token=setup.token,
    )
    assert elsewhere.status == 201, elsewhere.body
    moved = await setup.api.call(
        "PATCH",
        f"/v1/projects/{setup.project_id}",
        json={"repository_id": elsewhere.body["project"]["repository_id"]},
        token=setup.token,
    )
    assert moved.status == 200, moved.body
    samples = await scrape(setup.api)
    assert value(samples, "oore_builds_finished_total", status="canceled") == 2
    assert value(samples, "oore_builds", status="queued") == 0


def test_queue_depths_keep_the_deepest_sets_and_fold_the_rest() -> None:
    depths = {("a",): 5, (): 4, ("b", "c"): 4, ("d",): 1, ("other",): 2}
    assert queue_depths(depths, cap=3) == {"a": 5, "": 4, "b,c": 4, "other": 3}
    assert queue_depths(depths, cap=10) == {"a": 5, "": 4, "b,c": 4, "d": 1, "other": 2}
    assert queue_depths({}, cap=3) == {}


async def test_webhook_deliveries_by_outcome(hooks: Hooks) -> None:
    await hooks.pipeline(hooks.github_project)
    push = github_push()
    assert (await hooks.github_hook(push, delivery="d-1")).status == 200
    assert (await hooks.github_hook(push, delivery="d-1")).body == {"ok": True, "duplicate": True}
    assert (await hooks.github_hook(push, secret="wrong")).status == 401
    assert (await hooks.github_hook({"zen": "hi"}, event="ping")).status == 200
    unkeyed = [await hooks.github_hook(github_push(after=c * 40), delivery=" ") for c in "cd"]
    assert [r.status for r in unkeyed] == [200, 500]  # a fault of ours: the sender retries
    await hooks.settled()
    samples = await scrape(hooks.api)

    def received(outcome: str, provider: str = "github") -> float | None:
        return value(
            samples, "oore_webhook_deliveries_received_total", provider=provider, outcome=outcome
        )

    def handled(outcome: str, provider: str = "github") -> float | None:
        return value(
            samples, "oore_webhook_deliveries_handled_total", provider=provider, outcome=outcome
        )

    assert [received(o) for o in ("accepted", "duplicate", "rejected", "error")] == [3, 1, 1, 1]
    assert [handled(o) for o in ("processed", "ignored", "retried", "failed")] == [2, 1, 0, 0]
    assert received("accepted", "gitlab") == 0
    outcomes = {
        dict(labels)["outcome"]
        for labels in series(samples, "oore_webhook_deliveries_received_total")
    }
    assert outcomes == {"accepted", "duplicate", "rejected", "error"}
    assert value(samples, "oore_builds", status="queued") == 2


async def test_a_scrape_during_a_database_outage_still_answers(
    own_postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    server = own_postgres
    clock = FakeClock()
    async with open_store(server.uri, pool_size=4) as store:
        await store.instance.ensure(clock.now())
        artifacts = ArtifactsConfig(data_dir=tmp_path / "data")
        async with open_runtime(store, clock, artifacts_config=artifacts) as runtime:
            api = Api(create_app(runtime.app_services(store)))
            assert value(await scrape(api), "oore_builds", status="queued") == 0

            assert server.pid is not None
            os.kill(server.pid, signal.SIGKILL)
            with trio.fail_after(60):
                while store.db.available:  # the first failed query starts the outage
                    await scrape(api)
            during = await scrape(api)
            assert value(during, "oore_database_up") == 0
            assert series(during, "oore_builds") == {}
            assert series(during, "oore_runners") == {}
            assert value(during, "oore_log_viewers") == 0
            assert any(name == "http_requests_total" for name, _ in during)

            assert await trio.to_thread.run_sync(server.revive)
            with trio.fail_after(60):
                await store.db.wait_recovered(0)
            after = await scrape(api)
            assert value(after, "oore_database_up") == 1
            assert value(after, "oore_builds", status="queued") == 0
