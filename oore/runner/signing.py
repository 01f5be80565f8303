"""Signing material on the runner: files a build can sign with, gone when it ends.

The material of one build is written to a new directory only this user can enter
(``tempfile.mkdtemp``: 0700; every folder in it 0700, every file 0600, written without
following links, under names of one path component):

* each enabled Android profile's keystore to ``<build type>/<file name>``, the build
  getting ``OORE_ANDROID_<TYPE>_*`` variables naming the file and holding the passwords
  and the alias;
* iOS signing's P12 to ``ios/certificate/<file name>`` and each provisioning profile to
  ``ios/profiles/<bundle id>/<file name>``, the build getting ``OORE_IOS_*`` variables.

The directory is removed when the build's steps end, however they end (failed,
cancelled, the agent stopping).
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

from oore.domain.ios_signing import IosSigningMaterial, ios_env
from oore.domain.signing import AndroidSigningMaterial, android_env

CLEANUP_DEADLINE = 30.0
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


class SigningFilesError(Exception):
    """The signing material could not be written (a keystore that is not base64, a full
    disk); the message names the part, never a secret."""


@dataclass(frozen=True)
class SigningFiles:
    """Where the material is, the variables for the build and the values to mask."""

    directory: Path
    env: dict[str, str] = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)


def _decoded(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SigningFilesError(f"the {what} is not valid base64") from None


def _folder(parent: Path, name: str) -> Path:
    folder = parent / name
    folder.mkdir(mode=PRIVATE_DIR)
    return folder


def _private_file(folder: Path, name: str, data: bytes) -> Path:
    """``data`` in a new file only this user can read; never through a link."""
    path = folder / name
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return path


def _write_android(
    directory: Path, materials: Sequence[AndroidSigningMaterial], env: dict[str, str]
) -> None:
    for material in materials:
        keystore = _decoded(material.keystore_base64, f"{material.build_type} keystore")
        folder = _folder(directory, material.build_type)
        path = _private_file(folder, material.keystore_filename, keystore)
        env.update(android_env(material, str(path)))


def _write_ios(directory: Path, material: IosSigningMaterial, env: dict[str, str]) -> None:
    ios = _folder(directory, "ios")
    p12_path: Path | None = None
    if material.p12_base64 is not None and material.p12_filename is not None:
        p12 = _decoded(material.p12_base64, "iOS P12 certificate")
        p12_path = _private_file(_folder(ios, "certificate"), material.p12_filename, p12)
    profiles = _folder(ios, "profiles")
    paths: list[str] = []
    for profile in material.profiles:
        content = _decoded(profile.profile_base64, f"provisioning profile of {profile.bundle_id}")
        folder = _folder(profiles, profile.bundle_id)
        paths.append(str(_private_file(folder, profile.profile_filename, content)))
    env.update(ios_env(material, None if p12_path is None else str(p12_path), str(profiles), paths))


def _write(
    directory: Path,
    android: Sequence[AndroidSigningMaterial],
    ios: IosSigningMaterial | None,
) -> SigningFiles:
    env: dict[str, str] = {}
    _write_android(directory, android, env)
    secrets = [secret for material in android for secret in material.secrets]
    if ios is not None:
        _write_ios(directory, ios, env)
        secrets.extend(ios.secrets)
    return SigningFiles(directory, env, tuple(secrets))


@asynccontextmanager
async def signing_files(
    android: Sequence[AndroidSigningMaterial] = (),
    ios: IosSigningMaterial | None = None,
) -> AsyncIterator[SigningFiles]:
    """The material written to a new private directory, removed on exit whatever happens.

    Raises SigningFilesError when a part cannot be written (nothing is left behind)."""
    directory = Path(await trio.to_thread.run_sync(tempfile.mkdtemp, "", "oore-signing-"))
    try:
        try:
            files = await trio.to_thread.run_sync(_write, directory, android, ios)
        except OSError as exc:
            raise SigningFilesError(
                f"cannot write the signing files: {exc.strerror or exc}"
            ) from None
        yield files
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_DEADLINE):
            await trio.to_thread.run_sync(shutil.rmtree, directory, True)
