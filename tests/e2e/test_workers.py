"""``oored --workers N``: a supervisor and its worker processes on one port, for real."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from oore.timeslice import SHORT_SLICE_NS, slice_of
from tests.conftest import kernel_takes_short_slices, scratch_dir
from tests.e2e.conftest import Daemon, DaemonFactory, alive, postgres_pid
from tests.e2e.test_claims_survive_a_crash import make_repo

_SERVING = re.compile(r"worker\.serving .*worker=(\d+) worker_pid=(\d+)")
_ACCESS = re.compile(r"http\.request pid=(\d+) .*path=/healthz")
_STREAM_ACCESS = re.compile(r"http\.request pid=(\d+) .*path=/v1/builds/none/logs/stream")
_LANES = re.compile(r'^oore_lane_connections_total\{way="(\w+)"\} (\S+)$', re.M)
CONNECTIONS = 20
OORE_CLI = (sys.executable, "-m", "oore.cli")
# Long enough for a loaded machine; the tests wait on conditions, never this long.
WITHIN = 30.0


def serving_workers(daemon: Daemon, count: int) -> dict[int, int]:
    """Slot -> pid of the workers the supervisor said serve (all of them, once each)."""
    pids: dict[int, int] = {}
    for match in _SERVING.finditer(daemon.text()):
        pids[int(match[1])] = int(match[2])
    assert len(pids) == count, daemon.text()
    return pids


def wait_gone(pid: int, within: float) -> None:
    deadline = time.monotonic() + within
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), f"pid {pid} still runs"


def thread_slices(pid: int) -> list[int | None]:
    """The CPU slice of each thread of process ``pid``."""
    return [slice_of(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")]


def children(pid: int) -> list[int]:
    """The processes ``pid`` started that still run."""
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as listed:
            found += [int(child) for child in listed.read().split()]
    return found


def fresh_connections(daemon: Daemon) -> httpx.Client:
    """A client that opens a new connection per request (the kernel picks a worker for
    each new connection, not for each request)."""
    return httpx.Client(
        base_url=daemon.url, timeout=10.0, limits=httpx.Limits(max_keepalive_connections=0)
    )


def test_two_workers_serve_one_port_and_share_the_database(
    make_daemon: DaemonFactory, tmp_path: Path
) -> None:
    daemon = make_daemon()
    daemon.env = {**daemon.env, "OORED_ACCESS_LOG": "1"}
    daemon.start("--workers", "2")
    assert daemon.text().count("oored listening on") == 1
    workers = serving_workers(daemon, 2)
    assert os.getpid() not in workers.values() and daemon.proc is not None
    assert daemon.proc.pid not in workers.values()

    # The control socket answers (worker 0 serves it) for the operator's CLI.
    minted = subprocess.run(
        [*OORE_CLI, "--data-dir", str(daemon.data_dir), "setup", "bootstrap-token"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert minted.returncode == 0, minted.stderr
    assert re.fullmatch(r"[0-9a-f]{64}", minted.stdout.strip())

    # Every worker accepts from the port, and each new connection is served in its lane:
    # the API by worker 1, a build's live log (as a runner's channel) by worker 0. Each
    # worker names its pid in its access lines.
    with fresh_connections(daemon) as client:
        for _ in range(CONNECTIONS):
            assert client.get("/healthz").json()["ok"] is True
            assert client.get("/v1/builds/none/logs/stream").status_code == 401
    deadline = time.monotonic() + WITHIN
    while time.monotonic() < deadline and (
        len(_ACCESS.findall(daemon.text())) < CONNECTIONS
        or len(_STREAM_ACCESS.findall(daemon.text())) < CONNECTIONS
    ):
        time.sleep(0.05)
    assert [int(pid) for pid in _ACCESS.findall(daemon.text())] == [workers[1]] * CONNECTIONS
    assert [int(pid) for pid in _STREAM_ACCESS.findall(daemon.text())] == [workers[0]] * CONNECTIONS
    # Worker 1 (which answers /metrics) took the API connections worker 0 accepted, and
    # handed over the live logs it accepted (the kernel gave each worker some of the 40).
    with fresh_connections(daemon) as client:
        counted = dict(_LANES.findall(client.get("/metrics").text))
    assert float(counted["taken"]) > 0 and float(counted["handed"]) > 0, counted
    assert counted["kept"] == "0.0"
    # On a busy machine the runners' worker comes first.
    priority = {slot: os.getpriority(os.PRIO_PROCESS, pid) for slot, pid in workers.items()}
    assert priority[1] > priority[0], priority
    if kernel_takes_short_slices():  # and its wake-ups, and its sessions', wait less
        assert set(thread_slices(workers[0])) == {SHORT_SLICE_NS}
        assert SHORT_SLICE_NS not in thread_slices(workers[1])
        postmaster = postgres_pid(daemon.data_dir)
        assert postmaster is not None
        sessions = [slice_of(pid) for pid in children(postmaster)]
        assert 1 <= sessions.count(SHORT_SLICE_NS) < len(sessions), sessions

    # A session made through one worker works through any other, and so does what it made.
    with fresh_connections(daemon) as client:
        token = client.post("/v1/auth/local/login", json={}).json()["session_token"]
        auth = {"Authorization": f"Bearer {token}"}
        created = client.post(
            "/v1/projects",
            json={"name": "shared", "local_repository_path": str(make_repo(tmp_path))},
            headers=auth,
        )
        assert created.status_code == 201, created.text
        for _ in range(10):
            listed = client.get("/v1/projects", headers=auth)
            assert listed.status_code == 200
            assert [p["name"] for p in listed.json()["projects"]] == ["shared"]
    assert daemon.stop() == 0


def test_a_killed_worker_is_replaced_and_the_port_keeps_answering(
    make_daemon: DaemonFactory,
) -> None:
    daemon = make_daemon().start("--workers", "2")
    workers = serving_workers(daemon, 2)
    os.kill(workers[1], signal.SIGKILL)
    died = daemon.wait_for(re.compile(r"worker\.died .*worker=1 .*killed by SIGKILL"), WITHIN)
    assert str(workers[1]) in died[0]
    with fresh_connections(daemon) as client:  # worker 0 answers meanwhile
        for _ in range(5):
            assert client.get("/healthz").status_code == 200
    replaced = daemon.wait_for(re.compile(r"worker\.serving .*worker=1 worker_pid=(\d+)"), WITHIN)
    new_pid = int(replaced[1])
    assert new_pid != workers[1] and alive(new_pid)
    assert re.search(rf"worker\.started .*worker=1 worker_pid={new_pid}", daemon.text())
    assert alive(workers[0]) and daemon.proc is not None and daemon.proc.poll() is None
    with fresh_connections(daemon) as client:
        for _ in range(10):
            assert client.get("/healthz").status_code == 200
    assert daemon.stop() == 0


def test_sigterm_stops_every_worker_and_the_embedded_postgres_within_the_grace(
    make_daemon: DaemonFactory,
) -> None:
    grace = 5.0
    daemon = make_daemon()
    daemon.env = {**daemon.env, "OORED_SHUTDOWN_GRACE": str(grace)}
    daemon.start("--workers", "2")
    workers = serving_workers(daemon, 2)
    pg = postgres_pid(daemon.data_dir)
    assert pg is not None and alive(pg)
    started = time.monotonic()
    assert daemon.stop(timeout=grace + 10) == 0
    for pid in (*workers.values(), pg):
        wait_gone(pid, max(0.1, grace - (time.monotonic() - started)))
    assert re.search(r"worker\.stopped .*worker=0 ", daemon.text())
    assert re.search(r"worker\.stopped .*worker=1 ", daemon.text())
    assert not (daemon.data_dir / "oored.sock").exists()


def test_workers_do_not_outlive_a_killed_supervisor(make_daemon: DaemonFactory) -> None:
    daemon = make_daemon().start("--workers", "2")
    workers = serving_workers(daemon, 2)
    daemon.kill()
    for pid in workers.values():  # each sees its channel close and stops by itself
        wait_gone(pid, WITHIN)
    # The embedded PostgreSQL it left is adopted by the next start, as after any crash.
    daemon.start("--workers", "2")
    with daemon.client() as client:
        assert client.get("/readyz").status_code == 200
    assert daemon.stop() == 0


def test_the_supervisor_restarts_a_killed_embedded_postgres(make_daemon: DaemonFactory) -> None:
    root = scratch_dir("oore-workers-")
    root.chmod(0o755)  # PostgreSQL's own user reads its data under it
    try:
        daemon = make_daemon(root / "data").start("--workers", "2")
        with fresh_connections(daemon) as client:
            token = client.post("/v1/auth/local/login", json={}).json()["session_token"]
            auth = {"Authorization": f"Bearer {token}"}
            pg = postgres_pid(daemon.data_dir)
            assert pg is not None
            os.kill(pg, signal.SIGKILL)
            daemon.wait_for(re.compile(r"embedded PostgreSQL in \S+ restarted"), WITHIN)
            deadline = time.monotonic() + WITHIN
            answered = 0
            while answered < 10 and time.monotonic() < deadline:  # both pools reconnect
                me = client.get("/v1/users/me", headers=auth)
                answered = answered + 1 if me.status_code == 200 else 0
            assert answered == 10, daemon.text()
        assert daemon.stop() == 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("reuse_port", [False, True])
def test_a_port_held_by_another_program_is_refused(
    make_daemon: DaemonFactory, reuse_port: bool
) -> None:
    with socket.socket() as holder:
        # One that sets SO_REUSEPORT too would otherwise share its connections with oored.
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, int(reuse_port))
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        daemon = make_daemon().start("--workers", "2", "--listen", f"127.0.0.1:{port}", wait=False)
        assert daemon.stop(sig=None) == 1
    assert daemon.text().splitlines() == [
        f"oored: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def write_key(data_dir: Path, key: bytes) -> None:
    data_dir.mkdir(parents=True, mode=0o700)
    fd = os.open(data_dir / "encryption.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(key)


def test_a_daemon_with_another_key_refuses_to_share_the_database(
    make_daemon: DaemonFactory, database_url: str, tmp_path: Path
) -> None:
    first_key, other_key = os.urandom(32), os.urandom(32)
    write_key(tmp_path / "first", first_key)
    write_key(tmp_path / "second", other_key)
    first = make_daemon(tmp_path / "first")
    first.env = {**first.env, "OORED_DATABASE_URL": database_url}
    first.start()
    with first.client() as client:
        assert client.get("/readyz").status_code == 200

    for extra in ((), ("--workers", "2")):
        second = make_daemon(tmp_path / "second")
        second.env = first.env
        second.start(*extra, wait=False)
        assert second.stop(sig=None) == 1, second.text()
        refusal = [line for line in second.text().splitlines() if line.startswith("oored: ")]
        assert len(refusal) == 1, second.text()
        assert "is not the encryption key of this database" in refusal[0]
        assert "copy encryption.key from the data directory" in refusal[0]
        assert str(tmp_path / "second" / "encryption.key") in refusal[0]
        assert "oored listening on" not in second.text()

    # With the first daemon's key copied over, the second starts and serves beside it.
    (tmp_path / "second" / "encryption.key").write_bytes(first_key)
    second = make_daemon(tmp_path / "second")
    second.env = first.env
    second.start("--workers", "2")
    with second.client() as client:
        assert client.get("/readyz").status_code == 200
    assert second.stop() == 0
    assert first.stop() == 0
