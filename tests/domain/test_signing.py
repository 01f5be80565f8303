"""The rules of Android signing profiles (contract §8.3)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from oore.domain.signing import (
    MAX_KEYSTORE_BYTES,
    AndroidProfileChange,
    AndroidSigningMaterial,
    SealedAndroidProfile,
    android_env,
    apply_android_change,
    check_android_change,
    decode_keystore,
    default_keystore_filename,
    keystore_checksum,
    parse_android_material,
)
from oore.errors import InvalidInput


def seal(value: str) -> str:
    return f"sealed({value})"


def code(exc: pytest.ExceptionInfo[InvalidInput]) -> str:
    return exc.value.code


@pytest.mark.parametrize("length", [1, 2, 3, 4, 1000])
def test_keystores_decode_from_padded_or_unpadded_base64(length: int) -> None:
    data = bytes(range(256))[:length] if length <= 256 else b"x" * length
    padded = base64.b64encode(data).decode()
    assert decode_keystore(padded) == data
    assert decode_keystore(padded.rstrip("=")) == data
    assert decode_keystore("\n".join([padded[:4], padded[4:]])) == data  # line breaks pass


@pytest.mark.parametrize("text", ["not base64!", "QUJD*", "A", "-_-_", "===="])
def test_text_that_is_not_standard_base64_or_empty_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        decode_keystore(text)
    assert code(refused) == "invalid_keystore"


def test_a_keystore_is_at_most_5_mib_decoded() -> None:
    assert len(decode_keystore(base64.b64encode(b"k" * MAX_KEYSTORE_BYTES).decode())) == (
        MAX_KEYSTORE_BYTES
    )
    for over in (b"k" * (MAX_KEYSTORE_BYTES + 1), b"k" * (MAX_KEYSTORE_BYTES * 2)):
        with pytest.raises(InvalidInput, match="at most 5242880 bytes") as refused:
            decode_keystore(base64.b64encode(over).decode())
        assert code(refused) == "invalid_keystore"


def test_blank_parts_are_omitted_and_file_names_are_single_components() -> None:
    change = check_android_change(
        keystore_filename="  ", keystore_base64="", store_password=" ", key_alias=None
    )
    assert change == AndroidProfileChange()
    assert check_android_change(keystore_filename=" up.jks ").keystore_filename == "up.jks"
    for name in ("../x.jks", "a/b.jks", "a\\b", "..", "tab\there", "x" * 256):
        with pytest.raises(InvalidInput) as refused:
            check_android_change(keystore_filename=name)
        assert code(refused) == "invalid_input"
    with pytest.raises(InvalidInput):
        check_android_change(store_password="p" * 1025)
    with pytest.raises(InvalidInput):
        check_android_change(key_password="nul\x00")


def full_change() -> AndroidProfileChange:
    return check_android_change(
        enabled=True,
        keystore_base64=base64.b64encode(b"store").decode(),
        store_password="sp-1234",
        key_alias="alias",
        key_password="kp-1234",
    )


def test_a_change_seals_its_parts_defaults_the_file_name_and_keeps_what_it_omits() -> None:
    saved = apply_android_change(None, "p1", "release", full_change(), seal, 10)
    assert saved == SealedAndroidProfile(
        pipeline_id="p1",
        build_type="release",
        enabled=True,
        keystore_filename="release.jks",
        keystore_sealed=seal(base64.b64encode(b"store").decode()),
        keystore_checksum=hashlib.sha256(b"store").hexdigest(),
        store_password_sealed=seal("sp-1234"),
        key_alias_sealed=seal("alias"),
        key_password_sealed=seal("kp-1234"),
        updated_at=10,
    )
    assert default_keystore_filename("debug") == "debug.jks"
    assert keystore_checksum(b"store") == hashlib.sha256(b"store").hexdigest()
    renamed = apply_android_change(
        saved, "p1", "release", AndroidProfileChange(keystore_filename="u.jks"), seal, 20
    )
    assert renamed.keystore_filename == "u.jks" and renamed.updated_at == 20
    assert renamed.keystore_sealed == saved.keystore_sealed
    # A new keystore keeps the file name chosen before.
    again = apply_android_change(
        renamed, "p1", "release", AndroidProfileChange(keystore=b"other"), seal, 30
    )
    assert again.keystore_filename == "u.jks"
    assert again.keystore_checksum == hashlib.sha256(b"other").hexdigest()
    off = apply_android_change(
        again, "p1", "release", AndroidProfileChange(enabled=False), seal, 40
    )
    assert not off.enabled and off.key_password_sealed == seal("kp-1234")


def test_enabling_needs_all_five_parts() -> None:
    with pytest.raises(InvalidInput, match="without keystore_filename, keystore_base64") as no:
        apply_android_change(None, "p1", "debug", AndroidProfileChange(enabled=True), seal, 1)
    assert code(no) == "incomplete_signing_profile"
    partial = AndroidProfileChange(enabled=True, keystore=b"k", store_password="sp-1234")
    with pytest.raises(InvalidInput, match="without key_alias, key_password") as some:
        apply_android_change(None, "p1", "debug", partial, seal, 1)
    assert code(some) == "incomplete_signing_profile"
    # Disabled, an incomplete profile is kept as it is.
    kept = apply_android_change(None, "p1", "debug", AndroidProfileChange(keystore=b"k"), seal, 1)
    assert kept.missing == ["store_password", "key_alias", "key_password"]


def test_the_runner_reads_only_well_formed_enabled_profiles() -> None:
    material = AndroidSigningMaterial("release", "r.jks", "azE=", "sp-1234", "a", "kp-1234")
    assert parse_android_material({"release": material.to_json()}) == [material]
    assert parse_android_material({}) == []
    broken_answers: list[object] = [
        [],
        {"release": {**material.to_json(), "enabled": False}},
        {"release": {**material.to_json(), "keystore_filename": "../r.jks"}},
        {"debug": {**material.to_json(), "key_password": ""}},
    ]
    for broken in broken_answers:
        assert parse_android_material(broken) is None
    assert "kp-1234" not in repr(material)
    assert dict(android_env(material, "/tmp/x/r.jks")) == {
        "OORE_ANDROID_RELEASE_KEYSTORE_PATH": "/tmp/x/r.jks",
        "OORE_ANDROID_RELEASE_STORE_PASSWORD": "sp-1234",
        "OORE_ANDROID_RELEASE_KEY_ALIAS": "a",
        "OORE_ANDROID_RELEASE_KEY_PASSWORD": "kp-1234",
    }
