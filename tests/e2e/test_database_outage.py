"""PostgreSQL goes away under a running ``oored`` and comes back.

While it is away every read and write answers 503 ``store_unavailable`` with Retry-After,
``/readyz`` says not ready and ``/healthz`` stays 200. The embedded server is restarted by
the daemon itself; an external one is restarted by its owner (here, the test) and the
daemon reconnects on its own. Afterwards everything works again — a project is created, a
build queued, a real runner claims and finishes it — and nothing acknowledged before or
during the outage is lost: the build queued before it runs too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from oore.store.embedded import POSTGRES_BIN_PATH, EmbeddedPostgres, server_lock
from tests.conftest import scratch_dir
from tests.e2e.conftest import Daemon, DaemonFactory, postgres_pid

WAIT = 60.0  # seconds any one condition may take on a loaded machine
PIPELINE = "version: 1\nplatforms: [android]\ncommands:\n  build:\n    - 'echo built'\n"

StartRunner = Callable[[str, str], subprocess.Popen[bytes]]


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    (repo / "ci").mkdir(parents=True)
    (repo / "ci" / "ok.yaml").write_text(PIPELINE)
    run = ["git", "-C", str(repo), "-c", "user.email=t@e", "-c", "user.name=t"]
    subprocess.run([*run, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*run, "add", "."], check=True)
    subprocess.run([*run, "commit", "-q", "-m", "pipeline"], check=True)
    return repo


@pytest.fixture
def pg_root() -> Iterator[Path]:
    """A directory for PostgreSQL data outside pytest's, whose root another pytest run may
    make private (0700) at any moment, cutting the server's own user off mid-test."""
    root = scratch_dir("oore-outage-")  # in memory where there is room, as the test server
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def start_runner(tmp_path: Path) -> Iterator[StartRunner]:
    """Real ``oore runner`` processes, stopped (and reaped) after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(server: str, token: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OORED_", "OORE_"))}
        with (tmp_path / "runner.log").open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "oore.cli",
                    "runner",
                    "--server",
                    server,
                    "--name",
                    "r",
                    "--work-dir",
                    str(tmp_path / "runner"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env, PYTHONUNBUFFERED="1", OORE_RUNNER_TOKEN=token),
            )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Api:
    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self.client = client
        self.auth = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return await self.client.request(method, path, json=body, headers=self.auth)

    async def ok(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        reply = await self.call(method, path, body)
        assert reply.status_code == expect, f"{method} {path}: {reply.status_code} {reply.text}"
        return reply.json()

    async def until(self, what: str, check: Callable[[], Any]) -> Any:
        """Poll ``check`` (an awaitable factory) until it returns something truthy."""
        with trio.fail_after(WAIT):
            while True:
                result = await check()
                if result:
                    return result
                await trio.sleep(0.1)
        raise AssertionError(what)  # pragma: no cover - fail_after raises first


def assert_unavailable(reply: httpx.Response) -> None:
    assert reply.status_code == 503, reply.text
    assert reply.json()["code"] == "store_unavailable"
    assert int(reply.headers["Retry-After"]) > 0


class Scenario:
    """One project with one pipeline; builds queued by the test, run by a real runner."""

    def __init__(self, api: Api, repo: Path) -> None:
        self.api = api
        self.repo = repo
        self.project_id = ""
        self.pipeline_id = ""

    async def create_project(self, name: str) -> str:
        created = await self.api.ok(
            "POST",
            "/v1/projects",
            {"name": name, "local_repository_path": str(self.repo)},
            expect=201,
        )
        project_id: str = created["project"]["id"]
        return project_id

    async def setup(self) -> None:
        self.project_id = await self.create_project("before")
        created = await self.api.ok(
            "POST",
            f"/v1/projects/{self.project_id}/pipelines",
            {"name": "ci", "config_path": "ci/ok.yaml", "config_path_explicit": True},
            expect=201,
        )
        self.pipeline_id = created["pipeline"]["id"]

    async def queue(self) -> str:
        created = await self.api.ok(
            "POST",
            f"/v1/projects/{self.project_id}/builds",
            {"pipeline_id": self.pipeline_id},
            expect=201,
        )
        build_id: str = created["build"]["id"]
        return build_id

    async def outage_answers(self, daemon: Daemon) -> None:
        """Reads and writes answer 503 store_unavailable; readyz not ready; healthz alive."""

        async def refused() -> bool:
            reply = await self.api.call("GET", "/v1/projects")
            return reply.status_code == 503

        await self.api.until("reads to be refused", refused)
        assert_unavailable(await self.api.call("GET", "/v1/projects"))
        assert_unavailable(await self.api.call("GET", f"/v1/projects/{self.project_id}"))
        assert_unavailable(
            await self.api.call(
                "POST", "/v1/projects", {"name": "during", "local_repository_path": "/x"}
            )
        )
        assert_unavailable(
            await self.api.call(
                "POST",
                f"/v1/projects/{self.project_id}/builds",
                {"pipeline_id": self.pipeline_id},
            )
        )
        ready = await self.api.call("GET", "/readyz")
        assert ready.status_code == 503
        assert ready.json()["database"] is False
        assert (await self.api.call("GET", "/healthz")).status_code == 200
        assert daemon.proc is not None and daemon.proc.poll() is None

    async def back(self) -> None:
        async def answers() -> bool:
            return (await self.api.call("GET", "/v1/projects")).status_code == 200

        await self.api.until("the database to be back", answers)
        ready = await self.api.ok("GET", "/readyz")
        assert ready["database"] is True

    async def finished(self, build_id: str) -> None:
        async def ended() -> bool:
            reply = await self.api.call("GET", f"/v1/builds/{build_id}")
            return reply.status_code == 200 and reply.json()["build"].get("finished_at")

        await self.api.until(f"build {build_id} to end", ended)
        detail = await self.api.ok("GET", f"/v1/builds/{build_id}")
        assert detail["build"]["status"] == "succeeded", detail


class Writer:
    """Creates projects one after another until told to stop; every answer is recorded."""

    def __init__(self, api: Api, repo: Path) -> None:
        self.api = api
        self.repo = repo
        self.acked: list[str] = []
        self.refused = 0
        self.started = trio.Event()
        self.saw_outage = trio.Event()
        self.stop = trio.Event()

    async def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            body = {"name": f"w{n}", "local_repository_path": str(self.repo)}
            reply = await self.api.call("POST", "/v1/projects", body)
            if reply.status_code == 201:
                self.acked.append(reply.json()["project"]["id"])
                if len(self.acked) >= 5:
                    self.started.set()
                continue
            assert_unavailable(reply)  # never a 500
            self.refused += 1
            if self.refused >= 5:
                self.saw_outage.set()
                await trio.sleep(0.05)


@asynccontextmanager
async def logged_in(daemon: Daemon) -> AsyncIterator[tuple[Api, str]]:
    async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as client:
        token = (await client.post("/v1/auth/local/login", json={})).json()["session_token"]
        yield Api(client, token), token


async def outage_round(
    daemon: Daemon,
    repo: Path,
    start_runner: StartRunner,
    go_away: Callable[[], None],
    come_back: Callable[[], None],
) -> None:
    """Acknowledged work, an outage with writes in flight, recovery, then real work."""
    try:
        await _outage_round(daemon, repo, start_runner, go_away, come_back)
    except BaseException:
        daemon.stop()
        print(daemon.text())  # shown by pytest with the failure
        raise
    assert daemon.stop() == 0, daemon.text()


async def _outage_round(
    daemon: Daemon,
    repo: Path,
    start_runner: StartRunner,
    go_away: Callable[[], None],
    come_back: Callable[[], None],
) -> None:
    async with logged_in(daemon) as (api, token):
        scenario = Scenario(api, repo)
        await scenario.setup()
        queued_before = await scenario.queue()  # no runner yet: it waits out the outage
        writer = Writer(api, repo)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            with trio.fail_after(WAIT):
                await writer.started.wait()
            go_away()
            with trio.fail_after(WAIT):
                await writer.saw_outage.wait()
            await scenario.outage_answers(daemon)
            runner = start_runner(daemon.url, token)  # registers once the database is back
            come_back()
            await scenario.back()
            writer.stop.set()

        # Nothing acknowledged is lost: the projects and the build from before the outage,
        # and every project whose creation was answered 201 while the database went away.
        await api.ok("GET", f"/v1/projects/{scenario.project_id}")
        for project_id in writer.acked:
            await api.ok("GET", f"/v1/projects/{project_id}")
        await api.ok("GET", f"/v1/builds/{queued_before}")

        # Everything works again: a new project, a new build, both builds run.
        await scenario.create_project("after")
        queued_after = await scenario.queue()
        await scenario.finished(queued_before)
        await scenario.finished(queued_after)
        assert runner.poll() is None


@pytest.mark.timeout(240)
async def test_killed_embedded_postgres_is_restarted_by_the_daemon(
    pg_root: Path, make_daemon: DaemonFactory, tmp_path: Path, start_runner: StartRunner
) -> None:
    repo = make_repo(tmp_path)
    daemon = make_daemon(pg_root / "data").start()
    held = server_lock()  # while the test holds it, the daemon cannot restart the server
    holding: list[bool] = []

    def kill_postmaster() -> None:
        held.__enter__()
        holding.append(True)
        pid = postgres_pid(daemon.data_dir)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)

    def let_it_restart() -> None:
        holding.clear()
        held.__exit__(None, None, None)

    try:
        await outage_round(daemon, repo, start_runner, kill_postmaster, let_it_restart)
    finally:
        if holding:  # the test failed during the outage
            held.__exit__(None, None, None)
    text = daemon.text()
    assert text.count("database unavailable") == 1, text
    assert text.count("database available again") == 1, text
    assert "restarted" in text


def stop_immediately(server: EmbeddedPostgres) -> None:
    """Stop ``server`` as a crash would (``pg_ctl -m immediate``): no shutdown checkpoint."""
    subprocess.run(
        [
            str(POSTGRES_BIN_PATH / "pg_ctl"),
            "-D",
            str(server.pgdata),
            "-m",
            "immediate",
            "-w",
            "stop",
        ],
        user="pgserver" if os.geteuid() == 0 else None,
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest.fixture
def external_postgres(pg_root: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL server of the test's own, which the daemon knows only by its URL."""
    server = EmbeddedPostgres(pg_root / "external-pg")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.timeout(240)
