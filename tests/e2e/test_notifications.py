"""End to end: a build that a real ``oore runner`` fails, in a real ``oored``, reaches a
signed webhook receiver and an SMTP server, both on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.e2e.conftest import DaemonFactory
from tests.notify_kit import mail_server, webhook_receiver
from tests.runner.kit import make_repo

SECRET = "e2e-notification-secret-0000000001"
ROOT = "/v1/settings/notification-channels"
FAILING = (
    "version: 1\nplatforms: [android]\ncommands:\n  build:\n    - 'echo failing'\n    - 'exit 3'\n"
)
RUNNER_STOP = 15.0


@pytest.fixture
def runner_procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Runner processes a test started, stopped (TERM, then KILL) and reaped after it."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=RUNNER_STOP)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _start_runner(
    tmp_path: Path, server: str, token: str, started: list[subprocess.Popen[bytes]]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OORED_", "OORE_"))}
    with (tmp_path / "runner.log").open("wb") as log:
        started.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "oore.cli",
                    "runner",
                    "--server",
                    server,
                    "--name",
                    "e2e",
                    "--labels",
                    "e2e",
                    "--work-dir",
                    str(tmp_path / "work"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env, PYTHONUNBUFFERED="1", OORE_RUNNER_TOKEN=token),
            )
        )


async def test_a_failed_build_notifies_a_webhook_and_an_smtp_server(
    make_daemon: DaemonFactory,
    database_url: str,
    runner_procs: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    head = make_repo(repo, {"ci/fail.yaml": FAILING})
    daemon = make_daemon()
    daemon.env["OORED_DATABASE_URL"] = database_url
    await trio.to_thread.run_sync(daemon.start)
    with webhook_receiver() as hook, mail_server() as smtp:
        async with httpx.AsyncClient(base_url=daemon.url, timeout=10.0) as client:
            login = await client.post("/v1/auth/local/login", json={})
            token = login.json()["session_token"]
            auth = {"Authorization": f"Bearer {token}"}

            async def post(path: str, body: Any) -> Any:
                reply = await client.post(path, json=body, headers=auth)
                assert reply.status_code in (200, 201), reply.text
                return reply.json()

            await post(
                ROOT,
                {
                    "name": "hook",
                    "kind": "webhook",
                    "events": ["build_failed"],
                    "url": hook.url,
                    "secret": SECRET,
                },
            )
            await post(
                ROOT,
                {
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
                },
            )
            project = await post(
                "/v1/projects", {"name": "app", "local_repository_path": str(repo)}
            )
            project_id = project["project"]["id"]
            pipeline = await post(
                f"/v1/projects/{project_id}/pipelines",
                {
                    "name": "fail",
                    "config_path": "ci/fail.yaml",
                    "config_path_explicit": True,
                    "runner_labels": ["e2e"],
                },
            )
            _start_runner(tmp_path, daemon.url, token, runner_procs)
            build = await post(
                f"/v1/projects/{project_id}/builds", {"pipeline_id": pipeline["pipeline"]["id"]}
            )
            build_id = build["build"]["id"]

            [got] = await hook.inbox.wait_for(1)
            assert got.signed_by(SECRET)
            payload = got.json()
            assert payload["event"] == "build_failed"
            assert payload["delivery_id"] == got.headers["x-oore-delivery"]
            assert payload["build"]["id"] == build_id
            assert payload["build"]["status"] == "failed"
            assert payload["build"]["commit_sha"] == head
            assert payload["build"]["pipeline_name"] == "fail"

            [letter] = await smtp.inbox.wait_for(1)
            assert letter["Subject"] == "[oore] app #1 failed on main"
            assert letter["To"] == "dev@example.com"
            assert f"Commit: {head}" in letter.get_content()

            detail = await client.get(f"/v1/builds/{build_id}", headers=auth)
            assert detail.json()["build"]["status"] == "failed"
