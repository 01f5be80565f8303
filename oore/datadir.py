"""The data directory: created private to this user, locked by one daemon at a time, and
holding the instance's encryption key.

Every daemon sharing a database must hold the same key: the secrets one writes, the others
read. The database keeps a fingerprint of the key (never the key) from the first daemon
that started on it; a daemon with another key refuses to start.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from types import TracebackType

from oore.errors import InternalError

LOCK_FILE = "oored.lock"
SOCKET_FILE = "oored.sock"
PGDATA_DIR = "pg"
# What the embedded PostgreSQL's manager (pgserver) says while it sets up and starts the
# cluster; the server's own log is <PGDATA_DIR>/log.
PGSERVER_LOG = "pgserver.log"


class DataDirBusy(Exception):
    """Another process holds the data directory."""


class DataDirLock:
    """An exclusive ``flock`` on ``<data_dir>/oored.lock``; the kernel drops it if we die."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._fd: int | None = None

    def __enter__(self) -> DataDirLock:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.data_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirBusy(
                f"data directory {self.data_dir} is in use by another oored (pid {holder}); "
                "stop it first or choose another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


ENCRYPTION_KEY_FILE = "encryption.key"
KEY_BYTES = 32


def load_or_create_key(data_dir: Path) -> bytes:
    """The instance's AES-256 key in ``<data_dir>/encryption.key``, created (0600) if missing.

    Blocking I/O. A file of the wrong size stops the daemon (``encryption_error``): the
    secrets stored under the old key could not be read with a new one.
    """
    path = data_dir / ENCRYPTION_KEY_FILE
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = _create_key(path)
    except OSError as exc:
        raise InternalError("encryption_error", f"cannot read {path}: {exc}") from None
    if len(key) != KEY_BYTES:
        raise InternalError(
            "encryption_error", f"{path} must hold {KEY_BYTES} raw bytes, it holds {len(key)}"
        )
    return key


def _create_key(path: Path) -> bytes:
    """Write a fresh key under a private temporary name, then link it into place.

    The link fails if another process created the key first; its key is used then.
    """
    key = secrets.token_bytes(KEY_BYTES)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(partial, path)
        except FileExistsError:
            return path.read_bytes()
    except OSError as exc:
        raise InternalError("encryption_error", f"cannot create {path}: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return key


# The fingerprint is an HMAC of this label under the key: it names the key without
# revealing it, and nothing else in oore signs this label.
_FINGERPRINT_LABEL = b"oore encryption key fingerprint v1"


def key_fingerprint(key: bytes) -> str:
    """A fingerprint of ``key`` that can be stored in the database (hex HMAC-SHA256)."""
    return hmac.new(key, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()


def check_key_fingerprint(recorded: str, key: bytes, data_dir: Path) -> None:
    """500 ``encryption_key_mismatch`` unless ``key`` is the key ``recorded`` came from."""
    if hmac.compare_digest(recorded, key_fingerprint(key)):
        return
    raise InternalError(
        "encryption_key_mismatch",
        (
            f"{data_dir / ENCRYPTION_KEY_FILE} is not the encryption key of this database "
            "(its secrets were written under another one); every oored sharing a database "
            f"needs the same key: copy {ENCRYPTION_KEY_FILE} from the data directory of the "
            "first oored that used this database, then start again"
        ),
    )
