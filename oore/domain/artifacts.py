"""Build artifacts: states, names, object keys and the wire shape (contract §6.5, §7)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from oore.domain.text import name_problem
from oore.errors import InvalidInput

MAX_NAME_CHARS = 255
UPLOAD_URL_TTL = 30 * 60
DOWNLOAD_URL_TTL = 15 * 60
PENDING_TTL = 30 * 60
PENDING_EXPIRED_MESSAGE = "upload reservation expired"
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
DOWNLOAD_CHUNK_BYTES = 64 * 1024
MAX_CONCURRENT_DOWNLOADS = 16
MAX_QUERY_BUILD_IDS = 200
PROJECT_LIST_MAX = 200
DAY_SECONDS = 86400


class ArtifactType(StrEnum):
    APK = "apk"
    IPA = "ipa"
    APP = "app"
    GENERIC = "generic"


class ArtifactState(StrEnum):
    PENDING = "pending"
    AVAILABLE = "available"
    FAILED = "failed"


@dataclass(frozen=True)
class Artifact:
    """One artifact row; ``project_id`` and ``error_message`` stay off the wire."""

    id: str
    build_id: str
    project_id: str
    name: str
    artifact_type: ArtifactType
    file_path: str
    file_size: int | None
    checksum: str | None
    metadata: Any
    created_at: int
    state: ArtifactState
    expires_at: int | None = None
    error_message: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "build_id": self.build_id,
            "name": self.name,
            "artifact_type": self.artifact_type.value,
            "file_path": self.file_path,
            "file_size": self.file_size,
            "checksum": self.checksum,
            "metadata": self.metadata,
            "created_at": self.created_at,
            "state": self.state.value,
        }
        if self.expires_at is not None:
            body["expires_at"] = self.expires_at
        return body

    def expired(self, now: int) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def parse_artifact_type(value: str) -> ArtifactType:
    """400 ``invalid_artifact_type`` unless apk, ipa, app or generic."""
    try:
        return ArtifactType(value)
    except ValueError:
        raise InvalidInput(
            "invalid_artifact_type", "artifact_type must be apk, ipa, app or generic"
        ) from None


def check_artifact_name(name: str) -> str:
    """The trimmed name; 400 ``invalid_name`` unless it is one usable file name.

    The contract forbids ``/`` and ``\\``; ``.``, ``..`` and control characters are refused
    too, since the name is the last segment of the object's path.
    """
    trimmed = name.strip()
    if not 1 <= len(trimmed) <= MAX_NAME_CHARS:
        raise InvalidInput("invalid_name", "name must be 1..255 characters")
    if "/" in trimmed or "\\" in trimmed:
        raise InvalidInput("invalid_name", "name must not contain / or \\")
    if trimmed in (".", "..") or any(unicodedata.category(c) == "Cc" for c in trimmed):
        raise InvalidInput("invalid_name", "name must be a file name")
    if (problem := name_problem(trimmed)) is not None:
        raise InvalidInput("invalid_name", f"name {problem}")
    return trimmed


def blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def object_key(build_id: str, artifact_id: str, name: str) -> str:
    """Where the bytes live in storage: ``artifacts/<build_id>/<artifact_id>/<name>``."""
    return f"artifacts/{build_id}/{artifact_id}/{name}"


def content_disposition(filename: str) -> str:
    """``attachment; filename="<name>"``, with an RFC 6266 ``filename*`` for other names."""
    plain = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    header = f'attachment; filename="{plain}"'
    if plain != filename:
        header += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return header
