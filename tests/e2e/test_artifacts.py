"""The real ``oored`` and a real ``oore runner``: a build's log arrives whole and in order,
and its file comes back byte for byte.

The repository's pipeline writes a file; the runner uploads it to the daemon's local
storage before reporting success; a download link serves it whole and in ranges, until
the project is deleted.
"""

from __future__ import annotations

import hashlib
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.e2e.conftest import DaemonFactory, free_port
from tests.e2e.test_runner_agent import Api, committed_repo, runners

__all__ = ["runners"]

PIPELINE = """version: 1
platforms: [android]
commands:
  build:
    - "for i in $(seq 1 1000); do echo line $i; done"
    - "mkdir -p dist && seq 1 500000 > dist/numbers.txt"
    - "printf 'not collected' > dist/notes.log"
artifacts:
  patterns:
    - "dist/*.txt"
"""
# About 3.4 MB: more than the JSON body limit, so the upload must stream.
EXPECTED = "".join(f"{n}\n" for n in range(1, 500001)).encode()


def make_repo(root: Path) -> Path:
    return committed_repo(root / "repo", {".oore.yaml": PIPELINE})


def test_a_runner_uploads_and_a_link_downloads_the_same_bytes(
    make_daemon: DaemonFactory,
    runners: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path)
    daemon = make_daemon()
    port = free_port()
    daemon.start("--listen", f"127.0.0.1:{port}")
    key = daemon.data_dir / "encryption.key"
    assert len(key.read_bytes()) == 32 and stat.S_IMODE(key.stat().st_mode) == 0o600
    with daemon.client() as client:
        token = client.post("/v1/auth/local/login", json={}).json()["session_token"]
        api = Api(client, token)
        project = api.call(
            "POST", "/v1/projects", {"name": "app", "local_repository_path": str(repo)}, expect=201
        )["project"]
        pipeline = api.call(
            "POST", f"/v1/projects/{project['id']}/pipelines", {"name": "ci"}, expect=201
        )["pipeline"]
        build_id = api.call(
            "POST",
            f"/v1/projects/{project['id']}/builds",
            {"pipeline_id": pipeline["id"]},
            expect=201,
        )["build"]["id"]
        runners(daemon.url, token, "uploader", "linux")
        done = api.finished(build_id)
        assert done["build"]["status"] == "succeeded", done

        [artifact] = api.call("GET", f"/v1/builds/{build_id}/artifacts")["artifacts"]
        assert artifact["name"] == "numbers.txt" and artifact["state"] == "available"
        assert artifact["artifact_type"] == "generic"
        assert artifact["file_size"] == len(EXPECTED)
        assert artifact["checksum"] == hashlib.sha256(EXPECTED).hexdigest()
        assert artifact["metadata"] == {"path": "dist/numbers.txt"}
        stored = daemon.data_dir / "artifacts" / artifact["file_path"]
        assert stored.read_bytes() == EXPECTED
        logs = api.logs(build_id)
        texts = [line["content"] for line in logs]
        assert "[oore] artifact dist/numbers.txt uploaded" in texts
        # The log is complete and in order: every printed line once, sequences ascending.
        assert [t for t in texts if t.startswith("line ")] == [f"line {i}" for i in range(1, 1001)]
        sequences = [line["sequence"] for line in logs]
        assert sequences == sorted(set(sequences))

        link = api.call("POST", f"/v1/artifacts/{artifact['id']}/download-link")
        url = link["download_url"]
        assert url.startswith(f"http://127.0.0.1:{port}/v1/artifacts/download/")
        with httpx.Client(timeout=10.0) as plain:  # the link is the credential
            whole = plain.get(url)
            assert whole.status_code == 200
            assert whole.content == EXPECTED
            assert whole.headers["content-disposition"] == 'attachment; filename="numbers.txt"'
            part = plain.get(url, headers={"Range": "bytes=1000-1999"})
            assert part.status_code == 206
            assert part.content == EXPECTED[1000:2000]
            assert part.headers["content-range"] == f"bytes 1000-1999/{len(EXPECTED)}"
            tail = plain.get(url, headers={"Range": "bytes=-8"})
            assert tail.status_code == 206 and tail.content == b"\n500000\n"
            beyond = plain.get(url, headers={"Range": f"bytes={len(EXPECTED)}-"})
            assert beyond.status_code == 416
            assert beyond.headers["content-range"] == f"bytes */{len(EXPECTED)}"

            # Deleting the project deletes the file, and the link handed out before is dead.
            deleted = api.call("DELETE", f"/v1/projects/{project['id']}")
            assert deleted == {"ok": True}
            assert not stored.exists()
            gone = plain.get(url)
            assert gone.status_code == 404 and gone.json()["code"] == "not_found"
    assert daemon.stop() == 0
