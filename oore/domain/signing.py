"""Build signing material of a pipeline: the rules of Android profiles (contract §8.3).

A pipeline has two Android profiles, ``debug`` and ``release``. Each holds a keystore (a
file of at most 5 MiB), its file name (``<type>.jks`` unless told), the store password,
the key alias and the key password. Every part but the file name and the keystore's
SHA-256 is kept sealed (encrypted at rest); a change names only the parts it replaces, and
a profile may be enabled only once it has all five. The runner holding a build of the
pipeline receives the enabled profiles in clear (contract §5.6) and hands them to the
build as files and environment variables (:func:`android_env`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from oore.errors import InvalidInput

AndroidBuildType = Literal["debug", "release"]
ANDROID_BUILD_TYPES: Final[tuple[AndroidBuildType, ...]] = ("debug", "release")
MAX_KEYSTORE_BYTES: Final = 5 * 1024 * 1024
# Base64 of MAX_KEYSTORE_BYTES, padded: longer text cannot decode to an allowed keystore.
MAX_KEYSTORE_TEXT: Final = 4 * ((MAX_KEYSTORE_BYTES + 2) // 3)
MAX_FILENAME_CHARS: Final = 255
# A request may set both profiles, each with a keystore as large as allowed: the body
# limit leaves room for both (the keystore's own limit then speaks, 400 invalid_keystore).
MAX_REQUEST_BYTES: Final = 2 * MAX_KEYSTORE_TEXT + 64 * 1024
MAX_SECRET_CHARS: Final = 1024
SIGNING_TOKEN_HEADER: Final = "X-Oore-Signing-Token"


def default_keystore_filename(build_type: str) -> str:
    return f"{build_type}.jks"


def keystore_checksum(keystore: bytes) -> str:
    """The lowercase hex SHA-256 of the keystore's bytes."""
    return hashlib.sha256(keystore).hexdigest()


def decode_keystore(text: str) -> bytes:
    """The keystore's bytes from standard base64, padded or not; 400 ``invalid_keystore``
    when it is not base64, empty, or over 5 MiB once decoded."""
    compact = "".join(text.split())
    if len(compact) > MAX_KEYSTORE_TEXT:
        raise _too_big()
    compact += "=" * (-len(compact) % 4)
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("invalid_keystore", "keystore_base64 is not valid base64") from None
    if not data:
        raise InvalidInput("invalid_keystore", "keystore_base64 decodes to an empty keystore")
    if len(data) > MAX_KEYSTORE_BYTES:
        raise _too_big()
    return data


def _too_big() -> InvalidInput:
    return InvalidInput(
        "invalid_keystore", f"The keystore must be at most {MAX_KEYSTORE_BYTES} bytes"
    )


def check_keystore_filename(name: str) -> str:
    """A keystore file name: one path component, no control characters; 400
    ``invalid_input`` otherwise (the runner writes the file under this name)."""
    if len(name) > MAX_FILENAME_CHARS:
        raise InvalidInput(
            "invalid_input", f"keystore_filename must be at most {MAX_FILENAME_CHARS} characters"
        )
    if (
        name in (".", "..")
        or "/" in name
        or "\\" in name
        or any(ord(char) < 32 or ord(char) == 127 for char in name)
    ):
        raise InvalidInput("invalid_input", "keystore_filename must be a single file name")
    return name


def _given(name: str, value: str | None) -> str | None:
    """A text part of a change: None when omitted or blank (the stored value stays)."""
    if value is None or not value.strip():
        return None
    if len(value) > MAX_SECRET_CHARS:
        raise InvalidInput("invalid_input", f"{name} must be at most {MAX_SECRET_CHARS} characters")
    if "\x00" in value:
        raise InvalidInput("invalid_input", f"{name} must not contain NUL")
    return value


@dataclass(frozen=True)
class AndroidProfileChange:
    """A checked change of one profile, in clear: None leaves a part as it is."""

    enabled: bool | None = None
    keystore: bytes | None = field(default=None, repr=False)
    keystore_filename: str | None = None
    store_password: str | None = field(default=None, repr=False)
    key_alias: str | None = field(default=None, repr=False)
    key_password: str | None = field(default=None, repr=False)


def check_android_change(
    *,
    enabled: bool | None = None,
    keystore_filename: str | None = None,
    keystore_base64: str | None = None,
    store_password: str | None = None,
    key_alias: str | None = None,
    key_password: str | None = None,
) -> AndroidProfileChange:
    """The change a request asks for; blank parts count as omitted (contract §8.3)."""
    filename = _given("keystore_filename", keystore_filename)
    encoded = keystore_base64 if keystore_base64 and keystore_base64.strip() else None
    return AndroidProfileChange(
        enabled=enabled,
        keystore=None if encoded is None else decode_keystore(encoded),
        keystore_filename=None if filename is None else check_keystore_filename(filename.strip()),
        store_password=_given("store_password", store_password),
        key_alias=_given("key_alias", key_alias),
        key_password=_given("key_password", key_password),
    )


