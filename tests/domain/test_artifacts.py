"""Artifact names, types, object keys and the wire shape (contract §6.5)."""

from __future__ import annotations

import pytest

from oore.domain.artifacts import (
    Artifact,
    ArtifactState,
    ArtifactType,
    check_artifact_name,
    content_disposition,
    object_key,
    parse_artifact_type,
)
from oore.errors import InvalidInput


@pytest.mark.parametrize("name", ["", "   ", "a/b", "a\\b", ".", "..", "x" * 256, "a\x00b", "a\nb"])
def test_names_that_are_not_one_file_name_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_artifact_name(name)
    assert caught.value.code == "invalid_name"


@pytest.mark.parametrize(
    ("name", "kept"),
    [("  app.apk ", "app.apk"), ("x" * 255, "x" * 255), ("été 1.ipa", "été 1.ipa"), ("..a", "..a")],
)
def test_names_are_trimmed(name: str, kept: str) -> None:
    assert check_artifact_name(name) == kept


def test_artifact_types() -> None:
    assert [parse_artifact_type(t) for t in ("apk", "ipa", "app", "generic")] == list(ArtifactType)
    for bad in ("APK", "zip", ""):
        with pytest.raises(InvalidInput) as caught:
            parse_artifact_type(bad)
        assert caught.value.code == "invalid_artifact_type"


def test_object_key_layout() -> None:
    assert object_key("b1", "a1", "app.apk") == "artifacts/b1/a1/app.apk"


def test_wire_shape_keeps_nulls_and_omits_expires_at_when_unset() -> None:
    artifact = Artifact(
        id="a",
        build_id="b",
        project_id="p",
        name="app.apk",
        artifact_type=ArtifactType.APK,
        file_path="artifacts/b/a/app.apk",
        file_size=None,
        checksum=None,
        metadata=None,
        created_at=10,
        state=ArtifactState.PENDING,
        error_message="hidden",
    )
    assert artifact.to_json() == {
        "id": "a",
        "build_id": "b",
        "name": "app.apk",
        "artifact_type": "apk",
        "file_path": "artifacts/b/a/app.apk",
        "file_size": None,
        "checksum": None,
        "metadata": None,
        "created_at": 10,
        "state": "pending",
    }
    assert not artifact.expired(10**12)
    dated = Artifact(**{**artifact.__dict__, "expires_at": 100})
    assert dated.to_json()["expires_at"] == 100
    assert not dated.expired(99) and dated.expired(100)


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("app.apk", 'attachment; filename="app.apk"'),
        (
            'say "hi".txt',
            "attachment; filename=\"say _hi_.txt\"; filename*=UTF-8''say%20%22hi%22.txt",
        ),
        ("été.ipa", "attachment; filename=\"_t_.ipa\"; filename*=UTF-8''%C3%A9t%C3%A9.ipa"),
    ],
)
def test_content_disposition(name: str, header: str) -> None:
    assert content_disposition(name) == header
