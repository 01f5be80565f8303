"""Artifact downloads: a fresh link per file, streamed to disk, checked against the
SHA-256 and size the server recorded, then moved into place.

The link is the credential: it is fetched with a plain client, so the user's token never
goes to the storage host (an S3 bucket may serve the bytes).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, TextIO

import httpx

from oore.client.api import Api, CliError, failure
from oore.client.terminal import Progress

CHUNK = 1 << 16


def safe_name(name: str) -> str:
    """The artifact's file name, without any directory a server could slip in."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    if base in ("", ".", "..") or "\x00" in base:
        raise CliError(f"the artifact name {name!r} is not a usable file name")
    return base


def download(api: Api, artifact: dict[str, Any], directory: Path, progress_to: TextIO) -> Path:
    name = safe_name(str(artifact["name"]))
    link = api.post(f"/v1/artifacts/{artifact['id']}/download-link")["download_url"]
    target = directory / name
    partial = directory / f".{name}.part"
    digest = hashlib.sha256()
    size = 0
    expected_size = artifact.get("file_size")
    progress = Progress(
        progress_to, name, expected_size if isinstance(expected_size, int) else None
    )
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(30.0), follow_redirects=True) as plain,
            api.reaching(),
            plain.stream("GET", link) as response,
        ):
            if response.status_code >= 400:
                response.read()
                raise failure(response)
            with partial.open("wb") as file:
                for chunk in response.iter_bytes(CHUNK):
                    file.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    progress.advance(len(chunk))
        progress.finish()
        checksum = artifact.get("checksum")
        if isinstance(checksum, str) and checksum and digest.hexdigest() != checksum.lower():
            raise CliError(f"{name}: the downloaded bytes do not match the recorded SHA-256")
        if isinstance(expected_size, int) and size != expected_size:
            raise CliError(f"{name}: got {size} bytes, expected {expected_size}")
        os.replace(partial, target)
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return target