async def test_restarted_external_postgres_is_reconnected(
    pg_root: Path,
    make_daemon: DaemonFactory,
    tmp_path: Path,
    start_runner: StartRunner,
    external_postgres: EmbeddedPostgres,
) -> None:
    repo = make_repo(tmp_path)
    daemon = make_daemon()
    daemon.env["OORED_DATABASE_URL"] = external_postgres.uri
    daemon.start()

    def start_again() -> None:
        assert external_postgres.revive()  # same data directory, same socket

    await outage_round(
        daemon, repo, start_runner, lambda: stop_immediately(external_postgres), start_again
    )
    assert not (daemon.data_dir / "pg").exists()  # it never started one of its own
    text = daemon.text()
    assert text.count("database unavailable") == 1, text
    assert text.count("database available again") == 1, text


class ClaimingRunner:
    """A runner as a plain HTTP client: claims, reports running then succeeded.

    Every answer is 200, or 503 ``store_unavailable`` (then the same call is repeated);
    a status report answered 403/409 means the build was taken back, and is dropped.
    """

    def __init__(self, base: str, runner_id: str, token: str, claimed: trio.Event) -> None:
        self.base = base
        self.id = runner_id
        self.headers = {"Authorization": f"Bearer {token}"}
        self.got: list[tuple[str, int]] = []
        self.refused = 0
        self.claimed = claimed

    async def call(self, client: httpx.AsyncClient, path: str, body: Any) -> httpx.Response:
        while True:
            reply = await client.post(f"{self.base}{path}", json=body, headers=self.headers)
            if reply.status_code != 503:
                assert reply.status_code < 500, reply.text
                return reply
            assert_unavailable(reply)
            self.refused += 1
            await trio.sleep(0.05)

    async def run(self, done: trio.Event) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            while not done.is_set():
                body = {"protocol_version": 4, "wait_seconds": 1}
                claimed = await self.call(client, f"/v1/runners/{self.id}/claim", body)
                assert claimed.status_code == 200, claimed.text
                job = claimed.json().get("job")
                if job is None:
                    continue
                self.got.append((job["build_id"], job["attempt"]))
                self.claimed.set()
                for status in ("running", "succeeded"):
                    path = f"/v1/runners/{self.id}/jobs/{job['build_id']}/status"
                    reply = await self.call(client, path, {"status": status, "exit_code": 0})
                    if reply.status_code != 200:
                        break  # taken back from us (lease, assignment timeout)


