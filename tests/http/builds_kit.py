"""Shared pieces of the build tests: a local repository, a project with a pipeline, runners."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.http.conftest import Api


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = (tmp_path / "app").resolve()
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "README").write_text("hello\n")
    git(path, "add", "README")
    git(path, "commit", "-q", "-m", "first")
    return path


@dataclass
class Setup:
    api: Api
    token: str
    project_id: str
    pipeline_id: str
    head: str

    async def trigger(self, **body: Any) -> dict[str, Any]:
        reply = await self.api.post(
            f"/v1/projects/{self.project_id}/builds",
            json={"pipeline_id": self.pipeline_id, **body},
            token=self.token,
        )
        assert reply.status == 201, reply.body
        build: dict[str, Any] = reply.body["build"]
        return build

    async def runner(self, name: str = "r", **extra: Any) -> Runner:
        reply = await self.api.post(
            "/v1/runners/register", json={"name": name, **extra}, token=self.token
        )
        assert reply.status == 200, reply.body
        return Runner(self.api, reply.body["runner"]["id"], reply.body["token"])

    async def build(self, build_id: str) -> dict[str, Any]:
        reply = await self.api.get(f"/v1/builds/{build_id}", token=self.token)
        assert reply.status == 200, reply.body
        return reply.body  # type: ignore[no-any-return]


async def eventually(setup: Setup, build_id: str, status: str, within: float = 10) -> None:
    """Wait (bounded) until the build reaches ``status``; leases expire on their own clock."""
    with trio.fail_after(within):
        while (await setup.build(build_id))["build"]["status"] != status:  # noqa: ASYNC110
            await trio.sleep(0.05)


@dataclass
class Runner:
    api: Api
    id: str
    token: str

    async def claim(self, wait: float = 0) -> dict[str, Any] | None:
        reply = await self.api.post(
            f"/v1/runners/{self.id}/claim",
            json={"protocol_version": 4, "wait_seconds": wait},
            token=self.token,
        )
        assert reply.status == 200, reply.body
        job: dict[str, Any] | None = reply.body.get("job")
        return job

    async def report(self, build_id: str, status: str, **extra: Any) -> Any:
        return await self.api.post(
            f"/v1/runners/{self.id}/jobs/{build_id}/status",
            json={"status": status, **extra},
            token=self.token,
        )

    async def job(self, build_id: str, wait: int = 0) -> Any:
        return await self.api.get(
            f"/v1/runners/{self.id}/jobs/{build_id}?wait_seconds={wait}", token=self.token
        )

    async def logs(self, build_id: str, chunks: list[dict[str, Any]]) -> Any:
        return await self.api.post(
            f"/v1/runners/{self.id}/jobs/{build_id}/logs",
            json={"chunks": chunks},
            token=self.token,
        )


async def make_setup(
    api: Api, token: str, repo: Path, *, runner_labels: list[str] | None = None, **pipeline: Any
) -> Setup:
    project = await api.post(
        "/v1/projects",
        json={"name": "app", "local_repository_path": str(repo)},
        token=token,
    )
    assert project.status == 201, project.body
    project_id = project.body["project"]["id"]
    body: dict[str, Any] = {
        "name": "ci",
        "execution_config": {"platforms": ["android", "ios"], "commands": {"build": ["true"]}},
        **pipeline,
    }
    if runner_labels is not None:
        body["runner_labels"] = runner_labels
    created = await api.post(f"/v1/projects/{project_id}/pipelines", json=body, token=token)
    assert created.status == 201, created.body
    return Setup(
        api, token, project_id, created.body["pipeline"]["id"], git(repo, "rev-parse", "HEAD")
    )


@pytest.fixture
async def setup(api: Api, owner_token: str, repo: Path) -> Setup:
    return await make_setup(api, owner_token, repo)
