"""A small in-process stand-in for the runner side of ``oored``, behind httpx.MockTransport.

It keeps what a runner sent (registrations, heartbeats, reports, log lines, artifacts and
their bytes) and answers like the contract says: claims and job-state calls long-poll, a
build taken back answers 403 ``runner_mismatch``, a rejected token 401. The real server is
tested end to end elsewhere; this one makes the agent's behaviour observable in a unit test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import trio

RUNNER_ID = "runner-1"
TOKEN = "f" * 64
UPLOAD_PATH = "/v1/artifacts/local-upload/"


def job(repo: Path, sha: str, number: int = 1, **snapshot: Any) -> dict[str, Any]:
    """A claim answer's ``job`` for a build of the local repository ``repo``."""
    config_snapshot: dict[str, Any] = {
        "snapshot_version": 2,
        "config_resolution_policy": "file_first_ui_fallback",
        "config_path": None,
        "config_path_explicit": False,
        "ui_execution_config": {"platforms": ["android"], "commands": {"build": ["echo ui"]}},
        "commit_sha": sha,
        "branch": "main",
        "repo_url": str(repo),
    }
    config_snapshot.update(snapshot)
    return {
        "build_id": f"build-{number}",
        "project_id": "project-1",
        "pipeline_id": "pipeline-1",
        "build_number": number,
        "config_snapshot": config_snapshot,
        "commit_sha": sha,
        "branch": "main",
        "lease_expires_at": 0,
        "signing_token": "a" * 64,
    }


