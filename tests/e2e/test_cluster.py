"""Three real ``oored`` processes on one PostgreSQL (the test's embedded server, shared
through ``OORED_DATABASE_URL``), as a team runs them behind a load balancer.

* Any daemon takes any request: a build queued through A runs on a real runner connected
  to B; a cancel through C reaches that runner; what one daemon writes the others read.
* SIGKILL of the leader while runners spread over the three claim builds and append log
  lines: no build lost, none run by two runners, every acknowledged line stored, and
  another daemon takes over the maintenance duties (the dead daemon's assignments time
  out through it).
* PostgreSQL restarted under the three: each says not ready while it is down and comes
  back by itself, and the daemons hear each other again.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from oore.store.embedded import EmbeddedPostgres
from tests.e2e.conftest import Daemon, DaemonFactory
from tests.e2e.test_database_outage import (  # noqa: F401
    external_postgres,
    pg_root,
    stop_immediately,
)
from tests.e2e.test_runner_agent import (
    Api,
    committed_repo,
    gone,
    pipeline_file,
    read_pid,
    runners,  # noqa: F401
    wait_until,
)

# Requests cut off by the SIGKILL leave httpx's request-body generators unfinished; their
# garbage collection warns. That is the point of these tests, not a leak of ours.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

LEADER_LEASE = 2
RUNNER_LEASE = 6
ASSIGN_TIMEOUT = 4
WAIT = 90.0
_LEADER = re.compile(r"^oore_cluster_leader (\S+)$", re.MULTILINE)


def start_cluster(
    make_daemon: DaemonFactory, root: Path, database_url: str, count: int = 3
) -> list[Daemon]:
    """``count`` daemons on one database, each with its own data directory holding the
    same encryption key (what an operator copies from the first daemon)."""
    key = secrets.token_bytes(32)
    daemons = []
    for i in range(count):
        data = root / f"daemon-{i}"
        data.mkdir(parents=True)
        (data / "encryption.key").write_bytes(key)
        (data / "encryption.key").chmod(0o600)
        daemon = make_daemon(data)
        daemon.env = dict(
            daemon.env,
            OORED_DATABASE_URL=database_url,
            OORED_LEADER_LEASE_SECONDS=str(LEADER_LEASE),
            OORED_RUNNER_LEASE_SECONDS=str(RUNNER_LEASE),
            OORED_ASSIGN_TIMEOUT_SECONDS=str(ASSIGN_TIMEOUT),
        )
        daemons.append(daemon.start())
    return daemons


def leading(daemon: Daemon) -> bool:
    try:
        text = httpx.get(f"{daemon.url}/metrics", timeout=10).text
    except httpx.TransportError:
        return False
    match = _LEADER.search(text)
    return match is not None and float(match[1]) == 1


def the_leader(daemons: list[Daemon]) -> Daemon:
    def one() -> Daemon | None:
        found = [d for d in daemons if leading(d)]
        return found[0] if len(found) == 1 else None

    leader: Daemon = wait_until("exactly one leader", one, timeout=WAIT)
    return leader


def sse_events(chunks: Iterable[str]) -> Iterator[dict[str, str]]:
    """The events of a server-sent event stream read as text chunks (comments dropped)."""
    pending = ""
    for text in chunks:
        pending += text
        *blocks, pending = pending.split("\n\n")
        for block in blocks:
            fields = dict(
                line.partition(": ")[::2] for line in block.split("\n") if not line.startswith(":")
            )
            if "event" in fields:
                yield fields


@pytest.mark.timeout(300)
def test_any_daemon_takes_any_request(
    make_daemon: DaemonFactory,
    runners: Callable[..., subprocess.Popen[bytes]],  # noqa: F811
    database_url: str,
    tmp_path: Path,
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    repo = committed_repo(
        tmp_path / "repo",
        {
            "ci/pass.yaml": pipeline_file('for i in $(seq 1 200); do echo "line $i"; done'),
            "ci/stubborn.yaml": pipeline_file(
                f"trap '' TERM; sleep 300 & echo $! > {marks}/stubborn.pid; wait"
            ),
        },
    )
    a, b, c = start_cluster(make_daemon, tmp_path / "cluster", database_url)
    with a.client() as on_a, b.client() as on_b, c.client() as on_c:
        api_a = Api.local_owner(on_a)
        # A session signed in through A is a session of the whole installation.
        api_b, api_c = Api(on_b, api_a.token), Api(on_c, api_a.token)
        project = api_a.project("app", repo)

        def pipeline(name: str) -> str:
            made = api_c.pipeline(
                project["id"], name=name, config_path=f"ci/{name}.yaml", config_path_explicit=True
            )
            pipeline_id: str = made["id"]
            return pipeline_id

        passing, stubborn = pipeline("pass"), pipeline("stubborn")
        runners(b.url, api_a.token, "on-b", "linux")
        wait_until("the runner to register", lambda: api_c.call("GET", "/v1/runners")["total"])

        # Queued through A, run by the runner connected to B, read through C.
        done = api_c.finished(api_a.trigger(project["id"], passing)["id"])
        assert done["build"]["status"] == "succeeded", done
        lines = [line["content"] for line in api_c.logs(done["build"]["id"])]
        assert [text for text in lines if text.startswith("line ")] == [
            f"line {i}" for i in range(1, 201)
        ]

        # A stream token minted through A opens the log through C, once.
        token = api_a.call("POST", f"/v1/builds/{done['build']['id']}/stream-token")["token"]
        stream = f"/v1/builds/{done['build']['id']}/logs/stream?token={token}"
        with on_c.stream("GET", stream) as reply:
            assert reply.status_code == 200
            events = list(sse_events(reply.iter_text()))
        assert [e["event"] for e in events].count("log") == len(lines)
        assert events[-1] == {"event": "done", "data": "build_finished"}
        assert on_b.get(stream).status_code == 401

        # Settings saved through B are what A and C answer with, within a second or so.
        network = "/v1/settings/external-access/network"
        saved = api_b.call(
            "PUT",
            network,
            {"public_url": "https://ci.example.com", "allowed_origins": ["https://ci.example.com"]},
        )

        def applied() -> bool:
            return all(api.call("GET", network) == saved for api in (api_a, api_c))

        wait_until("the setting to apply on the others", applied)

        # A cancel through C reaches the runner on B: its process is gone.
        held = api_a.trigger(project["id"], stubborn)["id"]
        pid = wait_until("the stubborn step to start", lambda: read_pid(marks / "stubborn.pid"))
        wait_until("it to run", lambda: api_b.build(held)["build"]["status"] == "running")
        assert api_c.call("POST", f"/v1/builds/{held}/cancel")["build"]["status"] == "canceled"
        wait_until("the canceled process to end", lambda: gone(pid), timeout=WAIT)
        assert api_a.build(held)["build"]["status"] == "canceled"

    for daemon in (a, b, c):
        assert daemon.stop() == 0, daemon.text()


@pytest.mark.timeout(300)
def test_a_dead_daemon_loses_nothing(
    make_daemon: DaemonFactory,
    runners: Callable[..., subprocess.Popen[bytes]],  # noqa: F811
    database_url: str,
    tmp_path: Path,
) -> None:
    """SIGKILL of the daemon a runner and a viewer use, mid-build: the runner moves to
    another daemon and finishes its build (no requeue), the viewer reconnects to another
    with ``Last-Event-ID`` and gets every line once, in order."""
    lines = 120
    repo = committed_repo(
        tmp_path / "repo",
        {
            ".oore.yaml": pipeline_file(
                f'for i in $(seq 1 {lines}); do echo "line $i"; sleep 0.05; done'
            )
        },
    )
    a, b, c = start_cluster(make_daemon, tmp_path / "cluster", database_url)
    with a.client() as on_a, c.client() as on_c:
        api_a = Api.local_owner(on_a)
        api_c = Api(on_c, api_a.token)
        project = api_a.project("app", repo)
        pipeline = api_a.pipeline(project["id"], name="ci")
        runners(f"{b.url},{c.url}", api_a.token, "on-b", "linux")
        wait_until("the runner to register", lambda: api_c.call("GET", "/v1/runners")["total"])
        build_id = api_a.trigger(project["id"], pipeline["id"])["id"]

        seen: list[dict[str, str]] = []
        with httpx.Client(timeout=120) as viewer:
            with viewer.stream(
                "GET", f"{b.url}/v1/builds/{build_id}/logs/stream", headers=api_a.auth
            ) as reply:
                assert reply.status_code == 200
                try:
                    for event in sse_events(reply.iter_text()):
                        seen.append(event)
                        if event["event"] == "log" and '"line 20"' in event["data"]:
                            b.kill()  # the runner's daemon and the viewer's, mid-build
                except httpx.TransportError:
                    pass
            assert not any(e["event"] == "done" for e in seen)
            last = [e for e in seen if e["event"] == "log"][-1]["id"]
            with viewer.stream(
                "GET",
                f"{c.url}/v1/builds/{build_id}/logs/stream",
                headers={**api_a.auth, "Last-Event-ID": last},
            ) as reply:
                assert reply.status_code == 200
                for event in sse_events(reply.iter_text()):
                    seen.append(event)
                    if event["event"] == "done":
                        break

        done = api_c.finished(build_id)
        assert done["build"]["status"] == "succeeded", done
        # It kept its build: assigned once, never requeued.
        assert [e["to_status"] for e in done["events"]].count("assigned") == 1
        assert done["build"]["attempt"] == 1

    logs = [json.loads(e["data"]) for e in seen if e["event"] == "log"]
    sequences = [line["sequence"] for line in logs]
    assert sequences == sorted(set(sequences))  # once each, in order, across both daemons
    assert [line["content"] for line in logs if line["content"].startswith("line ")] == [
        f"line {i}" for i in range(1, lines + 1)
    ]
    assert [e["data"] for e in seen if e["event"] == "done"] == ["build_finished"]
    for daemon in (a, c):
        assert daemon.stop() == 0, daemon.text()


class Progress:
    def __init__(self, kill_at: int) -> None:
        self.claims = 0
        self.kill_at = kill_at
        self.reached = trio.Event()

    def claimed(self) -> None:
        self.claims += 1
        if self.claims >= self.kill_at:
            self.reached.set()


class SpreadRunner:
    """A runner as a plain HTTP client talking to one daemon of several, moving on to the
    next when its daemon cannot be reached. For each build it claims it reports running,
    appends numbered lines (remembering which appends were answered), and succeeds."""

    LINES = 20

    def __init__(
        self, urls: list[str], first: int, runner_id: str, token: str, progress: Progress
    ) -> None:
        self.urls = urls
        self.at = first
        self.id = runner_id
        self.headers = {"Authorization": f"Bearer {token}"}
        self.progress = progress
        self.got: list[tuple[str, int]] = []
        self.acked: dict[tuple[str, int], set[int]] = {}

    async def call(self, client: httpx.AsyncClient, path: str, body: Any) -> httpx.Response:
        while True:
            try:
                return await client.post(
                    f"{self.urls[self.at]}{path}", json=body, headers=self.headers
                )
            except httpx.TransportError:
                self.at = (self.at + 1) % len(self.urls)  # its daemon died: the next one
                await trio.sleep(0.05)

    async def run(self, done: trio.Event) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            while not done.is_set():
                body = {"protocol_version": 4, "wait_seconds": 1}
                claimed = await self.call(client, f"/v1/runners/{self.id}/claim", body)
                if claimed.status_code != 200:
                    await trio.sleep(0.05)
                    continue
                job = claimed.json().get("job")
                if job is None:
                    continue
                key = (job["build_id"], job["attempt"])
                self.got.append(key)
                self.progress.claimed()
                await self.work(client, job, key)

    async def work(self, client: httpx.AsyncClient, job: dict[str, Any], key: Any) -> None:
        jobs = f"/v1/runners/{self.id}/jobs/{job['build_id']}"
        reply = await self.call(client, f"{jobs}/status", {"status": "running"})
        if reply.status_code != 200:
            return  # taken back (its assignment timed out): not ours any more
        acked = self.acked.setdefault(key, set())
        for start in range(0, self.LINES, 5):
            lines = [
                {"sequence": s, "stream": "stdout", "content": f"{job['build_id']} line {s}"}
                for s in range(start, start + 5)
            ]
            reply = await self.call(
                client, f"{jobs}/logs", {"chunks": lines, "attempt": job["attempt"]}
            )
            if reply.status_code != 200:
                return
            acked.update(range(start, start + 5))
        await self.call(client, f"{jobs}/status", {"status": "succeeded", "exit_code": 0})


@pytest.mark.timeout(400)
async def test_killing_the_leader_loses_nothing_and_leadership_moves(
    make_daemon: DaemonFactory, database_url: str, tmp_path: Path
) -> None:
    builds, count = 120, 12  # the leader dies after a third of them are claimed
    repo = committed_repo(tmp_path / "repo", {".oore.yaml": pipeline_file("echo hi")})
    daemons = start_cluster(make_daemon, tmp_path / "cluster", database_url)
    urls = [d.url for d in daemons]
    leader = await trio.to_thread.run_sync(the_leader, daemons)
    async with httpx.AsyncClient(base_url=urls[0], timeout=30) as api:
        token = (await api.post("/v1/auth/local/login", json={})).json()["session_token"]
        auth = {"Authorization": f"Bearer {token}"}
        made = await api.post(
            "/v1/projects", json={"name": "p", "local_repository_path": str(repo)}, headers=auth
        )
        project_id = made.json()["project"]["id"]
        made = await api.post(
            f"/v1/projects/{project_id}/pipelines", json={"name": "ci"}, headers=auth
        )
        pipeline_id = made.json()["pipeline"]["id"]
        build_ids = []
        async with httpx.AsyncClient(timeout=30) as via:
            for i in range(builds):  # queued through all three
                reply = await via.post(
                    f"{urls[i % 3]}/v1/projects/{project_id}/builds",
                    json={"pipeline_id": pipeline_id},
                    headers=auth,
                )
                assert reply.status_code == 201, reply.text
                build_ids.append(reply.json()["build"]["id"])
        progress = Progress(builds // 3)
        fleet = []
        for i in range(count):
            reg = await api.post("/v1/runners/register", json={"name": f"r{i}"}, headers=auth)
            assert reg.status_code == 200, reg.text
            body = reg.json()
            fleet.append(SpreadRunner(urls, i % 3, body["runner"]["id"], body["token"], progress))

    survivors = [d for d in daemons if d is not leader]
    done = trio.Event()
    with trio.fail_after(WAIT * 3):
        async with trio.open_nursery() as nursery:
            for runner in fleet:
                nursery.start_soon(runner.run, done)
            await progress.reached.wait()
            leader.kill()  # mid-claims, mid-appends
            successor = await trio.to_thread.run_sync(the_leader, survivors)
            async with httpx.AsyncClient(base_url=successor.url, timeout=30) as api:
                while True:
                    listed = await api.get("/v1/builds?status=succeeded&limit=1", headers=auth)
                    if listed.status_code == 200 and listed.json()["total"] == builds:
                        break
                    await trio.sleep(0.2)
                done.set()

                # No attempt of a build reached two runners; every build ran to the end.
                holders: Counter[tuple[str, int]] = Counter()
                for runner in fleet:
                    holders.update(runner.got)
                assert max(holders.values()) == 1
                assert {build_id for build_id, _ in holders} == set(build_ids)
                # Every line whose append was answered is stored, once, in the attempt
                # that finished (an attempt taken back keeps its own log).
                for runner in fleet:
                    for (build_id, attempt), acked in runner.acked.items():
                        found = await api.get(
                            f"/v1/builds/{build_id}/logs?limit=5000&attempt={attempt}",
                            headers=auth,
                        )
                        assert found.status_code == 200, found.text
                        stored = [line["sequence"] for line in found.json()["logs"]]
                        assert len(stored) == len(set(stored))
                        assert acked <= set(stored), (build_id, attempt)
    assert any(leading(d) for d in survivors)
    for daemon in survivors:
        assert daemon.stop() == 0, daemon.text()


@pytest.mark.timeout(300)
async def test_postgres_restarted_under_three_daemons(
    make_daemon: DaemonFactory,
    external_postgres: EmbeddedPostgres,  # noqa: F811
    tmp_path: Path,
) -> None:
    daemons = start_cluster(make_daemon, tmp_path / "cluster", external_postgres.uri)

    async with httpx.AsyncClient(timeout=30) as client:

        async def ready(daemon: Daemon) -> int:
            return (await client.get(f"{daemon.url}/readyz")).status_code

        for daemon in daemons:
            assert await ready(daemon) == 200
        await trio.to_thread.run_sync(stop_immediately, external_postgres)

        async def all_answer(status: int) -> None:
            with trio.fail_after(WAIT):
                for daemon in daemons:
                    while await ready(daemon) != status:  # noqa: ASYNC110
                        await trio.sleep(0.1)

        await all_answer(503)
        assert external_postgres.revive()
        await all_answer(200)

        # They listen to each other again, having caught up once more.
        def caught_up() -> bool:
            for daemon in daemons:
                text = httpx.get(f"{daemon.url}/metrics", timeout=10).text
                if "oore_cluster_listening 1.0" not in text:
                    return False
                resyncs = re.search(r"^oore_cluster_resyncs_total (\S+)$", text, re.MULTILINE)
                if resyncs is None or float(resyncs[1]) < 2:
                    return False
            return True

        await trio.to_thread.run_sync(lambda: wait_until("re-LISTEN", caught_up, timeout=WAIT))
    for daemon in daemons:
        assert daemon.stop() == 0, daemon.text()
