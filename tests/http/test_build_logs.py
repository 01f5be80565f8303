"""Build logs over real loopback HTTP: ingestion rules, reads, stream tokens and SSE fan-out."""

from __future__ import annotations

import json
import socket
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from oore.domain.logs import MASK, LogLine, page_of
from oore.domain.users import Role, Session
from oore.http.json_out import answer_body
from oore.http.routes.builds import KeptLog, LogWindow, log_answer
from oore.runtime import Runtime
from oore.services.logs import Grant, LogConfig, LogPage
from tests.http.builds_kit import Runner, Setup, make_setup, repo, setup
from tests.http.conftest import Api, UserFactory
from tests.http.sse_kit import served
from tests.http.test_projects import add_member

__all__ = ["repo", "served", "setup"]

# A client that stops reading a stream early (that is what these tests do) leaves httpx's
# nested body generators to the garbage collector, which warns; the server side is what
# is under test here.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

LINE = "y" * 400


@pytest.fixture
def log_config() -> LogConfig:
    return LogConfig(viewer_buffer_bytes=64 * 1024, check_every=0.2, keep_alive=1.0)


@dataclass
class Events:
    """What one SSE client received, parsed."""

    logs: list[dict[str, Any]] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    done: str | None = None
    comments: int = 0

    def feed(self, block: str) -> None:
        fields: dict[str, str] = {}
        for raw in block.split("\n"):
            if raw.startswith(":"):
                self.comments += 1
            elif raw:
                name, _, value = raw.partition(": ")
                fields[name] = value
        if fields.get("event") == "log":
            self.ids.append(int(fields["id"]))
            self.logs.append(json.loads(fields["data"]))
        elif fields.get("event") == "done":
            self.done = fields["data"]

    @property
    def sequences(self) -> list[int]:
        return [entry["sequence"] for entry in self.logs]


async def read_stream(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    events: Events,
    *,
    stop_after: int | None = None,
) -> int:
    """Read SSE until ``done`` (or ``stop_after`` log events); answers the status code."""
    async with client.stream("GET", url, headers=headers) as reply:
        if reply.status_code != 200:
            return reply.status_code
        pending = ""
        async for text in reply.aiter_text():
            pending += text
            while "\n\n" in pending:
                block, pending = pending.split("\n\n", 1)
                events.feed(block)
                if events.done or (stop_after is not None and len(events.logs) >= stop_after):
                    return 200
    return 200


async def until(check: Callable[[], bool], within: float = 5) -> None:
    """Wait (bounded) for something another task makes true."""
    with trio.fail_after(within):
        while not check():  # noqa: ASYNC110
            await trio.sleep(0.01)


async def claimed(setup: Setup) -> tuple[dict[str, Any], Runner]:
    build = await setup.trigger()
    runner = await setup.runner()
    assert await runner.claim() is not None
    assert (await runner.report(build["id"], "running")).status == 200
    return build, runner


def chunks(start: int, count: int, text: str = LINE) -> list[dict[str, Any]]:
    return [
        {"sequence": n, "content": f"{n} {text}", "stream": "stdout"}
        for n in range(start, start + count)
    ]


async def test_backlog_then_live_lines_then_done(setup: Setup, served: str) -> None:
    build, runner = await claimed(setup)
    assert (await runner.logs(build["id"], chunks(0, 5))).body == {"appended": 5}
    events = Events()
    auth = {"Authorization": f"Bearer {setup.token}"}
    url = f"{served}/v1/builds/{build['id']}/logs/stream"
    async with httpx.AsyncClient(timeout=10) as client, trio.open_nursery() as nursery:
        nursery.start_soon(read_stream, client, url, auth, events)
        await until(lambda: len(events.logs) >= 5)
        await runner.logs(build["id"], chunks(5, 5))
        await runner.report(build["id"], "succeeded", exit_code=0)
    assert events.sequences == list(range(10)) and events.ids == list(range(10))
    assert events.done == "build_finished"
    # A finished build: the backlog, then done at once.
    again = Events()
    async with httpx.AsyncClient(timeout=10) as client:
        assert await read_stream(client, url, auth, again) == 200
    assert again.sequences == list(range(10)) and again.done == "build_finished"