class FakeServer:
    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.registrations: list[tuple[str, dict[str, Any]]] = []
        self.heartbeats: list[str] = []
        self.reports: dict[str, list[dict[str, Any]]] = {}
        self.logs: dict[str, dict[int, dict[str, Any]]] = {}
        self.taken_back: set[str] = set()
        self.canceled_by: dict[str, str] = {}
        self.token_rejected = False
        self.unreachable_calls = 0
        self.requests: list[httpx.Request] = []
        self.artifacts: dict[str, dict[str, Any]] = {}
        self.uploaded: dict[str, bytes] = {}
        # "local": upload URLs on another host (the runner must send them to its server);
        # "disabled": no upload URL; "failing": uploads answer 500.
        self.storage = "local"
        # Log batches of these builds are refused with 400 (a server that will not take them).
        self.logs_refused: set[str] = set()
        # This many uploads are cut off midway (their token used up, nothing stored).
        self.cut_uploads = 0
        # The next artifact completion is taken, then the connection drops before the answer.
        self.lose_complete_answer = False
        # The next final report is taken, then the connection drops before the answer.
        self.lose_final_answer = False
        # Builds that ended in this runner's hands, and how.
        self.ended: dict[str, str] = {}
        # The answers to android-signing and ios-signing (None: 409 job_not_active), and
        # the signing tokens they were asked with.
        self.android_signing: dict[str, Any] | None = None
        self.ios_signing: dict[str, Any] | None = None
        self.signing_tokens: list[str | None] = []
        self._changed = trio.Event()

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    # -- what tests do ----------------------------------------------------------------------

    def add_job(self, body: dict[str, Any]) -> None:
        self.jobs.append(body)
        self._notify()

    def take_back(self, build_id: str) -> None:
        self.taken_back.add(build_id)
        self._notify()

    def cancel(self, build_id: str, by: str) -> None:
        """A user cancels the build: the runner hears how it ended, as the server says it."""
        self.canceled_by[build_id] = by
        self.take_back(build_id)

    def _not_yours(self, build_id: str) -> httpx.Response:
        if build_id in self.ended:
            status = self.ended[build_id]
            return _error(403, "runner_mismatch", f"The build {status}", details=status)
        by = self.canceled_by.get(build_id)
        if by is not None:
            return _error(
                403, "runner_mismatch", f"The build was canceled by {by}", details="canceled"
            )
        return _error(403, "runner_mismatch", "This build is not assigned to this runner")

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait (at most 20 s) until ``condition()`` holds after some call or test action."""
        with trio.fail_after(20):
            await self._wait(condition)

    async def _wait(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self._changed.wait()

    def statuses(self, build_id: str) -> list[str]:
        return [report["status"] for report in self.reports.get(build_id, [])]

    def log_lines(self, build_id: str) -> list[tuple[str, str]]:
        lines = self.logs.get(build_id, {})
        assert sorted(lines) == list(range(len(lines))), "sequences run from 0 without gaps"
        return [(lines[i]["stream"], lines[i]["content"]) for i in sorted(lines)]

    # -- the protocol -----------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.unreachable_calls > 0:
            self.unreachable_calls -= 1
            raise httpx.ConnectError("connection refused", request=request)
        try:
            return await self._route(request)
        finally:
            self._notify()

    def calls(self) -> list[str]:
        """``METHOD path`` of every request so far, in order."""
        return [f"{r.method} {r.url.path}" for r in self.requests]

    async def _route(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith(UPLOAD_PATH):
            return await self._upload(request, path.removeprefix(UPLOAD_PATH))
        body = json.loads(await request.aread() or b"null")
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if path == "/v1/runners/register":
            self.registrations.append((bearer, body))
            runner = {"id": RUNNER_ID, "name": body["name"], "status": "offline"}
            return httpx.Response(200, json={"runner": runner, "token": TOKEN})
        if self.token_rejected or bearer != TOKEN:
            return _error(401, "invalid_token", "Runner token is not valid")
        artifact = re.fullmatch(
            rf"/v1/runners/{RUNNER_ID}/jobs/([\w-]+)/artifacts(?:/([\w-]+)/(complete|abort))?", path
        )
        if artifact is not None:
            build, artifact_id, verb = artifact.groups()
            return self._artifact(build, artifact_id, verb, body)
        signing = re.fullmatch(rf"/v1/runners/{RUNNER_ID}/jobs/[\w-]+/(android|ios)-signing", path)
        if signing is not None:
            self.signing_tokens.append(request.headers.get("X-Oore-Signing-Token"))
            answer = self.android_signing if signing.group(1) == "android" else self.ios_signing
            if answer is None:
                return _error(409, "job_not_active", "The build is not assigned or running")
            return httpx.Response(200, json=answer)
        match = re.fullmatch(rf"/v1/runners/{RUNNER_ID}/(\w+)(?:/([\w-]+)(?:/(\w+))?)?", path)
        assert match is not None, path
        action, build_id, sub = match.groups()
        if action == "heartbeat":
            self.heartbeats.append(body["status"])
            return httpx.Response(204)
        if action == "claim":
            assert body["protocol_version"] == 4
            with trio.move_on_after(body["wait_seconds"]):
                await self._wait(lambda: bool(self.jobs))
            return httpx.Response(200, json={"job": self.jobs.pop(0)} if self.jobs else {})
        assert action == "jobs" and build_id is not None
        if build_id in self.taken_back or build_id in self.ended:
            return self._not_yours(build_id)
        if sub is None:
            with trio.move_on_after(int(request.url.params["wait_seconds"])):
                await self._wait(lambda: build_id in self.taken_back)
            if build_id in self.taken_back:
                return self._not_yours(build_id)
            return httpx.Response(200, json={"status": "running"})
        if sub == "status":
            self.reports.setdefault(build_id, []).append(body)
            if self.lose_final_answer and body["status"] != "running":
                self.lose_final_answer = False
                self.ended[build_id] = body["status"]
                raise httpx.ReadError("connection reset by peer", request=request)
            return httpx.Response(200, json={"build": {"id": build_id}, "events": []})
        assert sub == "logs"
        if build_id in self.logs_refused:
            return _error(400, "invalid_input", "These lines are not wanted")
        known = self.logs.setdefault(build_id, {})
        new = [chunk for chunk in body["chunks"] if chunk["sequence"] not in known]
        known.update((chunk["sequence"], chunk) for chunk in new)
        return httpx.Response(200, json={"appended": len(new)})

    async def _upload(self, request: httpx.Request, artifact_id: str) -> httpx.Response:
        assert request.headers["Host"] == "oore.test", "local uploads go to the runner's server"
        assert "Authorization" not in request.headers, "the URL is the credential"
        data = await request.aread()
        assert int(request.headers["Content-Length"]) == len(data)
        if self.storage == "failing":
            return _error(500, "storage_error", "disk on fire")
        if artifact_id in self.uploaded or artifact_id not in self.artifacts:
            return _error(401, "invalid_upload_token", "The upload token is unknown or used")
        if self.cut_uploads > 0:
            self.cut_uploads -= 1
            self.uploaded[artifact_id] = b""  # the token is used up, the bytes are lost
            raise httpx.ReadError("connection reset by peer", request=request)
        self.uploaded[artifact_id] = data
        return httpx.Response(200)

    def _artifact(
        self, build_id: str, artifact_id: str | None, action: str | None, body: Any
    ) -> httpx.Response:
        if build_id in self.taken_back:
            return self._not_yours(build_id)
        if artifact_id is None:
            for twin in self.artifacts.values():
                if twin["checksum"] == body["checksum"] and twin["state"] == "available":
                    return httpx.Response(200, json={"artifact": twin, "upload_url": ""})
            created = {
                **body,
                "id": f"artifact-{len(self.artifacts) + 1}",
                "build_id": build_id,
                "state": "pending",
            }
            self.artifacts[created["id"]] = created
            url = f"http://127.0.0.1:8787{UPLOAD_PATH}{created['id']}"
            if self.storage == "disabled":
                url = ""
            return httpx.Response(200, json={"artifact": created, "upload_url": url})
        known = self.artifacts.get(artifact_id)
        if known is None or known["state"] != "pending":
            return _error(409, "artifact_not_pending", "The artifact is not pending")
        known["state"] = "available" if action == "complete" else "failed"
        if action == "abort":
            known["error_message"] = body.get("error_message")
        elif self.lose_complete_answer:
            self.lose_complete_answer = False
            raise httpx.ReadError("connection reset by peer")
        return httpx.Response(200, json={"artifact": known})


def _error(status: int, code: str, message: str, details: str | None = None) -> httpx.Response:
    body = {"error": message, "code": code}
    if details is not None:
        body["details"] = details
    return httpx.Response(status, json=body)
