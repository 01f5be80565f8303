"""Secrets at rest: AES-256-GCM in the stored format of contract §8.4."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from oore.domain.crypto import NONCE_BYTES, TAG_BYTES, SecretBox, required_box
from oore.errors import InternalError

KEY = bytes(range(32))


def test_a_value_round_trips_and_is_stored_as_nonce_ciphertext_tag() -> None:
    box = SecretBox(KEY)
    stored = box.encrypt("s3cr3t-key")
    raw = base64.b64decode(stored, validate=True)
    assert len(raw) == NONCE_BYTES + len("s3cr3t-key") + TAG_BYTES
    assert b"s3cr3t-key" not in raw
    assert box.decrypt(stored) == "s3cr3t-key"
    # Any AES-GCM implementation opens it: nonce first, tag last, no associated data.
    assert AESGCM(KEY).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], None) == b"s3cr3t-key"


def test_each_value_gets_a_fresh_nonce() -> None:
    box = SecretBox(KEY)
    first, second = box.encrypt("same"), box.encrypt("same")
    assert first != second
    assert box.decrypt(first) == box.decrypt(second) == "same"


def test_unicode_and_empty_values() -> None:
    box = SecretBox(KEY)
    for value in ("", "ünïcødé 🔑"):
        assert box.decrypt(box.encrypt(value)) == value


@pytest.mark.parametrize(
    "stored",
    [
        "not base64 at all!",
        base64.b64encode(b"short").decode(),
        base64.b64encode(b"\x00" * 40).decode(),
    ],
)
def test_garbage_does_not_decrypt(stored: str) -> None:
    with pytest.raises(InternalError) as caught:
        SecretBox(KEY).decrypt(stored)
    assert caught.value.code == "decryption_error" and caught.value.status == 500


def test_a_tampered_value_or_another_key_does_not_decrypt() -> None:
    stored = SecretBox(KEY).encrypt("value")
    raw = bytearray(base64.b64decode(stored))
    raw[-1] ^= 1
    for attempt, box in (
        (base64.b64encode(bytes(raw)).decode(), SecretBox(KEY)),
        (stored, SecretBox(bytes(32))),
    ):
        with pytest.raises(InternalError) as caught:
            box.decrypt(attempt)
        assert caught.value.code == "decryption_error"


def test_a_key_must_have_32_bytes_and_is_never_shown() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SecretBox(b"x" * 16)
    assert repr(SecretBox(KEY)) == "<SecretBox>"


def test_work_that_needs_the_key_is_refused_without_one() -> None:
    box = SecretBox(bytes(range(32)))
    assert required_box(box) is box
    with pytest.raises(InternalError) as refused:
        required_box(None)
    assert refused.value.code == "encryption_error"
