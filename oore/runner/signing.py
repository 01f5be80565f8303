"""Signing material on the runner: files a build can sign with, gone when it ends.

Each enabled profile's keystore is written to ``<private dir>/<build type>/<file name>``
in a directory only this user can enter (``tempfile.mkdtemp``: 0700, files 0600, written
without following links), and the build gets ``OORE_ANDROID_<TYPE>_*`` variables naming the
file and holding the passwords and the alias. The directory is removed when the build's
steps end, however they end (failed, cancelled, the agent stopping).
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from oore.domain.signing import AndroidSigningMaterial, android_env

CLEANUP_DEADLINE = 30.0
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


class SigningFilesError(Exception):
    """The signing material could not be written (a keystore that is not base64, a full
    disk); the message names the profile, never a secret."""


@dataclass(frozen=True)
class SigningFiles:
    """Where the keystores are, the variables for the build and the values to mask."""

    directory: Path
    env: dict[str, str] = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)


def _write(directory: Path, materials: Sequence[AndroidSigningMaterial]) -> SigningFiles:
    env: dict[str, str] = {}
    secrets: list[str] = []
    for material in materials:
        try:
            keystore = base64.b64decode(material.keystore_base64, validate=True)
        except (binascii.Error, ValueError):
            raise SigningFilesError(
                f"the {material.build_type} keystore is not valid base64"
            ) from None
        folder = directory / material.build_type
        folder.mkdir(mode=PRIVATE_DIR)
        path = folder / material.keystore_filename
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, PRIVATE_FILE)
        with os.fdopen(fd, "wb") as out:
            out.write(keystore)
        env.update(android_env(material, str(path)))
        secrets.extend(material.secrets)
    return SigningFiles(directory, env, tuple(secrets))


@asynccontextmanager
async def android_signing_files(
    materials: Sequence[AndroidSigningMaterial],
) -> AsyncIterator[SigningFiles]:
    """The keystores written to a new private directory, removed on exit whatever happens.

    Raises SigningFilesError when one cannot be written (nothing is left behind)."""
    directory = Path(await trio.to_thread.run_sync(tempfile.mkdtemp, "", "oore-signing-"))
    try:
        try:
            files = await trio.to_thread.run_sync(_write, directory, materials)
        except OSError as exc:
            raise SigningFilesError(f"cannot write the keystores: {exc.strerror}") from None
        yield files
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_DEADLINE):
            await trio.to_thread.run_sync(shutil.rmtree, directory, True)
