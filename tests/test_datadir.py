"""The data directory's encryption key file (contract §8.4)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from oore.datadir import ENCRYPTION_KEY_FILE, load_or_create_key
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
