"""End to end: a signed GitHub push to the real ``oored`` builds on a real ``oore runner``.

The daemon runs in remote mode behind a trusted proxy (loopback). Its GitHub integration's
repository lives on a ``file://`` host holding a bare git repository, so the snapshot's
``repo_url`` (``<host_url>/<full_name>.git``) is clonable by the runner.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from oore.datadir import ENCRYPTION_KEY_FILE
from oore.domain.crypto import SecretBox
from oore.store import Store
from tests.e2e.conftest import Daemon, DaemonFactory
from tests.http.builds_kit import git
from tests.webhook_kit import encoded, github_headers, github_push, github_source, pipeline_body

PROXY_SECRET = "proxy-shared-secret"
OWNER = "owner@example.com"
WAIT = 60.0
CLI = (sys.executable, "-m", "oore.cli")
FINISHED = ("succeeded", "failed", "canceled", "timed_out", "expired")


def _hosted_repository(root: Path) -> tuple[Path, str]:
    """A bare ``acme/app.git`` under ``root/host`` with one commit; the host dir and the sha."""
    work = root / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "README").write_text("built by a webhook\n")
    git(work, "add", "README")
    git(work, "commit", "-q", "-m", "first")
    host = root / "host"
    bare = host / "acme" / "app.git"
    bare.parent.mkdir(parents=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return host, git(work, "rev-parse", "HEAD")


def _mint_bootstrap_token(daemon: Daemon) -> str:
    done = subprocess.run(
        [*CLI, "--data-dir", str(daemon.data_dir), "setup", "bootstrap-token"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=daemon.env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _ok(reply: httpx.Response, status: int = 200) -> Any:
    assert reply.status_code == status, reply.text
    return reply.json()


def _proxy(email: str | None = OWNER) -> dict[str, str]:
    headers = {"X-Oore-Trusted-Proxy-Secret": PROXY_SECRET}
    if email is not None:
        headers["X-Oore-User-Email"] = email
    return headers


@pytest.fixture
def runner_procs(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _runner_args(tmp_path: Path) -> list[str]:
    return ["--name", "hooked", "--work-dir", str(tmp_path / "runner-work")]


def _start_runner(
    tmp_path: Path, server: str, token: str, started: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OORED_", "OORE_"))}
    with (tmp_path / "runner.log").open("wb") as out:
        proc = subprocess.Popen(
            [*CLI, "runner", "--server", server, *_runner_args(tmp_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env, PYTHONUNBUFFERED="1", OORE_RUNNER_TOKEN=token),
        )
    started.append(proc)
    return proc


async def _remote_setup(client: httpx.AsyncClient, daemon: Daemon) -> str:
    """Bootstrap → remote + trusted proxy → owner → complete; the owner's session token."""
    bootstrap = await trio.to_thread.run_sync(_mint_bootstrap_token, daemon)
    verified = _ok(await client.post("/v1/setup/bootstrap-token/verify", json={"token": bootstrap}))
    setup = {"Authorization": f"Bearer {verified['session_token']}"}
    prefs = {"runtime_mode": "remote", "remote_auth_mode": "trusted_proxy"}
    _ok(await client.post("/v1/setup/preferences", json=prefs, headers=setup))
    proxy = {"trusted_proxy_cidrs": ["127.0.0.1/32"], "shared_secret": PROXY_SECRET}
    _ok(await client.post("/v1/setup/trusted-proxy/configure", json=proxy, headers=setup))
    claim = "/v1/setup/owner/claim-trusted-proxy"
    _ok(await client.post(claim, headers={**setup, **_proxy()}))
    _ok(await client.post("/v1/setup/complete", headers=setup))
    signed_in = _ok(await client.post("/v1/auth/trusted-proxy/login", headers=_proxy()))
    token: str = signed_in["session_token"]
    return token


async def test_a_signed_push_builds_on_a_real_runner_once(
    make_daemon: DaemonFactory,
    database_url: str,
    store: Store,
    runner_procs: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    host, head = _hosted_repository(tmp_path)
    daemon = make_daemon()
    daemon.data_dir.mkdir(parents=True)
    key = os.urandom(32)
    (daemon.data_dir / ENCRYPTION_KEY_FILE).write_bytes(key)
    os.chmod(daemon.data_dir / ENCRYPTION_KEY_FILE, 0o600)
    daemon.env["OORED_DATABASE_URL"] = database_url
    await trio.to_thread.run_sync(daemon.start)
    async with httpx.AsyncClient(base_url=daemon.url, timeout=10.0) as client:
        token = await _remote_setup(client, daemon)
        auth = {"Authorization": f"Bearer {token}", **_proxy()}
        source = await github_source(store, SecretBox(key), 1_800_000_000, host_url=host.as_uri())
        project = _ok(
            await client.post(
                "/v1/projects",
                json={"name": "app", "repository_id": source.repository_id},
                headers=auth,
            ),
            201,
        )["project"]
        body = pipeline_body(events=["push"], branches=["main"], commands=["test -f README"])
        _ok(
            await client.post(f"/v1/projects/{project['id']}/pipelines", json=body, headers=auth),
            201,
        )
        # The runner enrolls itself; it cannot present the proxy's headers as a user would.
        enrollment = _ok(
            await client.post(
                "/v1/runner-enrollment-tokens", json={"label": "webhook e2e"}, headers=auth
            ),
            201,
        )
        _start_runner(tmp_path, daemon.url, enrollment["token"], runner_procs)

        payload = encoded(github_push(after=head))
        headers = github_headers(payload, delivery=str(uuid.uuid4()))
        first = await client.post("/v1/webhooks/github", content=payload, headers=headers)
        assert _ok(first) == {"ok": True}

        async def builds() -> list[dict[str, Any]]:
            page = _ok(
                await client.get("/v1/builds", params={"project_id": project["id"]}, headers=auth)
            )
            found: list[dict[str, Any]] = page["builds"]
            return found

        found: list[dict[str, Any]] = []
        with trio.move_on_after(WAIT):
            while not found or found[0]["status"] not in FINISHED:
                found = await builds()
                await trio.sleep(0.2)
        log = (tmp_path / "runner.log").read_text(errors="replace")
        assert len(found) == 1, (found, log, daemon.text())
        [build] = found
        assert build["status"] == "succeeded", (build["status"], log[-3000:])
        assert (build["trigger_type"], build["commit_sha"], build["branch"]) == (
            "webhook",
            head,
            "main",
        )

        again = await client.post("/v1/webhooks/github", content=payload, headers=headers)
        assert _ok(again) == {"ok": True, "duplicate": True}
        assert len(await builds()) == 1
    daemon.stop()
