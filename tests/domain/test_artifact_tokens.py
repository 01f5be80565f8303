"""Pure rules of scoped tokens and install links (contract §7.2)."""

from __future__ import annotations

import plistlib

import pytest

from oore.domain.artifact_tokens import (
    IosApp,
    check_scoped_ttl,
    install_base,
    ios_manifest,
    itms_services_url,
)
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
