from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from oore.runner.channel import RunnerChannel
from oore.runner.client import ConnectionFailed, RunnerCredentials
from tests.e2e.conftest import Daemon, DaemonFactory, alive, postgres_pid


def _wait_ready(daemon: Daemon, within: float) -> float:
    started = time.monotonic()
    with daemon.client() as client:
        while time.monotonic() - started < within:
            if client.get("/readyz").status_code == 200:
                return time.monotonic() - started
            time.sleep(0.05)
    raise AssertionError("not ready in time:\n" + daemon.text())


def test_oored_with_no_configuration_is_ready_and_stops_cleanly(
    make_daemon: DaemonFactory,
) -> None:
    daemon = make_daemon()
    daemon.cluster = None
    daemon.start()
    # A first start includes initdb of the embedded cluster; how long it takes is a
    # figure for the README, not an assertion here (it varies with the machine's load).
    _wait_ready(daemon, 30.0)
    with daemon.client() as client:
        status = client.get("/v1/public/setup-status").json()
        assert status["state"] == "bootstrap_pending"
        assert client.get("/healthz").json()["ok"] is True
    pg = postgres_pid(daemon.data_dir)
    assert pg is not None and alive(pg)
    assert daemon.stop() == 0
    deadline = time.monotonic() + 10
    while alive(pg) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pg), "embedded PostgreSQL outlived the daemon"


def test_second_daemon_on_the_same_data_directory_refuses(make_daemon: DaemonFactory) -> None:
    first = make_daemon().start()
    second = make_daemon(first.data_dir).start(wait=False)
    assert second.proc is not None
    assert second.stop(sig=None) == 1
    assert re.search(r"in use by another oored \(pid \d+\)", second.text()), second.text()
    with first.client() as client:
        assert client.get("/readyz").status_code == 200


def test_sigkill_loses_nothing_acknowledged(make_daemon: DaemonFactory) -> None:
    daemon = make_daemon().start()
    with daemon.client() as client:
        login = client.post("/v1/auth/local/login", json={})
        assert login.status_code == 200
        token = login.json()["session_token"]
        instance_id = client.get("/v1/public/setup-status").json()["instance_id"]
    daemon.kill()
    daemon.start()
    with daemon.client() as client:
        _wait_ready(daemon, 10.0)
        status = client.get("/v1/public/setup-status").json()
        assert (status["instance_id"], status["state"]) == (instance_id, "ready")
        me = client.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["user"]["role"] == "owner"
    assert daemon.stop() == 0


def test_bad_configuration_is_one_line_and_nonzero(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "oore.daemon", "--listen", "nowhere", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--listen" in lines[0], result.stderr


def test_bootstrap_token_is_minted_out_of_band(make_daemon: DaemonFactory) -> None:
    daemon = make_daemon().start()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "oore.cli",
            "--data-dir",
            str(daemon.data_dir),
            "setup",
            "bootstrap-token",
            "--ttl",
            "15m",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    with daemon.client() as client:
        first = client.post("/v1/setup/bootstrap-token/verify", json={"token": token})
        assert first.status_code == 200 and len(first.json()["session_token"]) == 64
        second = client.post("/v1/setup/bootstrap-token/verify", json={"token": token})
        assert (second.status_code, second.json()["code"]) == (410, "token_consumed")
    assert daemon.stop() == 0


@pytest.mark.parametrize("ttl", ["0s", "2h", "soon"])
def test_cli_refuses_bad_ttl(tmp_path: Path, ttl: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "oore.cli",
            "--data-dir",
            str(tmp_path),
            "setup",
            "bootstrap-token",
            "--ttl",
            ttl,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "--ttl" in result.stderr


def test_cli_without_a_daemon_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "oore.cli", "--data-dir", str(tmp_path), "setup", "bootstrap-token"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1 and "not running" in result.stderr


def _register_runner(daemon: Daemon, name: str) -> dict[str, Any]:
    """A runner registered by the local owner: the registration's answer."""
    with daemon.client() as client:
        token = client.post("/v1/auth/local/login", json={}).json()["session_token"]
        reply = client.post(
            "/v1/runners/register",
            json={"name": name},
            headers={"Authorization": f"Bearer {token}"},
        )
        registration: dict[str, Any] = reply.json()
        return registration


def test_stopping_answers_parked_claims_at_once(make_daemon: DaemonFactory) -> None:
    daemon = make_daemon().start()
    reg = _register_runner(daemon, "parked")
    answers: list[httpx.Response] = []

    def park() -> None:
        with httpx.Client(base_url=daemon.url, timeout=90) as runner:
            answers.append(
                runner.post(
                    f"/v1/runners/{reg['runner']['id']}/claim",
                    json={"protocol_version": 4, "wait_seconds": 60},
                    headers={"Authorization": f"Bearer {reg['token']}"},
                )
            )

    parked = threading.Thread(target=park)
    parked.start()
    time.sleep(0.5)  # the claim is parked
    began = time.monotonic()
    assert daemon.stop() == 0
    took = time.monotonic() - began
    parked.join(timeout=10)
    # No work: `{}` (contract §5.4), answered when the daemon began to stop.
    assert [(a.status_code, a.json()) for a in answers] == [(200, {})]
    # The grace period is 10 s; a parked claim must not hold the daemon for it.
    assert took < 5.0, daemon.text()


def test_stopping_answers_a_claim_parked_on_a_channel_and_closes_it(
    make_daemon: DaemonFactory,
) -> None:
    daemon = make_daemon().start()
    reg = _register_runner(daemon, "on-a-channel")
    credentials = RunnerCredentials(reg["runner"]["id"], reg["token"])
    answers: list[object] = []
    parked = threading.Event()

    async def park() -> None:
        channel = RunnerChannel(daemon.url, credentials=credentials)
        async with trio.open_nursery() as nursery:
            await nursery.start(channel.run)
            await channel.heartbeat("online")
            parked.set()
            answers.append(await channel.claim(wait_seconds=60))
            try:
                await channel.heartbeat("online")  # the channel is gone
            except ConnectionFailed as exc:
                answers.append(type(exc))
            nursery.cancel_scope.cancel()

    runner = threading.Thread(target=trio.run, args=(park,))
    runner.start()
    assert parked.wait(10)
    time.sleep(0.5)  # the claim is parked
    began = time.monotonic()
    assert daemon.stop() == 0
    took = time.monotonic() - began
    runner.join(timeout=10)
    # No work (the claim answers at once), then the channel is closed.
    assert answers == [None, ConnectionFailed]
    # The grace period is 10 s; an open channel must not hold the daemon for it.
    assert took < 5.0, daemon.text()
