"""Shared pieces of the artifact tests: a running job, reservations, uploads, downloads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from werkzeug.datastructures import Headers

from tests.http.builds_kit import Runner, Setup
from tests.http.conftest import LOOPBACK, Api, Reply


@dataclass
class Job:
    """A build claimed by a runner and reported running."""

    setup: Setup
    runner: Runner
    build_id: str
    signing_token: str = ""  # the claim's, for the runner's signing routes

    @property
    def api(self) -> Api:
        return self.setup.api

    def path(self, tail: str = "") -> str:
        return f"/v1/runners/{self.runner.id}/jobs/{self.build_id}/artifacts{tail}"

    async def reserve(self, name: str = "app.apk", **body: Any) -> Reply:
        fields = {"name": name, "artifact_type": "generic", **body}
        return await self.api.post(self.path(), json=fields, token=self.runner.token)

    async def finish(self, artifact_id: str, action: str, **body: Any) -> Reply:
        return await self.api.post(
            self.path(f"/{artifact_id}/{action}"), json=body, token=self.runner.token
        )

    async def publish(self, name: str, data: bytes, **body: Any) -> dict[str, Any]:
        """Reserve, upload and complete one artifact; the available artifact."""
        reserved = await self.reserve(name, **body)
        assert reserved.status == 200, reserved.body
        stored = await upload(self.api, reserved.body["upload_url"], data)
        assert stored.status == 200, stored.body
        done = await self.finish(reserved.body["artifact"]["id"], "complete")
        assert done.status == 200, done.body
        artifact: dict[str, Any] = done.body["artifact"]
        return artifact

    async def link(self, artifact_id: str, token: str | None = None) -> Reply:
        return await self.api.post(
            f"/v1/artifacts/{artifact_id}/download-link", token=token or self.setup.token
        )


async def running_job(setup: Setup, name: str = "r") -> Job:
    build = await setup.trigger()
    runner = await setup.runner(name)
    job = await runner.claim()
    assert job is not None and job["build_id"] == build["id"]
    running = await runner.report(build["id"], "running")
    assert running.status == 200, running.body
    return Job(setup, runner, build["id"], job["signing_token"])


def local_path(url: str) -> str:
    """The path of a URL the server handed out (the tests talk to the app in-process)."""
    return urlsplit(url).path


async def upload(api: Api, url: str, data: bytes) -> Reply:
    return await api.call("PUT", local_path(url), data=data)


@dataclass
class Download:
    status: int
    body: bytes
    headers: Headers


async def download(api: Api, url: str, headers: Mapping[str, str] | None = None) -> Download:
    """GET a download URL and keep the body as bytes."""
    options: dict[str, Any] = {"scope_base": {"client": LOOPBACK}}
    response = await api.client.open(
        local_path(url), method="GET", headers=dict(headers or {}), **options
    )
    return Download(response.status_code, await response.get_data(as_text=False), response.headers)
