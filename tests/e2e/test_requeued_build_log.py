"""A real runner SIGKILLed mid-build: the build is requeued, another real runner ends it,
and its log is the second attempt's alone, while the first attempt's stays readable.

The pipeline prints numbered lines in both attempts, so line numbers (sequences) of the
two attempts overlap: the log must neither drop the new attempt's lines nor splice the
two runs together, through the API and through a stream that watched the whole time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.e2e.conftest import DaemonFactory, free_port
from tests.e2e.test_runner_agent import git, gone, pipeline_file, read_pid, runners

__all__ = ["runners"]

# The stream's client is cut off mid-read when the test has what it needs; its body
# generators are left to the garbage collector, which warns. Not the server under test.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

LEASE = 4
FIRST = 18
SECOND = 40
WAIT = 60.0


def make_repo(root: Path, marks: Path) -> Path:
    repo = root / "repo"
    (repo / "ci").mkdir(parents=True)
    # The first attempt prints its lines and parks; the next finds the mark and finishes.
    (repo / "ci" / "handoff.yaml").write_text(
        pipeline_file(
            f"if [ -e {marks}/first.pid ]; then "
            f'for i in $(seq 1 {SECOND}); do echo "second $i"; done; '
            f'else for i in $(seq 1 {FIRST}); do echo "first $i"; done; '
            f"sleep 300 & echo $! > {marks}/first.pid; wait; fi"
        )
    )
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "pipeline")
    return repo


class Api:
    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self.client = client
        self.auth = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        reply = await self.client.request(method, path, json=body, headers=self.auth)
        assert reply.status_code == expect, f"{method} {path}: {reply.text}"
        return reply.json()

    async def build(self, build_id: str) -> dict[str, Any]:
        detail: dict[str, Any] = (await self.call("GET", f"/v1/builds/{build_id}"))["build"]
        return detail

    async def logs(self, build_id: str, query: str = "") -> dict[str, Any]:
        found: dict[str, Any] = await self.call(
            "GET", f"/v1/builds/{build_id}/logs?limit=5000{query}"
        )
        return found


async def wait_until(what: str, check: Callable[[], Any]) -> Any:
    """Poll ``check`` (sync or async) until it answers something true, bounded."""
    with trio.move_on_after(WAIT):
        while True:
            result = check()
            if hasattr(result, "__await__"):
                result = await result
            if result:
                return result
            await trio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Viewer:
    """One SSE stream, every event kept in order: (event, id or attempt, content)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    async def run(self, url: str, headers: dict[str, str]) -> None:
        async with (
            httpx.AsyncClient(timeout=WAIT) as client,
            client.stream("GET", url, headers=headers) as reply,
        ):
            assert reply.status_code == 200
            pending = ""
            async for text in reply.aiter_text():
                pending += text
                while "\n\n" in pending:
                    block, pending = pending.split("\n\n", 1)
                    fields = dict(
                        line.partition(": ")[::2]
                        for line in block.split("\n")
                        if line and not line.startswith(":")
                    )
                    event = fields.get("event", "")
                    if event == "log":
                        content = json.loads(fields["data"])["content"]
                        self.events.append((event, fields["id"], content))
                    elif event == "attempt":
                        self.events.append((event, str(json.loads(fields["data"])["attempt"]), ""))
                    elif event == "done":
                        self.events.append((event, "", fields["data"]))
                        return

    def lines(self, prefix: str) -> list[str]:
        return [c for kind, _, c in self.events if kind == "log" and c.startswith(prefix)]


