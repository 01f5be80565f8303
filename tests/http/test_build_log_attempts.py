"""A requeued build keeps each attempt's log apart: reads, refusals and the live stream."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import trio

from oore.scheduling import SchedulingConfig
from oore.services.logs import LogConfig
from tests.http.builds_kit import Runner, Setup, eventually, repo, setup
from tests.http.test_build_logs import claimed, served, until

__all__ = ["repo", "served", "setup"]

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

LEASE = 0.5


@pytest.fixture
def scheduling_config() -> SchedulingConfig:
    return SchedulingConfig(runner_lease=LEASE)


@pytest.fixture
def log_config() -> LogConfig:
    return LogConfig(check_every=0.2, keep_alive=1.0)


def chunks(text: str, start: int, count: int) -> list[dict[str, Any]]:
    return [
        {"sequence": n, "content": f"{text}{n}", "stream": "stdout"}
        for n in range(start, start + count)
    ]


async def append(
    runner: Runner, build_id: str, lines: list[dict[str, Any]], attempt: int | None = None
) -> Any:
    body: dict[str, Any] = {"chunks": lines}
    if attempt is not None:
        body["attempt"] = attempt
    return await runner.api.post(
        f"/v1/runners/{runner.id}/jobs/{build_id}/logs", json=body, token=runner.token
    )


@dataclass
class Seen:
    """Every event of one SSE stream, in order: ("log", id, content), ("attempt", n, ""),
    ("done", 0, reason)."""

    events: list[tuple[str, Any, str]] = field(default_factory=list)

    def feed(self, block: str) -> None:
        fields: dict[str, str] = {}
        for raw in block.split("\n"):
            if raw and not raw.startswith(":"):
                name, _, value = raw.partition(": ")
                fields[name] = value
        match fields.get("event"):
            case "log":
                self.events.append(("log", fields["id"], json.loads(fields["data"])["content"]))
            case "attempt":
                self.events.append(("attempt", json.loads(fields["data"])["attempt"], ""))
            case "done":
                self.events.append(("done", 0, fields["data"]))

    def count(self, kind: str) -> int:
        return sum(1 for event in self.events if event[0] == kind)


async def watch(url: str, headers: dict[str, str], seen: Seen) -> None:
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("GET", url, headers=headers) as reply,
    ):
        assert reply.status_code == 200
        pending = ""
        async for text in reply.aiter_text():
            pending += text
            while "\n\n" in pending:
                block, pending = pending.split("\n\n", 1)
                seen.feed(block)
                if seen.count("done"):
                    return


def first_attempt(count: int) -> list[tuple[str, Any, str]]:
    return [("log", str(n), f"a{n}") for n in range(count)]


def second_attempt(start: int, count: int) -> list[tuple[str, Any, str]]:
    return [("log", f"2:{n}", f"b{n}") for n in range(start, start + count)]


async def test_a_requeued_build_shows_only_its_new_attempt_and_keeps_the_old_one(
    setup: Setup, served: str
) -> None:
    build, lost = await claimed(setup)
    build_id = build["id"]
    assert (await append(lost, build_id, chunks("a", 0, 18))).body == {"appended": 18}
    auth = {"Authorization": f"Bearer {setup.token}"}
    url = f"{served}/v1/builds/{build_id}/logs/stream"
    live = Seen()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch, url, auth, live)
        await until(lambda: live.count("log") == 18)
        # The runner stops calling: its lease runs out and the build is requeued.
        await eventually(setup, build_id, "queued")
        # A viewer hears of the new attempt before it has any line.
        await until(lambda: live.count("attempt") == 1)
        empty = await setup.api.get(f"/v1/builds/{build_id}/logs", token=setup.token)
        assert empty.body == {"logs": [], "total": 0, "attempt": 2}
        taker = await setup.runner("taker")
        job = await taker.claim()
        assert job is not None and job["attempt"] == 2
        assert (await taker.report(build_id, "running")).status == 200
        # Numbered from 0 again, like the lost attempt's lines: all of them are new.
        assert (await append(taker, build_id, chunks("b", 0, 25))).body == {"appended": 25}
        # The lost runner's late lines are refused, with or without its attempt.
        for late in (
            await append(lost, build_id, chunks("late", 18, 3), attempt=1),
            await append(lost, build_id, chunks("late", 0, 3)),
        ):
            assert (late.status, late.code) == (403, "runner_mismatch")
        assert (await append(taker, build_id, chunks("b", 25, 15), attempt=2)).body == {
            "appended": 15
        }
        assert (await taker.report(build_id, "succeeded", exit_code=0)).status == 200
    assert live.events == [
        *first_attempt(18),
        ("attempt", 2, ""),
        *second_attempt(0, 40),
        ("done", 0, "build_finished"),
    ]

    detail = await setup.build(build_id)
    assert detail["build"]["status"] == "succeeded" and detail["build"]["attempt"] == 2
    current = await setup.api.get(f"/v1/builds/{build_id}/logs", token=setup.token)
    assert current.body["attempt"] == 2 and current.body["total"] == 40
    assert [line["content"] for line in current.body["logs"]] == [f"b{n}" for n in range(40)]
    assert [line["sequence"] for line in current.body["logs"]] == list(range(40))
    earlier = await setup.api.get(f"/v1/builds/{build_id}/logs?attempt=1", token=setup.token)
    assert earlier.body["attempt"] == 1 and earlier.body["total"] == 18
    assert [line["content"] for line in earlier.body["logs"]] == [f"a{n}" for n in range(18)]
    page = await setup.api.get(
        f"/v1/builds/{build_id}/logs?attempt=1&after_sequence=15&limit=1", token=setup.token
    )
    assert [line["content"] for line in page.body["logs"]] == ["a16"]
    for query, status, code in (
        ("attempt=3", 404, "not_found"),
        ("attempt=0", 400, "invalid_input"),
        ("attempt=two", 400, "invalid_request"),
    ):
        wrong = await setup.api.get(f"/v1/builds/{build_id}/logs?{query}", token=setup.token)
        assert (wrong.status, wrong.code) == (status, code), query

    # Streams of the finished build: the current attempt, resumable within it only.
    for last_event_id, expected in (
        (None, [("attempt", 2, ""), *second_attempt(0, 40)]),
        ("17", [("attempt", 2, ""), *second_attempt(0, 40)]),  # an id of the first attempt
        ("2:9", second_attempt(10, 30)),
    ):
        again = Seen()
        headers = auth if last_event_id is None else {**auth, "Last-Event-ID": last_event_id}
        await watch(url, headers, again)
        assert again.events == [*expected, ("done", 0, "build_finished")], last_event_id


async def test_the_same_runner_taking_the_build_again_cannot_mix_in_its_old_attempt(
    setup: Setup,
) -> None:
    build, runner = await claimed(setup)
    build_id = build["id"]
    assert (await append(runner, build_id, chunks("a", 0, 5), attempt=1)).body == {"appended": 5}
    await eventually(setup, build_id, "queued")  # the runner went quiet past its lease
    job = await runner.claim()
    assert job is not None and job["build_id"] == build_id and job["attempt"] == 2
    stale = await append(runner, build_id, chunks("a", 5, 3), attempt=1)
    assert (stale.status, stale.code) == (403, "runner_mismatch")
    assert (await append(runner, build_id, chunks("b", 0, 3), attempt=2)).body == {"appended": 3}
    current = await setup.api.get(f"/v1/builds/{build_id}/logs", token=setup.token)
    assert [line["content"] for line in current.body["logs"]] == ["b0", "b1", "b2"]
    earlier = await setup.api.get(f"/v1/builds/{build_id}/logs?attempt=1", token=setup.token)
    assert [line["content"] for line in earlier.body["logs"]] == [f"a{n}" for n in range(5)]


async def test_a_runner_naming_no_attempt_writes_to_the_attempt_it_holds_now(
    setup: Setup,
) -> None:
    build, runner = await claimed(setup)
    build_id = build["id"]
    assert (await append(runner, build_id, chunks("a", 0, 2))).body == {"appended": 2}
    assert (await append(runner, build_id, chunks("a", 2, 2))).body == {"appended": 2}
    await eventually(setup, build_id, "queued")  # the runner went quiet past its lease
    refused = await append(runner, build_id, chunks("a", 4, 1))
    assert (refused.status, refused.code) == (403, "runner_mismatch")
    job = await runner.claim()
    assert job is not None and job["build_id"] == build_id and job["attempt"] == 2
    assert (await append(runner, build_id, chunks("b", 0, 3))).body == {"appended": 3}
    assert (await append(runner, build_id, chunks("b", 3, 1))).body == {"appended": 1}
    current = await setup.api.get(f"/v1/builds/{build_id}/logs", token=setup.token)
    assert [line["content"] for line in current.body["logs"]] == ["b0", "b1", "b2", "b3"]
    earlier = await setup.api.get(f"/v1/builds/{build_id}/logs?attempt=1", token=setup.token)
    assert [line["content"] for line in earlier.body["logs"]] == [f"a{n}" for n in range(4)]


async def test_a_runner_naming_no_attempt_takes_the_build_again_between_two_appends(
    setup: Setup,
) -> None:
    build, runner = await claimed(setup)
    build_id = build["id"]
    assert (await append(runner, build_id, chunks("a", 0, 2))).body == {"appended": 2}
    await eventually(setup, build_id, "queued")
    job = await runner.claim()
    assert job is not None and job["attempt"] == 2
    # its first append since: the attempt it appended to before is over, this one is not
    assert (await append(runner, build_id, chunks("b", 0, 2))).body == {"appended": 2}
    current = await setup.api.get(f"/v1/builds/{build_id}/logs", token=setup.token)
    assert [line["content"] for line in current.body["logs"]] == ["b0", "b1"]
