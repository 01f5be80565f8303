"""SIGKILL ``oored`` while a runner's log lines flow to live viewers; restart it and finish.

Every line whose append was answered is stored after the restart, once and as sent; a
line whose append the kill cut off may be there or not, and nothing else is. Each viewer
that reconnects with ``Last-Event-ID`` is sent exactly the lines it missed: what it saw
before and after the crash is the build's whole log, in order, no line missing, none twice.
The runner and the viewers are plain HTTP clients in this test process, the daemon its own
process, restarted on the same data directory and port.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.e2e.conftest import DaemonFactory, free_port
from tests.e2e.test_claims_survive_a_crash import make_repo

# Requests and streams cut off by the SIGKILL leave httpx's body generators unfinished;
# their garbage collection warns. That is the point of this test, not a leak of ours.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

BATCH = 3  # lines per append
BEFORE_KILL = 150  # the SIGKILL lands once a viewer has been sent more lines than this
LEFT_AT = 30  # lines after which one viewer disconnects on its own, before the crash
AFTER = 90  # lines appended after the restart
WAIT = 50.0


def sent_line(sequence: int) -> dict[str, Any]:
    """The line the runner sends at ``sequence``: its content names it, some are stderr."""
    stream = "stderr" if sequence % 7 == 3 else "stdout"
    return {
        "sequence": sequence,
        "content": f"step {sequence}: ünïcode ✓ {stream}",
        "stream": stream,
    }


class Progress:
    """Wakes whoever waits on a condition of the test's state each time that state changes."""

    def __init__(self) -> None:
        self._changed = trio.Event()

    def changed(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def until(self, check: Callable[[], bool]) -> None:
        while not check():
            await self._changed.wait()


class SimulatedRunner:
    """Appends numbered lines over the HTTP API, one append at a time, and remembers which
    appends were answered; reports the build's status."""

    def __init__(
        self, runner_id: str, token: str, build_id: str, attempt: int, progress: Progress
    ) -> None:
        self.jobs = f"/v1/runners/{runner_id}/jobs/{build_id}"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.attempt = attempt
        self.progress = progress
        self.sent: dict[int, dict[str, Any]] = {}
        self.acked: list[int] = []  # sequences of the lines whose append was answered
        self.unanswered: list[dict[str, Any]] = []  # the append the SIGKILL cut off
        self.next = 0

    def batch(self) -> list[dict[str, Any]]:
        lines = [sent_line(s) for s in range(self.next, self.next + BATCH)]
        self.next += BATCH
        self.sent.update((line["sequence"], line) for line in lines)
        return lines

    async def append(self, client: httpx.AsyncClient, lines: list[dict[str, Any]]) -> int:
        reply = await client.post(
            f"{self.jobs}/logs",
            json={"chunks": lines, "attempt": self.attempt},
            headers=self.headers,
        )
        assert reply.status_code == 200, reply.text
        self.acked.extend(line["sequence"] for line in lines)
        self.progress.changed()
        appended: int = reply.json()["appended"]
        return appended

    async def flow_until_cut_off(self, client: httpx.AsyncClient) -> None:
        """Append until the daemon is gone; the append then in flight stays unanswered."""
        while True:
            lines = self.batch()
            try:
                appended = await self.append(client, lines)
            except httpx.TransportError:
                self.unanswered = lines
                self.progress.changed()
                return
            assert appended == len(lines)

    async def report(self, client: httpx.AsyncClient, status: str) -> None:
        reply = await client.post(
            f"{self.jobs}/status", json={"status": status, "exit_code": 0}, headers=self.headers
        )
        assert reply.status_code == 200, reply.text


class Viewer:
    """One SSE viewer of the build's log, across its connections: every line event it was
    sent, in order, as (id, content, stream)."""

    def __init__(self, name: str, progress: Progress) -> None:
        self.name = name
        self.progress = progress
        self.lines: list[tuple[str, str, str]] = []
        self.other: list[str] = []  # any event but a line or the end: none expected
        self.done: str | None = None
        self.connected = False

    @property
    def last_id(self) -> str:
        return self.lines[-1][0]

    async def watch(
        self,
        client: httpx.AsyncClient,
        url: str,
        headers: dict[str, str],
        leave_at: int | None = None,
    ) -> None:
        """One connection, until ``event: done``, the daemon's death, or ``leave_at`` lines."""
        self.connected = False
        try:
            async with client.stream("GET", url, headers=headers) as reply:
                assert reply.status_code == 200, f"{self.name}: {(await reply.aread())!r}"
                self.connected = True
                self.progress.changed()
                fields: dict[str, str] = {}
                async for text in reply.aiter_lines():
                    if text:
                        if not text.startswith(":"):  # a keep-alive comment
                            name, _, value = text.partition(": ")
                            fields[name] = value
                        continue
                    event, fields = fields, {}
                    if event.get("event") == "log":
                        data = json.loads(event["data"])
                        assert str(data["sequence"]) == event["id"], event
                        self.lines.append((event["id"], data["content"], data["stream"]))
                    elif event.get("event") == "done":
                        self.done = event["data"]
                    elif event:
                        self.other.append(json.dumps(event))
                    self.progress.changed()
                    if self.done is not None or len(self.lines) == leave_at:
                        return
        except httpx.TransportError:
            pass  # the daemon died mid-stream: reconnect later with Last-Event-ID
        finally:
            self.connected = False
            self.progress.changed()


async def test_a_sigkilled_daemon_keeps_answered_lines_and_viewers_resume_exactly(
    make_daemon: DaemonFactory, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    port = free_port()
    daemon = make_daemon()
    daemon.start("--listen", f"127.0.0.1:{port}")
    base = daemon.url
    progress = Progress()

    with trio.fail_after(WAIT):
        async with httpx.AsyncClient(base_url=base, timeout=10) as api:

            async def ok(method: str, path: str, body: Any = None, token: str = "") -> Any:
                auth = {"Authorization": f"Bearer {token}"} if token else {}
                reply = await api.request(method, path, json=body, headers=auth)
                assert reply.status_code in (200, 201), f"{method} {path}: {reply.text}"
                return reply.json()

            session = (await ok("POST", "/v1/auth/local/login", {}))["session_token"]
            other_session = (await ok("POST", "/v1/auth/local/login", {}))["session_token"]
            project = (
                await ok(
                    "POST",
                    "/v1/projects",
                    {"name": "app", "local_repository_path": str(repo)},
                    session,
                )
            )["project"]
            pipeline = (
                await ok("POST", f"/v1/projects/{project['id']}/pipelines", {"name": "ci"}, session)
            )["pipeline"]
            build_id = (
                await ok(
                    "POST",
                    f"/v1/projects/{project['id']}/builds",
                    {"pipeline_id": pipeline["id"]},
                    session,
                )
            )["build"]["id"]
            registered = await ok("POST", "/v1/runners/register", {"name": "sim"}, session)
            runner_id, runner_token = registered["runner"]["id"], registered["token"]
            job = (
                await ok(
                    "POST",
                    f"/v1/runners/{runner_id}/claim",
                    {"protocol_version": 4, "wait_seconds": 5},
                    runner_token,
                )
            )["job"]
            assert job["build_id"] == build_id and job["attempt"] == 1
            runner = SimulatedRunner(runner_id, runner_token, build_id, 1, progress)
            await runner.report(api, "running")

            async def stream_token() -> str:
                minted = await ok("POST", f"/v1/builds/{build_id}/stream-token", None, session)
                token: str = minted["token"]
                return token

            used_token = await stream_token()
            stream = f"{base}/v1/builds/{build_id}/logs/stream"
            bearer = {"Authorization": f"Bearer {session}"}
            viewers = {
                "bearer": (Viewer("bearer", progress), stream, bearer),
                "token": (Viewer("token", progress), f"{stream}?token={used_token}", {}),
                "other session": (
                    Viewer("other session", progress),
                    stream,
                    {"Authorization": f"Bearer {other_session}"},
                ),
            }
            left = Viewer("left early", progress)
            watching = [viewer for viewer, _, _ in viewers.values()]

            def ready_to_kill() -> bool:
                # A viewer was sent a line past BEFORE_KILL: the append that carried it
                # has committed, and its answer may still be on its way to the runner.
                return len(left.lines) >= LEFT_AT and any(
                    len(v.lines) > BEFORE_KILL for v in watching
                )

            async with (
                httpx.AsyncClient(base_url=base, timeout=10) as as_runner,
                httpx.AsyncClient(timeout=WAIT) as as_viewers,
                trio.open_nursery() as nursery,
            ):
                for viewer, url, headers in viewers.values():
                    nursery.start_soon(viewer.watch, as_viewers, url, headers)
                nursery.start_soon(left.watch, as_viewers, stream, bearer, LEFT_AT)
                await progress.until(lambda: all(v.connected for v in watching))
                # Minted before the crash, never used: it is in the database, so it survives.
                unused_token = await stream_token()
                nursery.start_soon(runner.flow_until_cut_off, as_runner)
                await progress.until(ready_to_kill)
                daemon.kill()
            # The runner stopped at its cut-off append, every viewer's stream ended.
            assert runner.unanswered
            assert all(v.done is None for v in [*watching, left])
            seen_at_kill = {v.name: len(v.lines) for v in [*watching, left]}

    daemon.start("--listen", f"127.0.0.1:{port}")
    assert daemon.url == base

    with trio.fail_after(WAIT):
        async with httpx.AsyncClient(base_url=base, timeout=10) as api:
            auth = {"Authorization": f"Bearer {session}"}

            async def stored() -> list[dict[str, Any]]:
                reply = await api.get(f"/v1/builds/{build_id}/logs?limit=5000", headers=auth)
                assert reply.status_code == 200, reply.text
                found = reply.json()
                assert found["total"] == len(found["logs"])
                logs: list[dict[str, Any]] = found["logs"]
                return logs

            # Every answered line is there, once, as sent, with no hole; of the rest, only
            # lines of the append the kill cut off may be there.
            after_crash = await stored()
            sequences = [line["sequence"] for line in after_crash]
            for line in after_crash:
                assert line == runner.sent[line["sequence"]]
            assert set(runner.acked) <= set(sequences)
            cut_off = {line["sequence"] for line in runner.unanswered}
            assert set(sequences) - set(runner.acked) <= cut_off
            assert sequences == list(range(len(sequences)))
            # Every line a viewer was shown before the crash survived it.
            for viewer in [*watching, left]:
                for shown in viewer.lines:
                    stream_line = {
                        "sequence": int(shown[0]),
                        "content": shown[1],
                        "stream": shown[2],
                    }
                    assert stream_line in after_crash, (viewer.name, shown)

            # Stream tokens live in the database: the used one stays used, the unused one
            # survives the crash and opens one stream.
            tokened = f"/v1/builds/{build_id}/logs/stream?token={unused_token}"
            async with api.stream("GET", tokened) as survived:
                assert survived.status_code == 200
            for token in (used_token, unused_token):
                refused = await api.get(f"/v1/builds/{build_id}/logs/stream?token={token}")
                assert refused.status_code == 401, refused.text
                assert refused.json()["code"] == "invalid_stream_token"

            async with (
                httpx.AsyncClient(base_url=base, timeout=10) as as_runner,
                httpx.AsyncClient(timeout=WAIT) as as_viewers,
                trio.open_nursery() as nursery,
            ):
                for name, (viewer, url, headers) in viewers.items():
                    if name == "token":
                        url = f"{stream}?token={await stream_token()}"
                    resume = {**headers, "Last-Event-ID": viewer.last_id}
                    nursery.start_soon(viewer.watch, as_viewers, url, resume)
                nursery.start_soon(
                    left.watch, as_viewers, stream, {**bearer, "Last-Event-ID": left.last_id}
                )
                everyone = [*watching, left]
                await progress.until(lambda: all(v.connected or v.done for v in everyone))
                # The runner goes on as a real one would: its cut-off append again (what
                # the crash kept of it is ignored), more lines, then success. The restart
                # gave it a fresh lease; its calls renew it.
                resent = await runner.append(as_runner, runner.unanswered)
                assert resent == len(cut_off - set(sequences))
                for _ in range(AFTER // BATCH):
                    assert await runner.append(as_runner, runner.batch()) == BATCH
                await runner.report(as_runner, "succeeded")

            build = (await api.get(f"/v1/builds/{build_id}", headers=auth)).json()["build"]
            assert build["status"] == "succeeded" and build["attempt"] == 1
            final = await stored()
            assert [line["sequence"] for line in final] == list(range(runner.next))
            assert final == [runner.sent[s] for s in range(runner.next)]
            expected = [(str(line["sequence"]), line["content"], line["stream"]) for line in final]
            for viewer in everyone:
                assert viewer.other == [], viewer.name
                assert viewer.done == "build_finished", viewer.name
                assert viewer.lines == expected, (
                    viewer.name,
                    seen_at_kill[viewer.name],
                    [line[0] for line in viewer.lines],
                )
    assert daemon.stop() == 0
