"""The agent uploads the files its build made, before it reports the final status."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import trio

from oore.runner.agent import Agent
from oore.runner.artifacts import artifact_type, find_artifacts
from oore.runner.client import RunnerClient
from tests.runner.server import UPLOAD_PATH, FakeServer, job
from tests.runner.test_agent import Terminal, client, config, repo_with, server

__all__ = ["client", "server"]

MAKE_FILES = [
    "mkdir -p out/sub build/outputs",
    "printf apk-bytes > build/outputs/app-release.apk",
    "head -c 200000 /dev/zero | tr '\\0' x > out/sub/data.bin",
    "printf note > out/notes.txt",
    "printf twin > out/twin-a.bin && printf twin > out/twin-b.bin",
]


def pipeline(commands: list[str], patterns: list[str]) -> str:
    listed = "".join(f"    - {json.dumps(c)}\n" for c in commands)
    globs = "".join(f"    - {json.dumps(p)}\n" for p in patterns)
    return (
        f"version: 1\nplatforms: [android]\ncommands:\n  build:\n{listed}"
        f"artifacts:\n  patterns:\n{globs}"
    )


async def run_one(tmp_path: Path, server: FakeServer, client: RunnerClient, yaml: str) -> Terminal:
    repo, sha = repo_with(tmp_path, yaml)
    server.add_job(job(repo, sha))
    terminal = Terminal()
    agent = Agent(client, config(tmp_path), credential="enroll-me", say=terminal)
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await server.wait_until(lambda: len(server.statuses("build-1")) == 2)
        agent.stop()
    return terminal


async def test_matched_files_are_uploaded_before_the_final_report(
    tmp_path: Path, server: FakeServer, client: RunnerClient
) -> None:
    yaml = pipeline(MAKE_FILES, ["**/*.apk", "out/**/*.bin", "missing/*.zip"])
    await run_one(tmp_path, server, client, yaml)

    assert server.statuses("build-1") == ["running", "succeeded"]
    by_name = {a["name"]: a for a in server.artifacts.values()}
    assert sorted(by_name) == ["app-release.apk", "data.bin", "twin-a.bin"]
    apk, data = by_name["app-release.apk"], by_name["data.bin"]
    assert apk["artifact_type"] == "apk" and data["artifact_type"] == "generic"
    assert apk["file_size"] == 9 and data["file_size"] == 200_000
    assert apk["checksum"] == hashlib.sha256(b"apk-bytes").hexdigest()
    assert data["checksum"] == hashlib.sha256(b"x" * 200_000).hexdigest()
    assert apk["metadata"] == {"path": "build/outputs/app-release.apk"}
    assert server.uploaded[apk["id"]] == b"apk-bytes"
    assert server.uploaded[data["id"]] == b"x" * 200_000
    assert all(a["state"] == "available" for a in server.artifacts.values())
    # twin-b.bin has twin-a.bin's bytes: the server already had them, nothing was sent.
    assert len(server.uploaded) == 3
    calls = server.calls()
    final = calls.index(
        "POST /v1/runners/runner-1/jobs/build-1/status",
        calls.index("POST /v1/runners/runner-1/jobs/build-1/status") + 1,
    )
    uploads = [i for i, c in enumerate(calls) if c.startswith(f"PUT {UPLOAD_PATH}")]
    completes = [i for i, c in enumerate(calls) if c.endswith("/complete")]
    assert len(uploads) == 3 and len(completes) == 3
    assert max(uploads + completes) < final
    texts = [text for _, text in server.log_lines("build-1")]
    assert "[oore] artifact build/outputs/app-release.apk uploaded" in texts
    assert "[oore] artifact out/twin-b.bin: already uploaded" in texts


async def test_disabled_storage_aborts_the_reservation_and_the_build_succeeds(
    tmp_path: Path, server: FakeServer, client: RunnerClient
) -> None:
    server.storage = "disabled"
    await run_one(tmp_path, server, client, pipeline(MAKE_FILES, ["**/*.apk"]))
    assert server.statuses("build-1") == ["running", "succeeded"]
    [artifact] = server.artifacts.values()
    assert artifact["state"] == "failed" and server.uploaded == {}
    assert artifact["error_message"] == "the server keeps no artifacts"


async def test_a_failed_upload_is_aborted_and_fails_the_build(
    tmp_path: Path, server: FakeServer, client: RunnerClient
) -> None:
    server.storage = "failing"
    await run_one(tmp_path, server, client, pipeline(MAKE_FILES, ["**/*.apk"]))
    final = server.reports["build-1"][-1]
    assert final["status"] == "failed" and final["exit_code"] == 1
    assert final["error_message"].startswith(
        "artifact build/outputs/app-release.apk: upload failed"
    )
    [artifact] = server.artifacts.values()
    assert artifact["state"] == "failed"
    assert "disk on fire" in artifact["error_message"]


async def test_an_upload_cut_off_starts_again_from_a_new_reservation(
    tmp_path: Path, server: FakeServer, client: RunnerClient
) -> None:
    """As when the daemon dies mid-upload: the token went with it, the bytes did not land."""
    server.cut_uploads = 1
    await run_one(tmp_path, server, client, pipeline(MAKE_FILES, ["**/*.apk"]))
    assert server.statuses("build-1") == ["running", "succeeded"]
    first, second = server.artifacts.values()
    assert first["state"] == "failed" and "upload failed" in first["error_message"]
    assert second["state"] == "available" and server.uploaded[second["id"]] == b"apk-bytes"
    texts = [text for _, text in server.log_lines("build-1")]
    assert texts.count("[oore] uploading artifact build/outputs/app-release.apk (9 bytes)") == 2
    assert "[oore] artifact build/outputs/app-release.apk uploaded" in texts


async def test_a_completion_whose_answer_was_lost_is_found_done_not_uploaded_again(
    tmp_path: Path, server: FakeServer, client: RunnerClient
) -> None:
    """The completion went through; its retry hears 409 artifact_not_pending, and the
    reservation asked again answers the available artifact by its checksum."""
    server.lose_complete_answer = True
    await run_one(tmp_path, server, client, pipeline(MAKE_FILES, ["**/*.apk"]))
    assert server.statuses("build-1") == ["running", "succeeded"]
    [artifact] = server.artifacts.values()
    assert artifact["state"] == "available" and server.uploaded[artifact["id"]] == b"apk-bytes"
    calls = server.calls()
    assert sum(1 for c in calls if c.startswith(f"PUT {UPLOAD_PATH}")) == 1
    assert sum(1 for c in calls if c.endswith("/complete")) == 2
    texts = [text for _, text in server.log_lines("build-1")]
    assert "[oore] artifact build/outputs/app-release.apk: already uploaded" in texts


async def test_a_failed_build_uploads_nothing_and_no_match_is_fine(
    tmp_path: Path, server: FakeServer, client: RunnerClient
) -> None:
    await run_one(tmp_path, server, client, pipeline([*MAKE_FILES, "exit 3"], ["**/*.apk"]))
    assert server.reports["build-1"][-1]["status"] == "failed"
    assert server.artifacts == {}
    server.reports.clear()
    server.logs.clear()
    (tmp_path / "repo").rename(tmp_path / "old-repo")
    await run_one(tmp_path, server, client, pipeline(["true"], ["dist/*.zip"]))
    assert server.reports["build-1"][-1]["status"] == "succeeded"
    assert server.artifacts == {}
    texts = [text for _, text in server.log_lines("build-1")]
    assert "[oore] no artifacts matched dist/*.zip" in texts


def test_finding_artifacts(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.apk").write_text("git internals")
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "one.apk").write_text("1")
    (tmp_path / "two.apk").write_text("22")
    (tmp_path / "dir.apk").mkdir()  # a directory, not a file
    outside = tmp_path.parent / f"{tmp_path.name}-outside.apk"
    outside.write_text("secret")
    (tmp_path / "link.apk").symlink_to(outside)
    (tmp_path / "inner.apk").symlink_to(tmp_path / "two.apk")
    found = find_artifacts(tmp_path, ["*.apk"])
    assert [(f.relative, f.size) for f in found] == [
        ("inner.apk", 2),
        ("two.apk", 2),
        ("a/b/one.apk", 1),
    ]
    assert find_artifacts(tmp_path, []) == []
    assert [artifact_type(n) for n in ("A.APK", "x.ipa", "y.app", "z.aab")] == [
        "apk",
        "ipa",
        "app",
        "generic",
    ]
