"""SIGKILL ``oored`` while simulated runners claim 1,000 builds; restart it and finish.

Every build must end ``succeeded``; no attempt of a build may reach two runners; nothing is
lost. The runners are plain HTTP clients in this test process, the daemon its own process.
"""

from __future__ import annotations

import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.e2e.conftest import Daemon, DaemonFactory, free_port

# Requests cut off by the SIGKILL leave httpx's request-body generators unfinished; their
# garbage collection warns. That is the point of this test, not a leak of ours.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

BUILDS = 1000
RUNNERS = 24
KILL_AFTER = 300


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    run = ["git", "-C", str(repo), "-c", "user.email=t@e", "-c", "user.name=t"]
    subprocess.run([*run, "init", "-q", "-b", "main"], check=True)
    (repo / "f").write_text("x")
    subprocess.run([*run, "add", "f"], check=True)
    subprocess.run([*run, "commit", "-q", "-m", "c"], check=True)
    return repo


class Progress:
    """Counts claims across runners; ``reached`` fires at the kill point."""

    def __init__(self, at: int) -> None:
        self.count = 0
        self.at = at
        self.reached = trio.Event()

    def claimed(self) -> None:
        self.count += 1
        if self.count >= self.at:
            self.reached.set()


class SimulatedRunner:
    """Claims, reports running, reports success; remembers every (build, attempt) it got."""

    def __init__(self, base: str, runner_id: str, token: str, progress: Progress) -> None:
        self.base = base
        self.progress = progress
        self.id = runner_id
        self.headers = {"Authorization": f"Bearer {token}"}
        self.got: list[tuple[str, int]] = []

    async def call(self, client: httpx.AsyncClient, path: str, body: Any) -> httpx.Response | None:
        try:
            return await client.post(f"{self.base}{path}", json=body, headers=self.headers)
        except httpx.TransportError:
            await trio.sleep(0.1)  # the daemon is down: back off, try again
            return None

    async def run(self, done: trio.Event) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            while not done.is_set():
                claimed = await self.call(
                    client,
                    f"/v1/runners/{self.id}/claim",
                    {"protocol_version": 4, "wait_seconds": 1},
                )
                if claimed is None or claimed.status_code != 200:
                    continue
                job = claimed.json().get("job")
                if job is None:
                    continue
                self.got.append((job["build_id"], job["attempt"]))
                self.progress.claimed()
                for status in ("running", "succeeded"):
                    path = f"/v1/runners/{self.id}/jobs/{job['build_id']}/status"
                    while not done.is_set():
                        reply = await self.call(client, path, {"status": status, "exit_code": 0})
                        if reply is not None:
                            break
                    if reply is None or reply.status_code != 200:
                        break  # taken back from us (lease): stop working on it


@pytest.mark.timeout(300)  # about 20 s alone; a loaded machine needs far more headroom
async def test_sigkill_during_claims_loses_nothing_and_double_assigns_nothing(
    make_daemon: DaemonFactory, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    port = free_port()
    daemon: Daemon = make_daemon()
    daemon.env["OORED_ASSIGN_TIMEOUT_SECONDS"] = "3"
    daemon.start("--listen", f"127.0.0.1:{port}")
    base = daemon.url
    async with httpx.AsyncClient(base_url=base, timeout=30) as api:
        token = (await api.post("/v1/auth/local/login", json={})).json()["session_token"]
        auth = {"Authorization": f"Bearer {token}"}
        project = await api.post(
            "/v1/projects", json={"name": "p", "local_repository_path": str(repo)}, headers=auth
        )
        project_id = project.json()["project"]["id"]
        pipeline = await api.post(
            f"/v1/projects/{project_id}/pipelines", json={"name": "ci"}, headers=auth
        )
        pipeline_id = pipeline.json()["pipeline"]["id"]
        build_ids: list[str] = []

        async def trigger(count: int) -> None:
            for _ in range(count):
                reply = await api.post(
                    f"/v1/projects/{project_id}/builds",
                    json={"pipeline_id": pipeline_id},
                    headers=auth,
                )
                assert reply.status_code == 201, reply.text
                build_ids.append(reply.json()["build"]["id"])

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(trigger, BUILDS // 8)
        progress = Progress(KILL_AFTER)
        runners = []
        for i in range(RUNNERS):
            reg = await api.post("/v1/runners/register", json={"name": f"sim{i}"}, headers=auth)
            runners.append(
                SimulatedRunner(base, reg.json()["runner"]["id"], reg.json()["token"], progress)
            )

    done = trio.Event()
    with trio.fail_after(240):
        async with trio.open_nursery() as nursery:
            for runner in runners:
                nursery.start_soon(runner.run, done)
            await progress.reached.wait()
            daemon.kill()
            daemon.start("--listen", f"127.0.0.1:{port}")
            async with httpx.AsyncClient(base_url=base, timeout=30) as api:
                while True:
                    listed = await api.get("/v1/builds?status=succeeded&limit=1", headers=auth)
                    if listed.status_code == 200 and listed.json()["total"] == BUILDS:
                        break
                    await trio.sleep(0.2)
            done.set()

        async with httpx.AsyncClient(base_url=base, timeout=30) as api:
            attempts: dict[str, int] = {}
            assigned_events: Counter[str] = Counter()
            for build_id in build_ids:
                detail = (await api.get(f"/v1/builds/{build_id}", headers=auth)).json()
                assert detail["build"]["status"] == "succeeded"
                attempts[build_id] = detail["build"]["attempt"]
                assigned_events[build_id] = sum(
                    1 for e in detail["events"] if e["to_status"] == "assigned"
                )

    holders: defaultdict[tuple[str, int], list[str]] = defaultdict(list)
    for runner in runners:
        for got in runner.got:
            holders[got].append(runner.id)
    assert all(len(ids) == 1 for ids in holders.values()), "an attempt reached two runners"
    for build_id in build_ids:
        heard = [attempt for (b, attempt) in holders if b == build_id]
        assert heard, f"build {build_id} never reached a runner"
        assert max(heard) == attempts[build_id]
        # A claim whose answer died with the daemon is an assignment no runner heard of.
        assert len(heard) <= assigned_events[build_id] == attempts[build_id]
    assert daemon.stop() == 0
