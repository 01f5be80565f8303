"""Pure rules of scoped tokens and install links (contract §7.2)."""

from __future__ import annotations

import plistlib
from typing import Any

import pytest

from oore.domain.artifact_tokens import (
    IosApp,
    check_scoped_ttl,
    install_base,
    ios_app_of,
    ios_manifest,
    itms_services_url,
)
from oore.domain.artifacts import Artifact, ArtifactState, ArtifactType
from oore.errors import ApiError


@pytest.mark.parametrize(
    ("ttl", "expected"), [(None, 86400), (60, 60), (604800, 604800), (3600, 3600)]
)
def test_scoped_ttl_in_range(ttl: int | None, expected: int) -> None:
    assert check_scoped_ttl(ttl) == expected


@pytest.mark.parametrize("ttl", [-1, 0, 59, 604801, 10**9])
def test_scoped_ttl_out_of_range(ttl: int) -> None:
    with pytest.raises(ApiError) as caught:
        check_scoped_ttl(ttl)
    assert (caught.value.status, caught.value.code) == (400, "validation_error")


@pytest.mark.parametrize(
    ("delivery", "public", "expected"),
    [
        ("https://dl.example/", "https://ci.example", "https://dl.example"),
        (None, "https://ci.example/base/", "https://ci.example/base"),
        ("  ", "http://10.0.0.2:8787", "http://10.0.0.2:8787"),
    ],
)
def test_install_base_prefers_the_delivery_url(
    delivery: str | None, public: str | None, expected: str
) -> None:
    assert install_base(delivery, public) == expected


@pytest.mark.parametrize(
    ("delivery", "public", "code"),
    [
        (None, None, "external_access_required"),
        ("", " ", "external_access_required"),
        ("ci.example", None, "external_access_invalid"),
        (None, "https://a:b@ci.example", "external_access_invalid"),
        (None, "https://[::1", "external_access_invalid"),
        (None, "https://ci.example:port", "external_access_invalid"),
    ],
)
def test_install_base_refusals(delivery: str | None, public: str | None, code: str) -> None:
    with pytest.raises(ApiError) as caught:
        install_base(delivery, public)
    assert (caught.value.status, caught.value.code) == (412, code)


def test_the_manifest_is_an_itms_services_plist() -> None:
    app = IosApp("com.example.app", "1.0 (7)", "Example & <Co>")
    raw = ios_manifest(app, "https://dl.example/install/artifact/abc")
    assert raw.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert b"&amp; &lt;Co&gt;" in raw
    item = plistlib.loads(raw)["items"][0]
    assert item["assets"] == [
        {"kind": "software-package", "url": "https://dl.example/install/artifact/abc"}
    ]
    assert item["metadata"]["bundle-identifier"] == "com.example.app"
    assert itms_services_url("https://x/m.plist?a=1") == (
        "itms-services://?action=download-manifest&url=https%3A%2F%2Fx%2Fm.plist%3Fa%3D1"
    )


def ipa(metadata: Any) -> Artifact:
    return Artifact(
        "a1",
        "b1",
        "p1",
        "App.ipa",
        ArtifactType.IPA,
        "k",
        1,
        None,
        metadata,
        0,
        ArtifactState.AVAILABLE,
    )


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        ({"bundle_id": "a.b", "bundle_version": "1", "title": "T"}, ("a.b", "1", "T")),
        # oored-format runners
        (
            {
                "bundle_identifier": "a.b",
                "version": "3.2.1",
                "build_number": "42",
                "display_name": "Kite",
            },
            ("a.b", "3.2.1", "Kite"),
        ),
        ({"bundle_identifier": "a.b", "bundle_short_version": "2", "name": "N"}, ("a.b", "2", "N")),
        ({"bundle_id": "a.b", "short_version": "4", "app_name": "A"}, ("a.b", "4", "A")),
        # Info.plist keys
        (
            {
                "CFBundleIdentifier": "a.b",
                "CFBundleShortVersionString": "5",
                "CFBundleVersion": "77",
                "CFBundleDisplayName": "D",
                "CFBundleName": "N",
            },
            ("a.b", "5", "D"),
        ),
        (
            {"CFBundleIdentifier": "a.b", "CFBundleVersion": "77", "CFBundleName": "N"},
            ("a.b", "77", "N"),
        ),
        # oore's own names come first; blank or non-text values are passed over
        (
            {
                "bundle_id": " a.b ",
                "bundle_identifier": "x.y",
                "bundle_version": " ",
                "version": "6",
                "title": 7,
                "display_name": "Shown",
            },
            ("a.b", "6", "Shown"),
        ),
    ],
)
def test_ios_app_metadata_under_any_of_its_names(
    app: dict[str, Any], expected: tuple[str, str, str]
) -> None:
    assert ios_app_of(ipa({"ios_app": app})) == IosApp(*expected)


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        {"ios_app": "x"},
        {"ios_app": {"bundle_identifier": "a.b", "version": "1"}},  # no title
        {"ios_app": {"display_name": "T", "version": "1"}},  # no bundle id
        {"ios_app": {"bundle_id": "a.b", "title": "T", "build_number": "1"}},  # no version
    ],
)
def test_incomplete_ios_app_metadata_is_422(metadata: Any) -> None:
    with pytest.raises(ApiError) as caught:
        ios_app_of(ipa(metadata))
    assert (caught.value.status, caught.value.code) == (422, "ios_artifact_not_installable")