@pytest.mark.timeout(240)
async def test_claims_and_reports_ride_out_a_killed_postgres(
    pg_root: Path, make_daemon: DaemonFactory, tmp_path: Path
) -> None:
    """Runners claim and finish builds while the postmaster is killed and restarted.

    Every build ends ``succeeded``; no attempt reaches two runners; every claim a runner
    was answered is in the database (an ``assigned`` event per attempt heard).
    """
    builds, runners_count = 60, 6
    repo = make_repo(tmp_path)
    daemon = make_daemon(pg_root / "data")
    daemon.env["OORED_ASSIGN_TIMEOUT_SECONDS"] = "3"
    daemon.start()
    try:
        async with logged_in(daemon) as (api, _):
            scenario = Scenario(api, repo)
            await scenario.setup()
            build_ids = [await scenario.queue() for _ in range(builds)]
            claimed = trio.Event()
            runners = []
            for i in range(runners_count):
                reg = await api.ok("POST", "/v1/runners/register", {"name": f"sim{i}"})
                runner = ClaimingRunner(daemon.url, reg["runner"]["id"], reg["token"], claimed)
                runners.append(runner)
            done = trio.Event()
            async with trio.open_nursery() as nursery:
                for runner in runners:
                    nursery.start_soon(runner.run, done)
                with trio.fail_after(WAIT):
                    await claimed.wait()
                pid = postgres_pid(daemon.data_dir)
                assert pid is not None
                os.kill(pid, signal.SIGKILL)

                async def all_succeeded() -> bool:
                    listed = await api.call("GET", "/v1/builds?status=succeeded&limit=1")
                    return listed.status_code == 200 and listed.json()["total"] == builds

                await api.until("every build to succeed", all_succeeded)
                done.set()

            holders: dict[tuple[str, int], list[str]] = {}
            for runner in runners:
                for got in runner.got:
                    holders.setdefault(got, []).append(runner.id)
            assert all(len(ids) == 1 for ids in holders.values()), "an attempt reached two"
            for build_id in build_ids:
                detail = await api.ok("GET", f"/v1/builds/{build_id}")
                assigned = [e for e in detail["events"] if e["to_status"] == "assigned"]
                heard = [attempt for (b, attempt) in holders if b == build_id]
                assert heard and max(heard) == detail["build"]["attempt"]
                assert len(heard) <= len(assigned) == detail["build"]["attempt"]
    except BaseException:
        daemon.stop()
        print(daemon.text())
        raise
    assert daemon.stop() == 0, daemon.text()
    assert daemon.text().count("database unavailable") >= 1
