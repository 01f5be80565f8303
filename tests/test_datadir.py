"""The data directory's encryption key file (contract §8.4)."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from oore.datadir import (
    ENCRYPTION_KEY_FILE,
    check_key_fingerprint,
    key_fingerprint,
    load_or_create_key,
)
from oore.domain.crypto import SecretBox
from oore.errors import InternalError


def test_the_key_is_created_once_private_and_then_reused(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path)
    path = tmp_path / ENCRYPTION_KEY_FILE
    assert len(key) == 32 and path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(tmp_path) == key
    stored = SecretBox(key).encrypt("kept across restarts")
    assert SecretBox(load_or_create_key(tmp_path)).decrypt(stored) == "kept across restarts"
    assert [p.name for p in tmp_path.iterdir()] == [ENCRYPTION_KEY_FILE]


def test_a_key_file_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    (tmp_path / ENCRYPTION_KEY_FILE).write_bytes(b"too short")
    with pytest.raises(InternalError) as caught:
        load_or_create_key(tmp_path)
    assert caught.value.code == "encryption_error"
    assert "must hold 32 raw bytes" in caught.value.message


def test_an_unusable_data_directory_is_an_encryption_error(tmp_path: Path) -> None:
    with pytest.raises(InternalError) as caught:
        load_or_create_key(tmp_path / "missing" / "dir")
    assert caught.value.code == "encryption_error"


def test_the_key_fingerprint_names_the_key_without_showing_it(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path)
    fingerprint = key_fingerprint(key)
    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint)
    assert key.hex() not in fingerprint and fingerprint == key_fingerprint(bytes(key))
    assert key_fingerprint(bytes(32)) != fingerprint
    check_key_fingerprint(fingerprint, key, tmp_path)  # its own key passes


def test_another_key_than_the_recorded_one_is_refused_with_what_to_do(tmp_path: Path) -> None:
    recorded = key_fingerprint(bytes(32))
    with pytest.raises(InternalError) as caught:
        check_key_fingerprint(recorded, load_or_create_key(tmp_path), tmp_path)
    assert caught.value.code == "encryption_key_mismatch"
    message = caught.value.message
    assert str(tmp_path / ENCRYPTION_KEY_FILE) in message
    assert "copy encryption.key from the data directory of the first oored" in message