@pytest.mark.timeout(180)
async def test_a_build_requeued_after_a_sigkilled_runner_logs_its_new_attempt_alone(
    make_daemon: DaemonFactory,
    runners: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    repo = make_repo(tmp_path, marks)
    daemon = make_daemon()
    daemon.env["OORED_RUNNER_LEASE_SECONDS"] = str(LEASE)
    daemon.start("--listen", f"127.0.0.1:{free_port()}")
    try:
        async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as client:
            login = await client.post("/v1/auth/local/login", json={})
            token = login.json()["session_token"]
            api = Api(client, token)
            project = (
                await api.call(
                    "POST",
                    "/v1/projects",
                    {"name": "app", "local_repository_path": str(repo)},
                    expect=201,
                )
            )["project"]
            pipeline = (
                await api.call(
                    "POST",
                    f"/v1/projects/{project['id']}/pipelines",
                    {
                        "name": "handoff",
                        "config_path": "ci/handoff.yaml",
                        "config_path_explicit": True,
                        "runner_labels": ["shared"],
                    },
                    expect=201,
                )
            )["pipeline"]
            procs = {name: runners(daemon.url, token, name, "shared") for name in ("a", "b")}

            async def registered() -> dict[str, str] | None:
                page = await api.call("GET", "/v1/runners")
                return {r["id"]: r["name"] for r in page["runners"]} if page["total"] == 2 else None

            names: dict[str, str] = await wait_until("both runners to register", registered)
            build_id = (
                await api.call(
                    "POST",
                    f"/v1/projects/{project['id']}/builds",
                    {"pipeline_id": pipeline["id"]},
                    expect=201,
                )
            )["build"]["id"]

            async def first_lines_stored() -> bool:
                logs = await api.logs(build_id)
                return sum(1 for line in logs["logs"] if line["content"].startswith("first ")) == (
                    FIRST
                )

            await wait_until("the first attempt to park", lambda: (marks / "first.pid").exists())
            await wait_until("the first attempt's lines", first_lines_stored)
            first = await api.build(build_id)
            assert first["status"] == "running" and first["attempt"] == 1
            first_log = await api.logs(build_id)

            viewer = Viewer()
            stream_url = f"{daemon.url}/v1/builds/{build_id}/logs/stream"
            async with trio.open_nursery() as nursery:
                nursery.start_soon(viewer.run, stream_url, api.auth)
                await wait_until(
                    "the viewer to see the first attempt",
                    lambda: len(viewer.lines("first ")) == FIRST,
                )
                holder = procs[names[first["runner_id"]]]
                holder.kill()  # SIGKILL: no goodbye, no last report
                holder.wait()

                async def finished() -> dict[str, Any] | None:
                    build = await api.build(build_id)
                    return build if build.get("finished_at") else None

                done = await wait_until("the second attempt to end", finished)

            assert done["status"] == "succeeded" and done["attempt"] == 2, done
            events = (await api.call("GET", f"/v1/builds/{build_id}"))["events"]
            assigned = [e["actor"] for e in events if e["to_status"] == "assigned"]
            assert len(assigned) == 2 and assigned[0] == f"runner:{first['runner_id']}"
            assert assigned[1] != assigned[0]
            # The API: the second attempt's lines only, complete and in order.
            current = await api.logs(build_id)
            contents = [line["content"] for line in current["logs"]]
            assert not [c for c in contents if c.startswith("first ")]
            assert [c for c in contents if c.startswith("second ")] == [
                f"second {i}" for i in range(1, SECOND + 1)
            ]
            sequences = [line["sequence"] for line in current["logs"]]
            assert sequences == list(range(len(sequences)))
            assert current["attempt"] == 2 and current["total"] == len(current["logs"])
            # The first attempt's log, as it was when its runner died.
            earlier = await api.logs(build_id, "&attempt=1")
            assert earlier["attempt"] == 1 and earlier["logs"] == first_log["logs"]
            assert [c["content"] for c in earlier["logs"] if c["content"].startswith("first ")] == [
                f"first {i}" for i in range(1, FIRST + 1)
            ]

            # The stream that watched throughout: the first attempt, the switch, then the
            # second attempt from its first line, each id naming its attempt, then done.
            switch = viewer.events.index(("attempt", "2", ""))
            before, after = viewer.events[:switch], viewer.events[switch + 1 :]
            assert [(kind, c) for kind, _, c in before] == [
                ("log", line["content"]) for line in first_log["logs"]
            ]
            assert [i for _, i, _ in before] == [
                str(line["sequence"]) for line in first_log["logs"]
            ]
            assert after[-1] == ("done", "", "build_finished")
            assert after[:-1] == [
                ("log", f"2:{line['sequence']}", line["content"]) for line in current["logs"]
            ]
    finally:
        # The SIGKILLed runner could not end its build's process: do it here.
        pid = read_pid(marks / "first.pid")
        if pid is not None and not gone(pid):
            os.kill(pid, signal.SIGKILL)
    assert daemon.stop() == 0
