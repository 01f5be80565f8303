"""Secrets at rest (contract §8.4): AES-256-GCM under the instance's 32-byte key.

Each value gets a fresh random 12-byte nonce; the stored text is the standard, padded
base64 of ``nonce ‖ ciphertext ‖ 16-byte tag``, with no associated data. The key itself
lives in ``<data dir>/encryption.key`` (see :func:`oore.datadir.load_or_create_key`).
"""

from __future__ import annotations

import base64
import binascii
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from oore.errors import InternalError

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


def encryption_error() -> InternalError:
    return InternalError("encryption_error", "Failed to encrypt a secret")


def required_box(secrets: SecretBox | None) -> SecretBox:
    """The key, for work that must encrypt or decrypt: 500 ``encryption_error`` without
    one (a daemon always has one; an app built for a test may not)."""
    if secrets is None:
        raise encryption_error()
    return secrets


def decryption_error() -> InternalError:
    return InternalError("decryption_error", "Failed to decrypt a stored secret")


class SecretBox:
    """Encrypts and decrypts text with one AES-256-GCM key; never shows the key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"an encryption key has {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self.key_size = len(key)

    def __repr__(self) -> str:
        return "<SecretBox>"

    def encrypt(self, plaintext: str) -> str:
        """The stored form of ``plaintext``; 500 ``encryption_error`` if that fails."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        try:
            sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), None)
        except (ValueError, OverflowError, UnicodeEncodeError):
            raise encryption_error() from None
        return base64.b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, stored: str) -> str:
        """The plaintext of a stored value; 500 ``decryption_error`` when it does not open."""
        try:
            raw = base64.b64decode(stored, validate=True)
            if len(raw) < NONCE_BYTES + TAG_BYTES:
                raise decryption_error()
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], None)
            return plain.decode("utf-8")
        except (binascii.Error, InvalidTag, ValueError):
            raise decryption_error() from None
