"""Artifact downloads: the link's host never sees the user's token, and bytes that do not
match the recorded SHA-256 are not kept."""

from __future__ import annotations

import hashlib
import io
import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest

from oore.client.api import Api, CliError
from oore.client.download import download, safe_name
from tests.loopback_http import serving

PAYLOAD = b"artifact bytes\n" * 1000


class Storage(BaseHTTPRequestHandler):
    """Both the API (download-link) and the storage host the link points at."""

    headers_seen: ClassVar[list[dict[str, str]]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        host = self.headers["Host"]
        body = json.dumps({"download_url": f"http://{host}/blob"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.headers_seen.append(dict(self.headers))
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD)


def artifact(checksum: str) -> dict[str, object]:
    return {"id": "a1", "name": "dist/app.bin", "file_size": len(PAYLOAD), "checksum": checksum}


def test_the_file_arrives_whole_and_the_token_stays_home(tmp_path: Path) -> None:
    Storage.headers_seen = []
    good = hashlib.sha256(PAYLOAD).hexdigest()
    with serving(Storage) as url, Api(url, "user-token") as api:
        path = download(api, artifact(good), tmp_path / "out", io.StringIO())
    assert path == tmp_path / "out" / "app.bin" and path.read_bytes() == PAYLOAD
    assert all("Authorization" not in seen for seen in Storage.headers_seen)


def test_bytes_that_do_not_match_are_not_kept(tmp_path: Path) -> None:
    with (
        serving(Storage) as url,
        Api(url, "user-token") as api,
        pytest.raises(CliError, match="do not match the recorded SHA-256"),
    ):
        download(api, artifact("0" * 64), tmp_path, io.StringIO())
    assert list(tmp_path.iterdir()) == []


def test_names_cannot_leave_the_directory() -> None:
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("dir\\win.exe") == "win.exe"
    for bad in ("..", "dist/", ""):
        with pytest.raises(CliError):
            safe_name(bad)