async def test_hundreds_of_viewers_and_a_stalled_one(
    setup: Setup, served: str, runtime: Runtime
) -> None:
    build, runner = await claimed(setup)
    viewers = [Events() for _ in range(200)]
    auth = {"Authorization": f"Bearer {setup.token}"}
    path = f"/v1/builds/{build['id']}/logs/stream"
    host, port = served.removeprefix("http://").rsplit(":", 1)
    # The stalled viewer: a tiny receive window, and nobody reads it until the end.
    stalled = trio.socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await stalled.connect((host, int(port)))
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {setup.token}\r\n\r\n"
    await stalled.send(request.encode())
    total = 3000
    limits = httpx.Limits(max_connections=300)
    async with (
        httpx.AsyncClient(timeout=30, limits=limits) as client,
        trio.open_nursery() as nursery,
    ):
        for events in viewers:
            nursery.start_soon(read_stream, client, served + path, auth, events)
        await until(lambda: runtime.logs.open_streams == len(viewers) + 1, within=20)
        with trio.fail_after(30):  # the appends never wait for any viewer
            for start in range(0, total, 200):
                reply = await runner.logs(build["id"], chunks(start, 200))
                assert reply.body == {"appended": 200}
        await runner.report(build["id"], "succeeded", exit_code=0)
    for events in viewers:
        assert events.sequences == list(range(total)) and events.done == "build_finished"
    assert runtime.logs.streams.fanout.counts.lagged >= 1, "the stalled viewer never fell behind"
    # Now the stalled viewer reads: everything, in order, without a gap, then done.
    received = b""
    with trio.fail_after(30):
        while b"event: done" not in received:
            data = await stalled.recv(1 << 20)
            assert data, "stream closed before done"
            received += data
    stalled.close()
    assert runtime.logs.catch_ups >= 1  # it caught up from the database
    body = received.split(b"\r\n\r\n", 1)[1].decode(errors="replace")
    sequences = [int(part.split("\n", 1)[0]) for part in body.split("\nid: ")[1:]]
    assert sequences == list(range(total))


async def test_last_event_id_resumes_with_exactly_the_missing_lines(
    setup: Setup, served: str
) -> None:
    build, runner = await claimed(setup)
    await runner.logs(build["id"], chunks(0, 10, "a"))
    auth = {"Authorization": f"Bearer {setup.token}"}
    url = f"{served}/v1/builds/{build['id']}/logs/stream"
    first = Events()
    async with httpx.AsyncClient(timeout=10) as client:
        await read_stream(client, url, auth, first, stop_after=4)  # then the connection drops
    assert first.ids[:4] == [0, 1, 2, 3]
    await runner.logs(build["id"], chunks(10, 5, "b"))
    await runner.report(build["id"], "succeeded", exit_code=0)
    resumed = Events()
    async with httpx.AsyncClient(timeout=10) as client:
        await read_stream(client, url, {**auth, "Last-Event-ID": "3"}, resumed)
    assert resumed.sequences == list(range(4, 15)) and resumed.done == "build_finished"