@dataclass(frozen=True)
class SealedAndroidProfile:
    """One stored profile: the secret parts sealed (encrypted), None when never given."""

    pipeline_id: str
    build_type: AndroidBuildType
    enabled: bool
    keystore_filename: str | None
    keystore_sealed: str | None = field(repr=False)
    keystore_checksum: str | None
    store_password_sealed: str | None = field(repr=False)
    key_alias_sealed: str | None = field(repr=False)
    key_password_sealed: str | None = field(repr=False)
    updated_at: int

    @property
    def missing(self) -> list[str]:
        """The parts an enabled profile needs that this one lacks."""
        parts = {
            "keystore_filename": self.keystore_filename,
            "keystore_base64": self.keystore_sealed,
            "store_password": self.store_password_sealed,
            "key_alias": self.key_alias_sealed,
            "key_password": self.key_password_sealed,
        }
        return [name for name, value in parts.items() if value is None]


def apply_android_change(
    current: SealedAndroidProfile | None,
    pipeline_id: str,
    build_type: AndroidBuildType,
    change: AndroidProfileChange,
    seal: Callable[[str], str],
    now: int,
) -> SealedAndroidProfile:
    """``current`` (None: never saved) with ``change`` applied, its new parts sealed with
    ``seal``; 400 ``incomplete_signing_profile`` if it ends up enabled without all parts."""
    profile = current or SealedAndroidProfile(
        pipeline_id, build_type, False, None, None, None, None, None, None, now
    )
    updates: dict[str, Any] = {"updated_at": now}
    if change.enabled is not None:
        updates["enabled"] = change.enabled
    if change.keystore is not None:
        updates["keystore_sealed"] = seal(base64.b64encode(change.keystore).decode("ascii"))
        updates["keystore_checksum"] = keystore_checksum(change.keystore)
        if profile.keystore_filename is None and change.keystore_filename is None:
            updates["keystore_filename"] = default_keystore_filename(build_type)
    if change.keystore_filename is not None:
        updates["keystore_filename"] = change.keystore_filename
    for part in ("store_password", "key_alias", "key_password"):
        value = getattr(change, part)
        if value is not None:
            updates[f"{part}_sealed"] = seal(value)
    changed = replace(profile, **updates)
    if changed.enabled and changed.missing:
        raise InvalidInput(
            "incomplete_signing_profile",
            f"The {build_type} signing profile cannot be enabled without "
            + ", ".join(changed.missing),
        )
    return changed


@dataclass(frozen=True)
class AndroidProfileView:
    """A profile as the API shows it: the key alias in clear, the rest only as flags."""

    build_type: AndroidBuildType
    enabled: bool = False
    keystore_filename: str | None = None
    keystore_checksum: str | None = None
    key_alias: str | None = None
    has_keystore: bool = False
    has_store_password: bool = False
    has_key_password: bool = False
    updated_at: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "build_type": self.build_type,
            "enabled": self.enabled,
            "has_keystore": self.has_keystore,
            "has_store_password": self.has_store_password,
            "has_key_password": self.has_key_password,
        }
        optional = {
            "keystore_filename": self.keystore_filename,
            "keystore_checksum": self.keystore_checksum,
            "key_alias": self.key_alias,
            "updated_at": self.updated_at,
        }
        out.update((key, value) for key, value in optional.items() if value is not None)
        return out


@dataclass(frozen=True)
class AndroidSigningMaterial:
    """An enabled profile in clear, as the runner holding a build receives it."""

    build_type: AndroidBuildType
    keystore_filename: str
    keystore_base64: str = field(repr=False)
    store_password: str = field(repr=False)
    key_alias: str = field(repr=False)
    key_password: str = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "build_type": self.build_type,
            "enabled": True,
            "keystore_filename": self.keystore_filename,
            "keystore_base64": self.keystore_base64,
            "store_password": self.store_password,
            "key_alias": self.key_alias,
            "key_password": self.key_password,
        }

    @property
    def secrets(self) -> tuple[str, str]:
        """The values a build's log must never show."""
        return self.store_password, self.key_password


def parse_android_material(data: object) -> list[AndroidSigningMaterial] | None:
    """The profiles of a runner's ``android-signing`` answer; None when malformed."""
    if not isinstance(data, dict):
        return None
    found: list[AndroidSigningMaterial] = []
    for build_type in ANDROID_BUILD_TYPES:
        entry = data.get(build_type)
        if entry is None:
            continue
        if not isinstance(entry, dict) or entry.get("enabled") is not True:
            return None
        texts = [
            entry.get(key)
            for key in (
                "keystore_filename",
                "keystore_base64",
                "store_password",
                "key_alias",
                "key_password",
            )
        ]
        if not all(isinstance(text, str) and text for text in texts):
            return None
        filename, keystore, store_password, alias, key_password = (str(t) for t in texts)
        try:
            check_keystore_filename(filename)
        except InvalidInput:
            return None
        found.append(
            AndroidSigningMaterial(
                build_type, filename, keystore, store_password, alias, key_password
            )
        )
    return found


def android_env_prefix(build_type: str) -> str:
    return f"OORE_ANDROID_{build_type.upper()}_"


def android_env(material: AndroidSigningMaterial, keystore_path: str) -> Mapping[str, str]:
    """The environment variables a build gets for one enabled profile."""
    prefix = android_env_prefix(material.build_type)
    return {
        f"{prefix}KEYSTORE_PATH": keystore_path,
        f"{prefix}STORE_PASSWORD": material.store_password,
        f"{prefix}KEY_ALIAS": material.key_alias,
        f"{prefix}KEY_PASSWORD": material.key_password,
    }
