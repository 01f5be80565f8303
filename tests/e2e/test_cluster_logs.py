"""Live logs across two real ``oored`` processes on one PostgreSQL: a real runner appends
through daemon A while a viewer follows the build's log stream through daemon B."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import DaemonFactory
from tests.e2e.test_cluster import sse_events, start_cluster
from tests.e2e.test_runner_agent import (
    Api,
    committed_repo,
    pipeline_file,
    runners,  # noqa: F401
    wait_until,
)

LINES = 120


@pytest.mark.timeout(300)
def test_a_viewer_on_one_daemon_follows_a_runner_on_another(
    make_daemon: DaemonFactory,
    runners: Callable[..., subprocess.Popen[bytes]],  # noqa: F811
    database_url: str,
    tmp_path: Path,
) -> None:
    repo = committed_repo(
        tmp_path / "repo",
        {
            "ci/slow.yaml": pipeline_file(
                f'for i in $(seq 1 {LINES}); do echo "line $i"; sleep 0.05; done'
            )
        },
    )
    a, b = start_cluster(make_daemon, tmp_path / "cluster", database_url, count=2)
    with a.client() as on_a, b.client() as on_b:
        api_a = Api.local_owner(on_a)
        api_b = Api(on_b, api_a.token)
        project = api_a.project("app", repo)
        pipeline = api_a.pipeline(
            project["id"], name="slow", config_path="ci/slow.yaml", config_path_explicit=True
        )
        runners(a.url, api_a.token, "on-a", "linux")
        wait_until("the runner to register", lambda: api_b.call("GET", "/v1/runners")["total"])
        build_id = api_a.trigger(project["id"], pipeline["id"])["id"]

        events: list[tuple[str, str, str | None]] = []
        running_when_seen: list[str] = []
        url = f"{b.url}/v1/builds/{build_id}/logs/stream"
        with (
            httpx.Client(timeout=120) as viewer,
            viewer.stream("GET", url, headers=api_a.auth) as reply,
        ):
            assert reply.status_code == 200
            for fields in sse_events(reply.iter_text()):
                events.append((fields["event"], fields.get("data", ""), fields.get("id")))
                if fields["event"] == "log" and '"line 10"' in fields["data"]:
                    # Lines reach B while the runner still works through A.
                    running_when_seen.append(api_b.build(build_id)["build"]["status"])

        stored = api_b.logs(build_id)
        assert api_a.build(build_id)["build"]["status"] == "succeeded"

    logs = [json.loads(data) for name, data, _ in events if name == "log"]
    assert [line["sequence"] for line in logs] == [line["sequence"] for line in stored]
    assert [line["content"] for line in logs if line["content"].startswith("line ")] == [
        f"line {i}" for i in range(1, LINES + 1)
    ]
    assert events[-1][:2] == ("done", "build_finished")
    assert running_when_seen == ["running"]
    for daemon in (a, b):
        assert daemon.stop() == 0, daemon.text()