async def test_stream_tokens_are_single_use_and_bound_to_their_build(
    setup: Setup, served: str, make_user: UserFactory
) -> None:
    build, runner = await claimed(setup)
    other = await setup.trigger()
    minted = await setup.api.post(f"/v1/builds/{build['id']}/stream-token", token=setup.token)
    assert minted.status == 200 and set(minted.body) == {"token", "expires_at"}
    token = minted.body["token"]
    base = f"{served}/v1/builds/{build['id']}/logs/stream"
    await runner.report(build["id"], "succeeded", exit_code=0)

    async def status(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with httpx.AsyncClient(timeout=10) as client:
            reply = await client.get(url, headers=headers or {})
            try:
                return reply.status_code, reply.json().get("code")
            except ValueError:
                return reply.status_code, reply.text

    first = await status(f"{base}?token={token}")
    assert first[0] == 200 and "event: done" in first[1]
    assert await status(f"{base}?token={token}") == (401, "invalid_stream_token")
    assert await status(f"{base}?token={'0' * 64}") == (401, "invalid_stream_token")
    elsewhere = await setup.api.post(f"/v1/builds/{other['id']}/stream-token", token=setup.token)
    mismatch = await status(f"{base}?token={elsewhere.body['token']}")
    assert mismatch == (403, "stream_token_build_mismatch")
    assert await status(base) == (401, "missing_auth")
    assert await status(base, {"Authorization": "Bearer nonsense"}) == (401, "invalid_session")
    stranger = await make_user(Role.DEVELOPER)
    assert await status(base, {"Authorization": f"Bearer {stranger.token}"}) == (
        404,
        "not_found",
    )
    missing = "00000000-0000-4000-8000-000000000000"
    assert (
        await setup.api.post(f"/v1/builds/{missing}/stream-token", token=setup.token)
    ).status == 404
    assert (await setup.api.post(f"/v1/builds/{build['id']}/stream-token")).code == "missing_auth"


async def test_unused_stream_tokens_are_capped_per_user(setup: Setup) -> None:
    builds = [await setup.trigger() for _ in range(17)]
    codes = []
    for build in builds:
        reply = await setup.api.post(f"/v1/builds/{build['id']}/stream-token", token=setup.token)
        codes.append(reply.status)
    assert codes == [200] * 16 + [429]
    again = await setup.api.post(f"/v1/builds/{builds[0]['id']}/stream-token", token=setup.token)
    assert again.status == 200  # a new token for the same build replaces the unused one
    over = await setup.api.post(f"/v1/builds/{builds[16]['id']}/stream-token", token=setup.token)
    assert (over.status, over.code) == (429, "stream_token_limit")


async def test_a_stream_ends_when_its_session_does(setup: Setup, served: str) -> None:
    build, runner = await claimed(setup)
    await runner.logs(build["id"], chunks(0, 3))
    events = Events()
    auth = {"Authorization": f"Bearer {setup.token}"}
    url = f"{served}/v1/builds/{build['id']}/logs/stream"
    async with httpx.AsyncClient(timeout=10) as client, trio.open_nursery() as nursery:
        nursery.start_soon(read_stream, client, url, auth, events)
        await until(lambda: len(events.logs) >= 3)
        assert (await setup.api.post("/v1/auth/logout", token=setup.token)).status == 200
        await until(lambda: events.done is not None)
        await runner.logs(build["id"], chunks(3, 3))
    assert events.done == "authorization_ended" and events.sequences == [0, 1, 2]


class TestLimits:
    @pytest.fixture
    def log_config(self) -> LogConfig:
        return LogConfig(lines_per_build=5, viewers_per_build=1, check_every=0.2)

    async def test_the_log_ends_with_one_visible_truncation_line(self, setup: Setup) -> None:
        build, runner = await claimed(setup)
        assert (await runner.logs(build["id"], chunks(0, 3))).body == {"appended": 3}
        assert (await runner.logs(build["id"], chunks(3, 4))).body == {"appended": 2}
        assert (await runner.logs(build["id"], chunks(7, 2))).body == {"appended": 0}
        stored = await setup.api.get(f"/v1/builds/{build['id']}/logs", token=setup.token)
        lines = stored.body["logs"]
        assert [line["sequence"] for line in lines] == [0, 1, 2, 3, 4, 5]
        assert "log truncated" in lines[-1]["content"] and lines[-1]["stream"] == "stderr"

    async def test_admission_is_limited_per_build(self, setup: Setup, served: str) -> None:
        build, _ = await claimed(setup)
        auth = {"Authorization": f"Bearer {setup.token}"}
        url = f"{served}/v1/builds/{build['id']}/logs/stream"
        async with httpx.AsyncClient(timeout=10) as client:
            async with client.stream("GET", url, headers=auth) as first:
                assert first.status_code == 200
                second = await client.get(url, headers=auth)
                assert (second.status_code, second.json()["code"]) == (429, "stream_limit")
            with trio.fail_after(5):  # the slot is released when the stream ends
                while True:
                    async with client.stream("GET", url, headers=auth) as third:
                        if third.status_code == 200:
                            break
                    await trio.sleep(0.05)


async def test_a_runners_lines_need_no_read_of_the_build(
    setup: Setup, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    build, runner = await claimed(setup)
    reads: list[str] = []
    bound = runtime.builds.bound

    async def counted(holder: Any, build_id: str) -> Any:
        reads.append(build_id)
        return await bound(holder, build_id)

    monkeypatch.setattr(runtime.builds, "bound", counted)
    url = f"/v1/runners/{runner.id}/jobs/{build['id']}/logs"
    for start in (0, 2, 4):
        body = {"chunks": chunks(start, 2), "attempt": 1}
        reply = await setup.api.post(url, json=body, token=runner.token)
        assert reply.body == {"appended": 2}
    # none, not even for the first: the build is as this daemon handed it over, and the
    # commit itself checks the holder and attempt
    assert reads == []
    stored = await setup.api.get(f"/v1/builds/{build['id']}/logs", token=setup.token)
    assert [line["sequence"] for line in stored.body["logs"]] == list(range(6))
    # Once the build is no longer the runner's, the refusal is as precise as ever.
    await setup.api.post(f"/v1/builds/{build['id']}/cancel", token=setup.token)
    body = {"chunks": chunks(6, 1), "attempt": 1}
    refused = await setup.api.post(url, json=body, token=runner.token)
    assert (refused.status, refused.code) == (403, "runner_mismatch")
    assert refused.body["details"] == "canceled"
    wrong = await setup.api.post(
        url, json={"chunks": chunks(6, 1), "attempt": 2}, token=runner.token
    )
    assert (wrong.status, wrong.code) == (403, "runner_mismatch")


class TestAccessRechecks:
    @pytest.fixture
    def log_config(self) -> LogConfig:
        return LogConfig(check_every=4.0)  # answers stay fresh for a second

    async def test_one_lookup_per_access_whatever_the_viewers_and_builds(
        self, setup: Setup, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        identity = runtime.identity
        session = await identity.authenticate_session(f"Bearer {setup.token}")
        lookups: list[str] = []
        recheck = identity.recheck

        async def counted(credential_hash: str, *, via_api_token: bool) -> Session | None:
            lookups.append(credential_hash)
            return await recheck(credential_hash, via_api_token=via_api_token)

        monkeypatch.setattr(identity, "recheck", counted)
        now = runtime.logs.clock.now()
        # Five viewers of one session, each with its own time box, on each of ten builds.
        grants = [
            Grant(session.token_hash, session.user.id, setup.project_id, now + 300 + n)
            for n in range(5)
        ]
        for _build in range(10):
            assert [await runtime.logs.grant_holds(grant) for grant in grants] == [True] * 5
        assert lookups == [session.token_hash]
        assert runtime.logs.access_checks.lookups == 1
        # A revoked session is still noticed once the answer is no longer fresh.
        assert (await setup.api.post("/v1/auth/logout", token=setup.token)).status == 200
        with trio.fail_after(5):
            while await runtime.logs.grant_holds(grants[0]):  # noqa: ASYNC110
                await trio.sleep(0.05)


async def test_secrets_never_reach_the_stored_log(api: Api, owner_token: str, repo: Path) -> None:
    secret = "pa55-w0rd-value"
    config = {
        "platforms": ["android"],
        "commands": {"build": ["true"]},
        "env": [{"key": "TOKEN", "value": secret}, {"key": "FLAG", "value": "1"}],
    }
    setup_ = await make_setup(api, owner_token, repo, execution_config=config)
    build, runner = await claimed(setup_)
    sent = [
        {"sequence": 0, "content": f"token is {secret}!", "stream": "stdout"},
        {"sequence": 1, "content": "half pa55-w", "stream": "stdout"},
        {"sequence": 2, "content": "0rd-value end, flag 1", "stream": "stdout"},
    ]
    assert (await runner.logs(build["id"], sent)).body == {"appended": 3}
    stored = await api.get(f"/v1/builds/{build['id']}/logs", token=owner_token)
    assert [line["content"] for line in stored.body["logs"]] == [
        f"token is {MASK}!",
        f"half {MASK}",
        f"{MASK} end, flag 1",
    ]


async def test_a_printed_nul_is_kept_visible_not_refused(setup: Setup) -> None:
    build, runner = await claimed(setup)
    sent = [{"sequence": 0, "content": "before\x00after", "stream": "stdout"}]
    assert (await runner.logs(build["id"], sent)).body == {"appended": 1}
    stored = await setup.api.get(f"/v1/builds/{build['id']}/logs", token=setup.token)
    assert [line["content"] for line in stored.body["logs"]] == ["before\N{SYMBOL FOR NULL}after"]


async def test_silence_is_filled_with_keep_alive_comments(setup: Setup, served: str) -> None:
    build, runner = await claimed(setup)
    events = Events()
    auth = {"Authorization": f"Bearer {setup.token}"}
    url = f"{served}/v1/builds/{build['id']}/logs/stream"
    async with httpx.AsyncClient(timeout=10) as client, trio.open_nursery() as nursery:
        nursery.start_soon(read_stream, client, url, auth, events)
        await until(lambda: events.comments >= 1, within=5)  # keep_alive is 1 s here
        await runner.report(build["id"], "succeeded", exit_code=0)
    assert events.logs == [] and events.done == "build_finished"


async def test_lines_say_when_they_were_stored_only_when_asked(setup: Setup) -> None:
    """The web UI shows timestamps on demand; other readers keep the usual line shape."""
    build, runner = await claimed(setup)
    assert (await runner.logs(build["id"], chunks(0, 3))).body == {"appended": 3}
    url = f"/v1/builds/{build['id']}/logs"
    plain = await setup.api.get(url, token=setup.token)
    assert all(set(line) == {"sequence", "content", "stream"} for line in plain.body["logs"])
    stamped = await setup.api.get(f"{url}?timestamps=true&after_sequence=0", token=setup.token)
    assert [line["sequence"] for line in stamped.body["logs"]] == [1, 2]
    stored_at = [line["at"] for line in stamped.body["logs"]]
    assert all(isinstance(at, int) and at >= build["created_at"] for at in stored_at)
    refused = await setup.api.get(f"{url}?timestamps=yes", token=setup.token)
    assert refused.status == 400 and refused.body["code"] == "invalid_input"


# -- tail, paging backwards and steps: what a person's log view needs --------------------


async def test_a_stream_can_start_from_the_last_lines(setup: Setup, served: str) -> None:
    build, runner = await claimed(setup)
    await runner.logs(build["id"], chunks(0, 10, "a"))
    auth = {"Authorization": f"Bearer {setup.token}"}
    url = f"{served}/v1/builds/{build['id']}/logs/stream"
    tailed, live_only = Events(), Events()
    async with httpx.AsyncClient(timeout=10) as client, trio.open_nursery() as nursery:
        nursery.start_soon(read_stream, client, f"{url}?tail=3", auth, tailed)
        nursery.start_soon(read_stream, client, f"{url}?tail=0", auth, live_only)
        await until(lambda: len(tailed.logs) >= 3)
        await runner.logs(build["id"], chunks(10, 2, "b"))
        await until(lambda: len(live_only.logs) >= 2)
        await runner.report(build["id"], "succeeded", exit_code=0)
    assert tailed.sequences == [7, 8, 9, 10, 11] and tailed.done == "build_finished"
    assert live_only.sequences == [10, 11] and live_only.done == "build_finished"
    async with httpx.AsyncClient(timeout=10) as client:
        more = Events()  # more than the log holds: all of it
        assert await read_stream(client, f"{url}?tail=1000", auth, more) == 200
        assert more.sequences == list(range(12)) and more.done == "build_finished"
        resumed = Events()  # a resume point wins over tail
        headers = {**auth, "Last-Event-ID": "5"}
        assert await read_stream(client, f"{url}?tail=2", headers, resumed) == 200
        assert resumed.sequences == list(range(6, 12))
        minted = await setup.api.post(f"/v1/builds/{build['id']}/stream-token", token=setup.token)
        by_token = Events()
        token_url = f"{url}?token={minted.body['token']}&tail=4"
        assert await read_stream(client, token_url, {}, by_token) == 200
        assert by_token.sequences == [8, 9, 10, 11] and by_token.done == "build_finished"


async def test_a_bad_tail_is_refused_before_the_stream_token_is_used(
    setup: Setup, served: str
) -> None:
    build, runner = await claimed(setup)
    await runner.logs(build["id"], chunks(0, 3))
    await runner.report(build["id"], "succeeded", exit_code=0)
    auth = {"Authorization": f"Bearer {setup.token}"}
    url = f"{served}/v1/builds/{build['id']}/logs/stream"
    async with httpx.AsyncClient(timeout=10) as client:
        for tail, code in (
            ("-1", "invalid_input"),
            ("abc", "invalid_request"),
            ("1.5", "invalid_request"),
            ("99999999999999999999999", "invalid_request"),
        ):
            reply = await client.get(f"{url}?tail={tail}", headers=auth)
            assert reply.status_code == 400 and reply.json()["code"] == code, tail
        minted = await setup.api.post(f"/v1/builds/{build['id']}/stream-token", token=setup.token)
        token = minted.body["token"]
        refused = await client.get(f"{url}?token={token}&tail=-5")
        assert refused.status_code == 400 and refused.json()["code"] == "invalid_input"
        events = Events()  # the refused request did not spend the token
        assert await read_stream(client, f"{url}?token={token}&tail=1", {}, events) == 200
    assert events.sequences == [2] and events.done == "build_finished"


async def test_earlier_lines_page_backwards_in_ascending_order(setup: Setup) -> None:
    build, runner = await claimed(setup)
    await runner.logs(build["id"], chunks(0, 20, "p"))
    url = f"/v1/builds/{build['id']}/logs"

    async def sequences(query: str) -> list[int]:
        reply = await setup.api.get(f"{url}?{query}", token=setup.token)
        assert reply.status == 200, reply.body
        assert reply.body["total"] == 20 and reply.body["attempt"] == 1
        return [line["sequence"] for line in reply.body["logs"]]

    assert await sequences("before_sequence=10&limit=3") == [7, 8, 9]
    assert await sequences("before_sequence=2") == [0, 1]
    assert await sequences("before_sequence=1000&limit=2") == [18, 19]
    assert await sequences("before_sequence=0") == []
    assert await sequences("after_sequence=3&before_sequence=7") == [4, 5, 6]
    assert await sequences("after_sequence=3&before_sequence=12&limit=2") == [10, 11]
    assert await sequences("before_sequence=15&limit=-1") == list(range(15))
    assert await sequences("before_sequence=15&limit=0") == []
    assert await sequences("limit=3") == [0, 1, 2]  # forwards, as before
    for query, code in (
        ("before_sequence=-1", "invalid_input"),
        ("before_sequence=abc", "invalid_request"),
        ("before_sequence=99999999999999999999999", "invalid_request"),
    ):
        reply = await setup.api.get(f"{url}?{query}", token=setup.token)
        assert reply.status == 400 and reply.body["code"] == code, query


async def test_lines_carry_their_step_when_the_runner_says(setup: Setup, served: str) -> None:
    build, runner = await claimed(setup)
    lines = [
        {"sequence": 0, "content": "checking out", "stream": "stdout"},
        {"sequence": 1, "content": "hello", "stream": "stdout", "step": 0, "step_name": "build"},
        {"sequence": 2, "content": "oops", "stream": "stderr", "step": 1, "step_name": "te\x00st"},
        {"sequence": 3, "content": "x", "stream": "stdout", "step": 2, "step_name": "n" * 300},
    ]
    assert (await runner.logs(build["id"], lines)).body == {"appended": 4}
    read = await setup.api.get(f"/v1/builds/{build['id']}/logs", token=setup.token)
    shown = read.body["logs"]
    assert shown[0] == {"sequence": 0, "content": "checking out", "stream": "stdout"}
    assert shown[1] == {
        "sequence": 1,
        "content": "hello",
        "stream": "stdout",
        "step": 0,
        "step_name": "build",
    }
    assert (shown[2]["step"], shown[2]["step_name"]) == (1, "te\N{SYMBOL FOR NULL}st")
    assert (shown[3]["step"], shown[3]["step_name"]) == (2, "n" * 256)
    stamped = await setup.api.get(
        f"/v1/builds/{build['id']}/logs?timestamps=true&before_sequence=2", token=setup.token
    )
    assert set(stamped.body["logs"][1]) == {
        "sequence",
        "content",
        "stream",
        "step",
        "step_name",
        "at",
    }
    await runner.report(build["id"], "succeeded", exit_code=0)
    events = Events()
    async with httpx.AsyncClient(timeout=10) as client:
        url = f"{served}/v1/builds/{build['id']}/logs/stream"
        await read_stream(client, url, {"Authorization": f"Bearer {setup.token}"}, events)
    assert events.logs == shown


async def test_a_bad_step_is_refused(setup: Setup) -> None:
    build, runner = await claimed(setup)
    for extra in ({"step": -1}, {"step": 2**31}, {"step": "1"}, {"step_name": 5}):
        line = {"sequence": 0, "content": "x", "stream": "stdout", **extra}
        reply = await runner.logs(build["id"], [line])
        assert reply.status == 400, extra
        assert reply.body["code"] in ("invalid_input", "invalid_request"), reply.body
    read = await setup.api.get(f"/v1/builds/{build['id']}/logs", token=setup.token)
    assert read.body["logs"] == []


# -- access ended while streaming: no line appended after it ---------------------------------
# The streams' periodic re-check never comes within these tests: only the change itself
# (its grant epoch) can end a viewer before the next line.
UNCHECKED = pytest.mark.parametrize(
    "log_config", [LogConfig(check_every=3600.0, keep_alive=1.0)], ids=["unchecked"]
)


async def watch_then_revoke(
    setup: Setup,
    served: str,
    token: str,
    revoke: Callable[[], Awaitable[None]],
    *,
    api_token: bool = False,
) -> Events:
    """A viewer with ``token`` streams the log (an API token through a stream token, as
    the header takes sessions only); its access ends; more lines are appended."""
    build, runner = await claimed(setup)
    await runner.logs(build["id"], chunks(0, 3))
    events = Events()
    url = f"{served}/v1/builds/{build['id']}/logs/stream"
    auth = {"Authorization": f"Bearer {token}"}
    if api_token:
        minted = await setup.api.post(f"/v1/builds/{build['id']}/stream-token", token=token)
        assert minted.status == 200, minted.body
        url, auth = f"{url}?token={minted.body['token']}", {}
    async with httpx.AsyncClient(timeout=10) as client, trio.open_nursery() as nursery:
        nursery.start_soon(read_stream, client, url, auth, events)
        await until(lambda: len(events.logs) >= 3)
        await revoke()
        assert (await runner.logs(build["id"], chunks(3, 3))).body == {"appended": 3}
        await until(lambda: events.done is not None, within=10)
    return events


@UNCHECKED
async def test_a_member_removed_while_streaming_gets_no_later_line(
    setup: Setup, served: str, make_user: UserFactory
) -> None:
    viewer = await make_user(Role.DEVELOPER)
    await add_member(setup.api, setup.token, setup.project_id, viewer.user.id, "viewer")

    async def remove() -> None:
        path = f"/v1/projects/{setup.project_id}/members/{viewer.user.id}"
        assert (await setup.api.call("DELETE", path, token=setup.token)).status == 200

    events = await watch_then_revoke(setup, served, viewer.token, remove)
    assert events.done == "authorization_ended" and events.sequences == [0, 1, 2]


@UNCHECKED
async def test_a_disabled_user_gets_no_later_line(
    setup: Setup, served: str, make_user: UserFactory
) -> None:
    viewer = await make_user(Role.DEVELOPER)
    await add_member(setup.api, setup.token, setup.project_id, viewer.user.id, "developer")

    async def disable() -> None:
        reply = await setup.api.call("DELETE", f"/v1/users/{viewer.user.id}", token=setup.token)
        assert reply.status == 200, reply.body

    events = await watch_then_revoke(setup, served, viewer.token, disable)
    assert events.done == "authorization_ended" and events.sequences == [0, 1, 2]


@UNCHECKED
async def test_a_revoked_api_token_gets_no_later_line(
    setup: Setup, served: str, make_user: UserFactory
) -> None:
    holder = await make_user(Role.DEVELOPER)
    await add_member(setup.api, setup.token, setup.project_id, holder.user.id, "developer")
    minted = await setup.api.post(
        "/v1/api-tokens", json={"name": "tail", "role": "developer"}, token=holder.token
    )
    assert minted.status == 200, minted.body

    async def revoke() -> None:
        path = f"/v1/api-tokens/{minted.body['id']}"
        assert (await setup.api.call("DELETE", path, token=setup.token)).status == 200

    events = await watch_then_revoke(setup, served, minted.body["token"], revoke, api_token=True)
    assert events.done == "authorization_ended" and events.sequences == [0, 1, 2]


@UNCHECKED
async def test_a_change_elsewhere_leaves_other_viewers_streaming(
    setup: Setup, served: str, make_user: UserFactory, runtime: Runtime
) -> None:
    """Another user's access ending costs these viewers one re-check in all (they share
    a credential and project), not their streams."""
    other = await make_user(Role.DEVELOPER)
    await add_member(setup.api, setup.token, setup.project_id, other.user.id, "viewer")
    build, runner = await claimed(setup)
    viewers = [Events() for _ in range(5)]
    url = f"{served}/v1/builds/{build['id']}/logs/stream"
    auth = {"Authorization": f"Bearer {setup.token}"}
    async with httpx.AsyncClient(timeout=10) as client, trio.open_nursery() as nursery:
        for events in viewers:
            nursery.start_soon(read_stream, client, url, auth, events)
        await until(lambda: runtime.logs.open_streams == len(viewers))
        lookups = runtime.logs.access_checks.lookups
        path = f"/v1/projects/{setup.project_id}/members/{other.user.id}"
        assert (await setup.api.call("DELETE", path, token=setup.token)).status == 200
        await runner.logs(build["id"], chunks(0, 3))
        await until(lambda: all(len(events.logs) >= 3 for events in viewers))
        assert runtime.logs.access_checks.lookups == lookups + 1
        await runner.logs(build["id"], chunks(3, 3))
        await until(lambda: all(len(events.logs) >= 6 for events in viewers))
        assert runtime.logs.access_checks.lookups == lookups + 1  # nothing changed since
        nursery.cancel_scope.cancel()
    for events in viewers:
        assert events.done is None and events.sequences == list(range(6))


def test_a_kept_attempt_answers_every_window_as_the_read_of_that_window_does() -> None:
    """The lean listener answers pages of a finished attempt from its lines encoded once:
    byte for byte what the page read from the store for that window gives."""
    every = [
        LogLine(n, text, stream, at=1_700_000_000 + n, step=step, step_name=name)
        for n, (text, stream, step, name) in enumerate(
            [
                ("plain", "stdout", None, None),
                ('quotes " and \\ and \t', "stderr", 0, "build"),
                ("unicode é 字 🚀", "stdout", 0, "build"),
                ("", "stdout", 1, 'step "two"'),
                ("\u0000 control", "stderr", None, None),
            ]
        )
    ]
    whole = LogPage(every, len(every), 2, whole=True)
    kept = KeptLog(whole)
    for after in (-1, 0, 2, 4, 9):
        for before in (None, 0, 1, 3, 5, 8):
            for limit in (None, 0, 1, 2, 10):
                for timestamps in (False, True):
                    window = LogWindow(timestamps, after, before, limit, None)
                    cut = page_of(every, after, before, limit)
                    read = answer_body(log_answer(window, LogPage(cut, len(every), 2)))
                    assert kept.answer(window) == read, (after, before, limit, timestamps)


def test_a_kept_attempt_holds_about_the_memory_it_is_counted_for() -> None:
    """The kept answers' bound counts a kept attempt by its ``size``: the memory it holds
    is that, not the buffer of about 4 KB orjson gives each encoded line."""
    lines = [
        LogLine(n, f"step {n}: " + "x" * 80, "stdout", at=1_700_000_000 + n) for n in range(500)
    ]
    page = LogPage(lines, len(lines), 1, whole=True)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        kept = KeptLog(page)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept.size * 0.8 <= held <= kept.size * 1.25, (held, kept.size)
