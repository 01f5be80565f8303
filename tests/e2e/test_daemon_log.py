"""What a real ``oored`` prints: events with request ids, a quiet start, never a credential."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import Daemon, DaemonFactory

# What pgserver says while it sets a cluster up and starts it.
PGSERVER_CHATTER = ("Running commandline", "checking if ready", "initdb", "PG_VERSION", "pgserver ")
BANNER = re.compile(r"oored listening on http://\S+ \(data directory .*\)")


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README").write_text("hello\n")
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", "first")
    return repo


def ok(reply: httpx.Response) -> Any:
    assert reply.status_code < 300, f"{reply.request.url.path}: {reply.text}"
    return reply.json()


def events(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if f"Z INFO {name} " in line or f" {name} " in line]


def test_the_embedded_postgres_starts_quietly_and_says_where_its_log_went(
    make_daemon: DaemonFactory,
) -> None:
    daemon = make_daemon()
    daemon.cluster = None  # a first start: initdb runs
    daemon.start()
    with daemon.client() as client:
        assert client.get("/healthz").status_code == 200
    assert daemon.stop() == 0
    text = daemon.text()
    for chatter in PGSERVER_CHATTER:
        assert chatter not in text, text
    pgserver_log = daemon.data_dir / "pgserver.log"
    (started,) = events(text, "postgres.started")
    assert f"pgserver_log={pgserver_log}" in started, started
    assert f"server_log={daemon.data_dir / 'pg' / 'log'}" in started, started
    kept = pgserver_log.read_text()
    assert "initdb" in kept and "Running commandline" in kept
    # Started again, the cluster exists: still nothing from pgserver on the console.
    daemon.start()
    assert daemon.stop() == 0
    assert not any(chatter in daemon.text() for chatter in PGSERVER_CHATTER), daemon.text()


def test_json_log_lines_are_one_object_each(make_daemon: DaemonFactory) -> None:
    daemon = make_daemon()
    daemon.env["OORED_LOG_FORMAT"] = "json"
    daemon.env["OORED_ACCESS_LOG"] = "1"
    daemon.start()
    with daemon.client() as client:
        missing = client.get("/v1/nothing?x=1", headers={"X-Request-Id": "probe-1"})
        assert missing.json()["request_id"] == "probe-1"
    assert daemon.stop() == 0
    parsed: list[dict[str, Any]] = []
    for line in daemon.text().splitlines():
        if BANNER.fullmatch(line):
            continue
        parsed.append(json.loads(line))
    assert all({"time", "level"} <= set(entry) for entry in parsed)
    (access,) = [entry for entry in parsed if entry.get("event") == "http.request"]
    assert access == {
        "time": access["time"],
        "level": "INFO",
        "event": "http.request",
        "method": "GET",
        "path": "/v1/nothing",
        "status": 404,
        "duration_s": access["duration_s"],
        "request_id": "probe-1",
    }
    assert any(entry.get("event") == "postgres.started" for entry in parsed)
    assert not any(str(entry.get("logger", "")).startswith("hypercorn.access") for entry in parsed)


def test_no_credential_reaches_the_daemon_output(
    make_daemon: DaemonFactory, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    daemon = make_daemon()
    daemon.env["OORED_ACCESS_LOG"] = "1"
    daemon.start()
    secrets: dict[str, str] = {}
    with daemon.client() as client:
        secrets["session"] = client.post("/v1/auth/local/login", json={}).json()["session_token"]
        owner = {"Authorization": f"Bearer {secrets['session']}"}
        api_token = ok(
            client.post("/v1/api-tokens", json={"name": "ci", "role": "admin"}, headers=owner)
        )
        secrets["api_token"] = api_token["token"]
        enrollment = client.post(
            "/v1/runner-enrollment-tokens", json={"label": "fleet"}, headers=owner
        )
        secrets["enrollment"] = enrollment.json()["token"]
        registered = client.post(
            "/v1/runners/register",
            json={"name": "linux-1"},
            headers={"Authorization": f"Bearer {secrets['enrollment']}"},
        )
        assert registered.status_code == 200, registered.text
        runner_id = registered.json()["runner"]["id"]
        secrets["runner"] = registered.json()["token"]
        as_runner = {"Authorization": f"Bearer {secrets['runner']}"}

        project = ok(
            client.post(
                "/v1/projects",
                json={"name": "app", "local_repository_path": str(repo)},
                headers=owner,
            )
        )["project"]
        pipeline = ok(
            client.post(
                f"/v1/projects/{project['id']}/pipelines",
                json={
                    "name": "ci",
                    "execution_config": {"platforms": ["android"], "commands": {"build": ["true"]}},
                },
                headers=owner,
            )
        )["pipeline"]
        build = ok(
            client.post(
                f"/v1/projects/{project['id']}/builds",
                json={"pipeline_id": pipeline["id"]},
                headers=owner,
            )
        )["build"]
        ok(client.get("/v1/builds", headers={"Authorization": f"Bearer {secrets['api_token']}"}))
        job = ok(
            client.post(
                f"/v1/runners/{runner_id}/claim",
                json={"protocol_version": 4, "wait_seconds": 0},
                headers=as_runner,
            )
        )["job"]
        secrets["signing"] = job["signing_token"]
        jobs = f"/v1/runners/{runner_id}/jobs/{build['id']}"
        for status in ("running", "succeeded"):
            reported = client.post(f"{jobs}/status", json={"status": status}, headers=as_runner)
            assert reported.status_code == 200, reported.text
        final_report = reported.headers["X-Request-Id"]

        minted = client.post(f"/v1/builds/{build['id']}/stream-token", headers=owner)
        secrets["stream"] = minted.json()["token"]
        stream = client.get(f"/v1/builds/{build['id']}/logs/stream?token={secrets['stream']}")
        assert stream.status_code == 200, stream.text

        # Failed attempts, each carrying something that looks like a credential.
        secrets["wrong_bearer"] = "ab" * 32
        wrong = {"Authorization": f"Bearer {secrets['wrong_bearer']}"}
        assert client.get("/v1/users/me", headers=wrong).status_code == 401
        assert (
            client.post("/v1/runners/register", json={"name": "x"}, headers=wrong).status_code
            == 401
        )
        secrets["wrong_query"] = "cd" * 32
        refused = client.get(f"/v1/builds/{build['id']}/logs/stream?token={secrets['wrong_query']}")
        assert refused.status_code == 401
        failed = client.post(
            "/v1/auth/local/login",
            json={"email": "nobody@example.com", "recovery_capability": "ef" * 32},
        )
        secrets["recovery"] = "ef" * 32
        assert failed.status_code == 403
        assert failed.json()["request_id"] == failed.headers["X-Request-Id"]
    assert daemon.stop() == 0
    text = daemon.text()
    for name, value in secrets.items():
        assert value not in text, f"the {name} credential is in the daemon's output:\n{text}"
    assert "token=" not in text

    # What was logged instead: the events, and one access line per request.
    assert len(events(text, "auth.signed_in")) == 1
    assert len(events(text, "auth.signin_failed")) == 1
    assert len(events(text, "runner.registered")) == 1
    for name in ("build.queued", "build.claimed", "build.finished"):
        (line,) = events(text, name)
        assert f"build_id={build['id']} project=app number=1" in line, line
    finished = events(text, "build.finished")[0]
    assert "status=succeeded" in finished
    # The build ends inside the runner's final report, so its line names that request
    # (and not the claim's or another's).
    assert f"request_id={final_report}" in finished
    streamed = [line for line in events(text, "http.request") if "/logs/stream" in line]
    assert [re.search(r"status=(\d+)", line)[1] for line in streamed] == ["200", "401"]  # type: ignore[index]
    assert all(f"path=/v1/builds/{build['id']}/logs/stream " in line for line in streamed)


def test_a_malformed_request_is_answered_with_a_request_id(make_daemon: DaemonFactory) -> None:
    daemon: Daemon = make_daemon().start()
    host, port = httpx.URL(daemon.url).host, httpx.URL(daemon.url).port
    with socket.create_connection((host, port or 80), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/auth/local/login HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    sent = re.search(rb"x-request-id: (\S+)", head, re.IGNORECASE)
    assert sent is not None
    assert json.loads(body)["request_id"] == sent[1].decode()
    assert daemon.stop() == 0
