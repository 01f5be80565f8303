"""The real ``oored`` as a browser meets it: the UI at ``/``, the session cookie, live lists."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx

from oore.http.ui import UI_POLICY, package_bundle
from tests.e2e.conftest import DaemonFactory


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@e", "-c", "user.name=t", *args],
        check=True,
        capture_output=True,
    )


def read_events(client: httpx.Client, found: list[tuple[str, Any]], stop: threading.Event) -> None:
    """Collect ``(event, data)`` from the events stream until ``stop`` or the stream ends."""
    with client.stream("GET", "/v1/events/stream", timeout=30) as reply:
        assert reply.status_code == 200, reply.read()
        name = ""
        for line in reply.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
                found.append((name, json.loads(data) if data.startswith("{") else data))
            if stop.is_set():
                return


def test_the_browser_way_in(make_daemon: DaemonFactory, tmp_path: Path) -> None:
    daemon = make_daemon()
    daemon.env["OORED_ACCESS_LOG"] = "1"  # every request logged: none may show the session
    daemon.start()
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README").write_text("hi\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    origin = {"Origin": daemon.url}
    with daemon.client() as browser:
        page = browser.get("/")
        if (Path(str(package_bundle())) / "index.html").is_file():
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert page.headers["content-security-policy"] == UI_POLICY
            assert browser.get("/builds/1").text == page.text
        else:
            assert (page.status_code, page.json()["code"]) == (503, "ui_not_built")
        signed = browser.post(
            "/v1/auth/local/login", json={}, headers={"X-Oore-Session": "cookie", **origin}
        )
        assert signed.status_code == 200 and "session_token" not in signed.json()
        session = browser.cookies["oore_session"]
        assert browser.get("/v1/users/me").json()["user"]["role"] == "owner"
        project = browser.post(
            "/v1/projects",
            json={"name": "app", "local_repository_path": str(repo)},
            headers=origin,
        )
        assert project.status_code == 201, project.text
        project_id = project.json()["project"]["id"]
        forged = browser.post(f"/v1/projects/{project_id}/pipelines", json={"name": "x"})
        assert (forged.status_code, forged.json()["code"]) == (403, "origin_not_allowed")
        pipeline = browser.post(
            f"/v1/projects/{project_id}/pipelines",
            json={"name": "ci", "execution_config": {"platforms": ["android"], "commands": {}}},
            headers=origin,
        )
        assert pipeline.status_code == 201, pipeline.text
        trigger = f"/v1/projects/{project_id}/builds"
        body = {"pipeline_id": pipeline.json()["pipeline"]["id"]}
        found: list[tuple[str, Any]] = []
        stop = threading.Event()
        with httpx.Client(base_url=daemon.url, cookies=browser.cookies) as watcher:
            reader = threading.Thread(target=read_events, args=(watcher, found, stop))
            reader.start()
            try:
                for _ in range(200):
                    if found:
                        break
                    reader.join(timeout=0.05)
                build = browser.post(trigger, json=body, headers=origin)
                assert build.status_code == 201, build.text
                build_id = build.json()["build"]["id"]
                for _ in range(200):
                    if any(n == "build" and d["build"]["id"] == build_id for n, d in found):
                        break
                    reader.join(timeout=0.05)
            finally:
                stop.set()
                browser.post(trigger, json=body, headers=origin)  # one more line to read
                reader.join(timeout=20)
        assert found[0] == ("ready", {})
        queued = [d["build"] for n, d in found if n == "build" and d["build"]["id"] == build_id]
        assert queued and queued[0]["status"] == "queued", found
        assert queued[0]["context"]["project_name"] == "app"
    assert not reader.is_alive()
    assert daemon.stop() == 0
    assert "/v1/events/stream" in daemon.text()  # the access log is on
    assert session not in daemon.text() and "oore_session=" not in daemon.text()
