"""Build outcomes reach notification channels: which outcome goes to which channel, what
each kind of channel receives, retries with backoff, and outcomes that outlive a crash."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from oore.domain.notifications import BACKOFF, MAX_ATTEMPTS
from oore.runtime import Runtime, open_runtime
from oore.scheduling import SchedulingConfig
from oore.services.artifact_storage import ArtifactsConfig
from oore.services.logs import LogConfig
from oore.services.network import NetworkDefaults
from oore.store import Store
from oore.store.database import Connection
from tests.http.artifacts_kit import running_job
from tests.http.builds_kit import Setup, make_setup, repo
from tests.http.conftest import Api, FakeClock
from tests.notify_kit import MailServer, WebhookReceiver, mail_server, webhook_receiver

__all__ = ["repo"]

ROOT = "/v1/settings/notification-channels"
SECRET = "hmac-secret-for-deliveries-000001"
PUBLIC = "https://ci.example.com"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as found:
        yield found


@pytest.fixture
async def setup(api: Api, owner_token: str, repo: Path) -> Setup:
    return await make_setup(api, owner_token, repo)


async def channel(api: Api, token: str, **body: Any) -> str:
    reply = await api.post(ROOT, json=body, token=token)
    assert reply.status == 201, reply.body
    channel_id: str = reply.body["channel"]["id"]
    return channel_id


async def hook(api: Api, token: str, url: str, events: list[str], **extra: Any) -> str:
    return await channel(
        api, token, name=f"hook {events}", kind="webhook", url=url, events=events, **extra
    )


async def deliveries(api: Api, token: str, channel_id: str) -> list[dict[str, Any]]:
    reply = await api.get(f"{ROOT}/{channel_id}/deliveries", token=token)
    assert reply.status == 200, reply.body
    found: list[dict[str, Any]] = reply.body["deliveries"]
    return found


async def drain(runtime: Runtime) -> None:
    with trio.fail_after(10):
        await runtime.notifications.drain_now()


async def fail(setup: Setup) -> str:
    job = await running_job(setup)
    ended = await job.runner.report(job.build_id, "failed", exit_code=1, error_message="boom")
    assert ended.status == 200, ended.body
    return job.build_id


async def succeed(setup: Setup) -> str:
    job = await running_job(setup)
    ended = await job.runner.report(job.build_id, "succeeded", exit_code=0)
    assert ended.status == 200, ended.body
    return job.build_id


async def cancel(setup: Setup) -> str:
    build = await setup.trigger()
    canceled = await setup.api.post(f"/v1/builds/{build['id']}/cancel", token=setup.token)
    assert canceled.status == 200, canceled.body
    build_id: str = build["id"]
    return build_id


async def test_a_failed_build_reaches_a_webhook_mattermost_and_email(
    api: Api, owner_token: str, runtime: Runtime, setup: Setup, receiver: WebhookReceiver
) -> None:
    public = await api.call(
        "PUT",
        "/v1/settings/external-access/network",
        json={"public_url": PUBLIC, "allowed_origins": [PUBLIC]},
        token=owner_token,
    )
    assert public.status == 200, public.body
    with mail_server() as smtp, webhook_receiver("/hooks/mm-token") as chat:
        await hook(api, owner_token, receiver.url, ["build_failed"], secret=SECRET)
        await channel(
            api, owner_token, name="chat", kind="mattermost", url=chat.url, events=["build_failed"]
        )
        await channel(api, owner_token, **_email(smtp))
        build_id = await fail(setup)
        await drain(runtime)
        detail = (await setup.build(build_id))["build"]

        [got] = receiver.received
        assert got.signed_by(SECRET)
        assert got.headers["x-oore-event"] == "build_failed"
        assert got.headers["content-type"] == "application/json"
        payload = got.json()
        assert payload["delivery_id"] == got.headers["x-oore-delivery"]
        assert payload == {
            "event": "build_failed",
            "delivery_id": payload["delivery_id"],
            "build": {
                "id": build_id,
                "number": detail["build_number"],
                "status": "failed",
                "project_id": setup.project_id,
                "project_name": "app",
                "pipeline_id": setup.pipeline_id,
                "pipeline_name": "ci",
                "branch": detail["branch"],
                "commit_sha": setup.head,
                "trigger_actor": detail["trigger_actor"],
                "url": f"{PUBLIC}/builds/{build_id}",
                "started_at": detail["started_at"],
                "finished_at": detail["finished_at"],
            },
        }

        [said] = chat.received
        assert "x-oore-signature" not in said.headers
        text = said.json()["text"]
        assert f"[app #{detail['build_number']} failed on {detail['branch']}]" in text
        assert f"({PUBLIC}/builds/{build_id})" in text

        [letter] = smtp.mails
        number, branch = detail["build_number"], detail["branch"]
        assert letter["Subject"] == f"[oore] app #{number} failed on {branch}"
        assert letter["From"] == "ci@example.com"
        assert letter["X-Oore-Event"] == "build_failed"
        body = letter.get_content()
        assert f"Commit: {setup.head}" in body
        assert f"Build: {PUBLIC}/builds/{build_id}" in body


def _email(smtp: MailServer) -> dict[str, Any]:
    return {
        "name": "mail",
        "kind": "email",
        "events": ["build_failed"],
        "email": {
            "smtp_host": smtp.host,
            "smtp_port": smtp.port,
            "smtp_security": "none",
            "from_address": "ci@example.com",
            "to_addresses": ["dev@example.com"],
        },
    }


async def test_each_outcome_goes_to_the_channels_that_chose_it(
    api: Api,
    owner_token: str,
    runtime: Runtime,
    setup: Setup,
    receiver: WebhookReceiver,
    store: Store,
    clock: FakeClock,
) -> None:
    url = receiver.url
    failed = await hook(api, owner_token, url, ["build_failed"])
    recovered = await hook(api, owner_token, url, ["build_recovered"])
    canceled = await hook(api, owner_token, url, ["build_canceled"])
    succeeded = await hook(api, owner_token, url, ["build_succeeded", "build_recovered"])
    elsewhere = await hook(
        api,
        owner_token,
        url,
        ["build_failed", "build_canceled"],
        project_ids=["00000000-0000-4000-8000-00000000beef"],
    )
    off = await hook(api, owner_token, url, ["build_failed"], enabled=False)
    mine = await hook(api, owner_token, url, ["build_canceled"], project_ids=[setup.project_id])

    first = await fail(setup)
    second = await cancel(setup)  # a canceled build has no verdict: it does not count
    third = await succeed(setup)  # recovers from the first
    fourth = await succeed(setup)  # nothing to recover from
    # The build timeout monitor's transition, written as it writes it.
    job = await running_job(setup)
    clock.advance(5)

    async def time_out(conn: Connection) -> None:
        await conn.execute(
            """UPDATE builds SET status = 'timed_out', finished_at = $2, updated_at = $2,
                   runner_id = NULL
               WHERE id = $1""",
            job.build_id,
            clock.now(),
        )

    await store.db.run(time_out)
    fifth = job.build_id
    sixth = await succeed(setup)  # recovers from the timeout
    await drain(runtime)

    async def seen(channel_id: str) -> list[tuple[str, str | None]]:
        return [
            (d["event"], d.get("build_id"))
            for d in reversed(await deliveries(api, owner_token, channel_id))
        ]

    assert await seen(failed) == [("build_failed", first), ("build_failed", fifth)]
    assert await seen(recovered) == [("build_recovered", third), ("build_recovered", sixth)]
    assert await seen(canceled) == [("build_canceled", second)]
    assert await seen(succeeded) == [
        ("build_recovered", third),
        ("build_succeeded", fourth),
        ("build_recovered", sixth),
    ]
    assert await seen(elsewhere) == []
    assert await seen(off) == []
    assert await seen(mine) == [("build_canceled", second)]

    bodies = {(r.json()["event"], r.json()["build"]["id"]): r.json() for r in receiver.received}
    assert len(receiver.received) == 9
    assert bodies[("build_failed", fifth)]["build"]["status"] == "timed_out"
    assert bodies[("build_recovered", third)]["previous_status"] == "failed"
    assert bodies[("build_recovered", sixth)]["previous_status"] == "timed_out"
    assert "previous_status" not in bodies[("build_failed", first)]
    assert all(d["status"] == "sent" for d in await deliveries(api, owner_token, failed))


async def test_a_refused_delivery_is_retried_with_backoff_then_given_up(
    api: Api,
    owner_token: str,
    runtime: Runtime,
    setup: Setup,
    receiver: WebhookReceiver,
    clock: FakeClock,
) -> None:
    flaky = await hook(api, owner_token, receiver.url, ["build_failed"], secret=SECRET)
    receiver.answers.extend([500])
    await fail(setup)
    await drain(runtime)
    [delivery] = await deliveries(api, owner_token, flaky)
    assert (delivery["status"], delivery["attempts"]) == ("pending", 1)
    assert delivery["last_error"] == "127.0.0.1 answered HTTP 500"
    assert delivery["next_attempt_at"] == clock.now() + BACKOFF[0]
    await drain(runtime)  # not due yet: nothing is sent
    assert len(receiver.received) == 1

    clock.advance(BACKOFF[0])
    await drain(runtime)
    [delivery] = await deliveries(api, owner_token, flaky)
    assert (delivery["status"], delivery["attempts"]) == ("sent", 2)
    first, second = receiver.received
    assert first.body == second.body  # the same delivery id: receivers can dedupe
    assert second.signed_by(SECRET)

    # A receiver that never takes it: tried MAX_ATTEMPTS times, then failed.
    with webhook_receiver() as down:
        down.answers.extend([503] * MAX_ATTEMPTS)
        dead = await hook(api, owner_token, down.url, ["build_failed"])
        queued = await api.post(f"{ROOT}/{dead}/test", token=owner_token)
        assert queued.status == 200
        await drain(runtime)
        for delay in BACKOFF:
            clock.advance(delay)
            await drain(runtime)
        [given_up] = await deliveries(api, owner_token, dead)
        assert (given_up["status"], given_up["attempts"]) == ("failed", MAX_ATTEMPTS)
        assert given_up["last_error"] == "127.0.0.1 answered HTTP 503"
        assert "next_attempt_at" not in given_up
        assert len(down.received) == MAX_ATTEMPTS
        clock.advance(BACKOFF[-1])
        await drain(runtime)
        assert len(down.received) == MAX_ATTEMPTS

    metrics = await api.get("/metrics")
    text = metrics.body
    assert 'oore_notifications_sent_total{kind="webhook",outcome="failed"} 1.0' in text
    assert 'oore_notifications_sent_total{kind="webhook",outcome="sent"} 1.0' in text
    assert (
        f'oore_notifications_sent_total{{kind="webhook",outcome="retried"}} {MAX_ATTEMPTS}.0'
        in text
    )
    assert "oore_notification_queue_depth 0.0" in text


async def test_an_unreachable_receiver_is_an_error_on_the_delivery(
    api: Api, owner_token: str, runtime: Runtime, setup: Setup, clock: FakeClock
) -> None:
    with webhook_receiver() as gone:
        url = gone.url  # nothing listens there once the block ended
    closed = await hook(api, owner_token, url, ["build_failed"])
    await fail(setup)
    await drain(runtime)
    [delivery] = await deliveries(api, owner_token, closed)
    assert (delivery["status"], delivery["attempts"]) == ("pending", 1)
    assert delivery["last_error"] == "127.0.0.1: ConnectError"

    # Disabled, the channel is owed nothing more: the retry ends the delivery.
    off = await api.call("PATCH", f"{ROOT}/{closed}", json={"enabled": False}, token=owner_token)
    assert off.status == 200, off.body
    clock.advance(BACKOFF[0])
    await drain(runtime)
    [delivery] = await deliveries(api, owner_token, closed)
    assert (delivery["status"], delivery["attempts"]) == ("failed", 2)
    assert delivery["last_error"] == "the channel was disabled"


async def test_an_outcome_outlives_a_daemon_that_stopped_before_sending_it(
    api: Api,
    owner_token: str,
    runtime: Runtime,
    setup: Setup,
    receiver: WebhookReceiver,
    store: Store,
    clock: FakeClock,
    scheduling_config: SchedulingConfig,
    log_config: LogConfig,
    artifacts_config: ArtifactsConfig,
    network_defaults: NetworkDefaults,
) -> None:
    await hook(api, owner_token, receiver.url, ["build_failed"], secret=SECRET)
    # The sender is gone, as in a daemon that dies right after the build ends.
    assert await runtime.supervisor.stop_child(runtime.notifications.worker.name)
    build_id = await fail(setup)

    async def waiting(conn: Connection) -> list[Any]:
        return list(
            await conn.fetch(
                "SELECT build_id, status FROM notification_deliveries WHERE status = 'pending'"
            )
        )

    # Written by the transaction that ended the build, before anyone tried to send it.
    [row] = await store.db.run(waiting)
    assert str(row["build_id"]) == build_id
    async with open_runtime(
        store, clock, scheduling_config, log_config, artifacts_config, network_defaults
    ) as restarted:
        await drain(restarted)
    [got] = receiver.received
    assert got.signed_by(SECRET)
    assert got.json()["build"]["id"] == build_id
    assert await store.db.run(waiting) == []
