"""Two real ``oored`` processes on one PostgreSQL, each with its own data directory but the
same encryption key and artifact directory: the URLs and stream tokens one hands out, the
other honours, and the single-use ones only once."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from oore.datadir import ENCRYPTION_KEY_FILE
from tests.e2e.conftest import Daemon, DaemonFactory
from tests.e2e.test_runner_agent import Api, committed_repo, pipeline_file


def _daemon(make_daemon: DaemonFactory, data_dir: Path, key: bytes, database_url: str) -> Daemon:
    data_dir.mkdir(mode=0o700)
    (data_dir / ENCRYPTION_KEY_FILE).write_bytes(key)
    os.chmod(data_dir / ENCRYPTION_KEY_FILE, 0o600)
    daemon = make_daemon(data_dir)
    daemon.env = {**daemon.env, "OORED_DATABASE_URL": database_url}
    return daemon.start()


def _on(daemon: Daemon, url: str) -> str:
    """The same path and token, on another daemon."""
    return daemon.url + urlsplit(url).path


def test_what_one_daemon_hands_out_the_other_honours(
    make_daemon: DaemonFactory, database_url: str, tmp_path: Path
) -> None:
    key = os.urandom(32)
    repo = committed_repo(tmp_path / "repo", {".oore.yaml": pipeline_file("true")})
    shared = tmp_path / "shared-artifacts"
    a = _daemon(make_daemon, tmp_path / "a", key, database_url)
    with a.client() as client_a:
        api_a = Api.local_owner(client_a)
        api_a.call(
            "PUT",
            "/v1/settings/artifact-storage",
            {"provider": "local", "local_base_dir": str(shared)},
        )
        b = _daemon(make_daemon, tmp_path / "b", key, database_url)  # reads the settings
        with b.client() as client_b, httpx.Client(timeout=10.0) as plain:
            api_b = Api(client_b, api_a.token)  # the session is in the database
            project = api_a.project("app", repo)
            pipeline = api_a.pipeline(project["id"], name="ci")
            build = api_a.trigger(project["id"], pipeline["id"])
            registered = api_a.call("POST", "/v1/runners/register", {"name": "r"})
            runner = Api(client_a, registered["token"])
            jobs = f"/v1/runners/{registered['runner']['id']}/jobs/{build['id']}"
            claimed = runner.call(
                "POST",
                f"/v1/runners/{registered['runner']['id']}/claim",
                {"protocol_version": 4, "wait_seconds": 5},
            )
            assert claimed["job"]["build_id"] == build["id"]
            runner.call("POST", f"{jobs}/status", {"status": "running"})

            reserved = runner.call(
                "POST", f"{jobs}/artifacts", {"name": "app.txt", "artifact_type": "generic"}
            )
            upload_url = reserved["upload_url"]
            assert upload_url.startswith(a.url)
            assert plain.put(_on(b, upload_url), content=b"payload").status_code == 200
            again = plain.put(upload_url, content=b"again")
            assert (again.status_code, again.json()["code"]) == (401, "invalid_upload_token")
            artifact_id = reserved["artifact"]["id"]
            runner.call("POST", f"{jobs}/artifacts/{artifact_id}/complete", {})
            runner.call("POST", f"{jobs}/status", {"status": "succeeded", "exit_code": 0})

            link = api_b.call("POST", f"/v1/artifacts/{artifact_id}/download-link")
            assert link["download_url"].startswith(b.url)
            for url in (_on(a, link["download_url"]), link["download_url"]):
                fetched = plain.get(url)
                assert (fetched.status_code, fetched.content) == (200, b"payload")

            minted = api_b.call("POST", f"/v1/builds/{build['id']}/stream-token")
            stream = f"/v1/builds/{build['id']}/logs/stream?token={minted['token']}"
            first = plain.get(a.url + stream)
            assert first.status_code == 200 and "event: done" in first.text
            for daemon in (b, a):
                replay = plain.get(daemon.url + stream)
                assert (replay.status_code, replay.json()["code"]) == (
                    401,
                    "invalid_stream_token",
                )
        assert b.stop() == 0
    assert a.stop() == 0
