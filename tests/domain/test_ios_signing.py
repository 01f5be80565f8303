"""The rules of iOS signing: base64, file names, profile facts, updates, devices (§8.3)."""

from __future__ import annotations

import base64
import plistlib
from datetime import datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from oore.domain.ios_signing import (
    MAX_P12_BYTES,
    IosSigningState,
    IosSigningUpdate,
    ProfileUpload,
    apply_update,
    check_api_private_key,
    check_device,
    check_filename,
    check_update,
    decode_base64,
    profile_facts,
)
from oore.errors import ApiError


def sealed(text: str) -> str:
    """A stand-in for encryption that keeps the value recognisable in assertions."""
    return f"sealed:{text}"


def pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


def refused(code: str, call: object, *args: object) -> str:
    assert callable(call)
    with pytest.raises(ApiError) as caught:
        call(*args)
    assert (caught.value.status, caught.value.code) == (400, code), caught.value
    return caught.value.message


def test_base64_is_standard_padded_or_not_and_bounded() -> None:
    assert decode_base64("aGVsbG8=", "x", 10) == b"hello"
    assert decode_base64("aGVsbG8", "x", 10) == b"hello"
    assert decode_base64("aGVs\nbG8=\n", "x", 10) == b"hello"
    assert "not valid base64" in refused("invalid_input", decode_base64, "aGVs_G8=", "x", 10)
    assert "not valid base64" in refused("invalid_input", decode_base64, "a", "x", 10)
    assert "empty" in refused("invalid_input", decode_base64, "", "x", 10)
    assert "larger than 4" in refused("invalid_input", decode_base64, "aGVsbG8=", "x", 4)
    huge = "A" * (MAX_P12_BYTES * 2)
    assert "larger than" in refused("invalid_input", decode_base64, huge, "p12", MAX_P12_BYTES)


@pytest.mark.parametrize("name", ["", " ", ".", "..", "a/b", "..\\b", "/abs", "a\0b", "x" * 256])
def test_file_names_are_single_path_components(name: str) -> None:
    refused("invalid_filename", check_filename, name, "p12_filename")


def test_a_plain_file_name_is_kept_trimmed() -> None:
    assert check_filename(" dist cert.p12 ", "p12_filename") == "dist cert.p12"


def test_profile_facts_come_from_the_embedded_plist_or_not_at_all() -> None:
    plist = plistlib.dumps(
        {"UUID": "u-1", "Name": "App", "ExpirationDate": datetime(2027, 1, 1, 0, 0, 0)}
    )
    facts = profile_facts(b"\x30\x82signature" + plist + b"\x00trailer")
    assert (facts.uuid, facts.name, facts.expires_at) == ("u-1", "App", 1798761600)
    for broken in (
        b"",
        b"no plist here",
        b"<?xml version='1.0'?><plist><dict><key>UUID</key>",
        b"<?xml version='1.0'?><plist><array/></plist>",
        b"<?xml version='1.0'?><plist><dict><key>UUID</key><date>x</date></dict></plist>",
        b"<?xml version='1.0'?><plist><dict><key>UUID</key><integer>1</integer></dict></plist>",
    ):
        assert profile_facts(broken).uuid is None


def test_the_api_key_is_an_ec_p256_pem_given_as_base64_or_as_text() -> None:
    key = pem(ec.generate_private_key(ec.SECP256R1()))
    assert check_api_private_key(base64.b64encode(key.encode()).decode()) == key
    assert check_api_private_key(key) == key
    for wrong in (
        pem(ec.generate_private_key(ec.SECP384R1())),
        pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
        base64.b64encode(b"not a key").decode(),
    ):
        refused("invalid_input", check_api_private_key, wrong)


def test_an_update_keeps_what_it_omits_and_seals_secrets() -> None:
    start = IosSigningState(pipeline_id="p")
    first = apply_update(
        start,
        check_update(
            {
                "team_id": "TEAM1",
                "bundle_ids": ["com.a", "com.b"],
                "p12": {"p12_base64": base64.b64encode(b"cert").decode(), "p12_password": "pw"},
                "provisioning_profiles": [
                    {"bundle_id": "com.b", "profile_filename": "b.mp", "profile_base64": "Yg=="},
                    {"bundle_id": "com.a", "profile_filename": "a.mp", "profile_base64": "YQ=="},
                ],
            }
        ),
        sealed,
        100,
    )
    assert first.p12_filename == "certificate.p12"
    assert first.p12_encrypted == sealed(base64.b64encode(b"cert").decode())
    assert first.p12_password_encrypted == sealed("pw")
    assert [p.bundle_id for p in first.profiles] == ["com.a", "com.b"]
    assert first.missing() == []
    second = apply_update(first, IosSigningUpdate(export_method="development"), sealed, 200)
    assert second == IosSigningState(
        **{**first.__dict__, "export_method": "development", "updated_at": 200}
    )
    narrowed = apply_update(second, IosSigningUpdate(bundle_ids=("com.b",)), sealed, 300)
    assert [p.bundle_id for p in narrowed.profiles] == ["com.b"]


@pytest.mark.parametrize(
    ("mode", "needs"),
    [
        ("manual", ["team_id", "p12", "p12_password", "bundle_ids"]),
        ("api", ["team_id", "api_key (key_id, issuer_id, private_key_base64)", "bundle_ids"]),
        (
            "hybrid",
            [
                "team_id",
                "p12",
                "p12_password",
                "bundle_ids",
                "api_key (key_id, issuer_id, private_key_base64)",
            ],
        ),
    ],
)
def test_enabling_needs_what_the_mode_needs(mode: str, needs: list[str]) -> None:
    state = IosSigningState(pipeline_id="p", mode=mode)  # type: ignore[arg-type]
    assert state.missing() == needs
    message = refused(
        "incomplete_signing_profile",
        apply_update,
        state,
        IosSigningUpdate(enabled=True),
        sealed,
        1,
    )
    assert message.endswith(", ".join(needs))


def test_a_manual_bundle_id_without_its_profile_is_incomplete() -> None:
    state = apply_update(
        IosSigningState(pipeline_id="p"),
        IosSigningUpdate(
            team_id="T",
            bundle_ids=("com.a", "com.b"),
            p12=b"c",
            p12_password="pw",
            profiles=(ProfileUpload("com.a", "a.mp", b"a"),),
        ),
        sealed,
        1,
    )
    assert state.missing() == ["a provisioning profile for com.b"]


def test_devices_are_checked() -> None:
    device = check_device(" Jane's iPhone ", "00008030-001A", None)
    assert (device.name, device.udid, device.platform) == ("Jane's iPhone", "00008030-001A", "IOS")
    assert check_device("Mac", "ABC", "mac_os").platform == "MAC_OS"
    for name, udid, platform in (
        ("", "1", None),
        ("x" * 129, "1", None),
        ("ok", "", None),
        ("ok", "1" * 65, None),
        ("ok", "bad udid", None),
        ("ok", "1", "TV"),
    ):
        refused("invalid_input", check_device, name, udid, platform)
