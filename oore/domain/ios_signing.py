"""iOS signing of a pipeline (contract §8.3): the rules, with no I/O.

A pipeline's iOS signing holds a mode (``manual``: a P12 certificate and one provisioning
profile per bundle id uploaded by hand; ``api``: an App Store Connect API key fetches the
profiles; ``hybrid``: both), the team id, the bundle ids, the export method and the
material. Binary material travels as standard base64 (padded or not) and is kept
re-encoded, with a SHA-256 checksum; every secret is encrypted by the caller before it is
stored. An update names only what changes: omitted or blank values keep the stored ones.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import plistlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal
from xml.parsers.expat import ExpatError

from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from oore.errors import InvalidInput

Mode = Literal["manual", "api", "hybrid"]
MODES: tuple[Mode, ...] = ("manual", "api", "hybrid")
EXPORT_METHODS = ("ad_hoc", "app_store", "development", "enterprise")
DEFAULT_MODE: Mode = "manual"
DEFAULT_EXPORT_METHOD = "ad_hoc"
DEFAULT_P12_FILENAME = "certificate.p12"
PROFILE_SUFFIX = ".mobileprovision"

MIB = 1024 * 1024
MAX_REQUEST_BYTES = 10 * MIB
MAX_P12_BYTES = 2 * MIB
MAX_PROFILE_BYTES = 2 * MIB
MAX_API_KEY_BYTES = 16 * 1024
MAX_TEAM_ID = 32
MAX_BUNDLE_IDS = 32
MAX_PROFILES = 32
MAX_BUNDLE_ID = 255
MAX_FILENAME = 255
MAX_PASSWORD = 1024
MAX_KEY_ID = 64
MAX_ISSUER_ID = 64
MAX_DEVICE_NAME = 128
MAX_UDID = 64
DEVICE_PLATFORMS = ("IOS", "MAC_OS")

_TEAM_ID = re.compile(r"^[A-Za-z0-9]+$")
_BUNDLE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]*$")
_KEY_ID = re.compile(r"^[A-Za-z0-9\-]+$")
_UDID = re.compile(r"^[A-Za-z0-9\-]+$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What reading a damaged plist may raise (the XML parser has its own error type).
_UNREADABLE = (
    plistlib.InvalidFileException,
    ExpatError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
)


def incomplete(missing: Iterable[str], mode: str) -> InvalidInput:
    """400 ``incomplete_signing_profile`` naming what the mode still needs."""
    return InvalidInput(
        "incomplete_signing_profile",
        f"iOS signing in {mode} mode needs: {', '.join(missing)}",
    )


# -- single values -----------------------------------------------------------------------


def decode_base64(value: str, what: str, limit: int) -> bytes:
    """The bytes of standard base64 (padded or not, whitespace ignored); 400
    ``invalid_input`` when it is not base64, empty, or decodes to more than ``limit``."""
    text = "".join(value.split())
    if len(text) > (limit + 2) // 3 * 4 + 4:
        raise InvalidInput("invalid_input", f"{what} is larger than {limit} bytes")
    if not _BASE64.match(text) or len(text) % 4 == 1:
        raise InvalidInput("invalid_input", f"{what} is not valid base64")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("invalid_input", f"{what} is not valid base64") from None
    if not raw:
        raise InvalidInput("invalid_input", f"{what} is empty")
    if len(raw) > limit:
        raise InvalidInput("invalid_input", f"{what} is larger than {limit} bytes")
    return raw


def encode(raw: bytes) -> str:
    """Standard padded base64, the stored and served form of binary material."""
    return base64.b64encode(raw).decode("ascii")


def checksum(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def check_filename(value: str, what: str) -> str:
    """A file name of one path component; 400 ``invalid_filename`` otherwise."""
    name = value.strip()
    if (
        not name
        or len(name) > MAX_FILENAME
        or "/" in name
        or "\\" in name
        or name in (".", "..")
        or _CONTROL.search(name)
    ):
        raise InvalidInput("invalid_filename", f"{what} must be a file name without directories")
    return name


def check_team_id(value: str) -> str:
    team = value.strip()
    if not team or len(team) > MAX_TEAM_ID or not _TEAM_ID.match(team):
        raise InvalidInput(
            "invalid_input", f"team_id must be 1 to {MAX_TEAM_ID} letters and digits"
        )
    return team


def check_bundle_id(value: str, what: str = "bundle id") -> str:
    bundle = value.strip()
    if not bundle or len(bundle) > MAX_BUNDLE_ID or not _BUNDLE_ID.match(bundle):
        raise InvalidInput(
            "invalid_input",
            f"{what} {value[:64]!r} must look like com.example.app (letters, digits, . and -)",
        )
    return bundle


def check_bundle_ids(values: Iterable[str]) -> tuple[str, ...]:
    found = [check_bundle_id(value) for value in values]
    if len(found) > MAX_BUNDLE_IDS:
        raise InvalidInput("invalid_input", f"At most {MAX_BUNDLE_IDS} bundle ids")
    if len(set(found)) != len(found):
        raise InvalidInput("invalid_input", "bundle_ids must not repeat")
    return tuple(found)


def check_mode(value: str) -> Mode:
    for mode in MODES:
        if value == mode:
            return mode
    raise InvalidInput("invalid_input", f"mode must be one of {', '.join(MODES)}")


def check_export_method(value: str) -> str:
    if value not in EXPORT_METHODS:
        raise InvalidInput(
            "invalid_input", f"export_method must be one of {', '.join(EXPORT_METHODS)}"
        )
    return value


def _check_identifier(value: str, what: str, limit: int) -> str:
    text = value.strip()
    if not text or len(text) > limit or not _KEY_ID.match(text):
        raise InvalidInput(
            "invalid_input", f"{what} must be 1 to {limit} letters, digits and dashes"
        )
    return text


def check_api_private_key(value: str) -> str:
    """The App Store Connect key (a ``.p8`` file: PEM of an EC P-256 private key), given as
    base64 of the file or as the PEM itself; answers the PEM text."""
    text = value.strip()
    if text.startswith("-----BEGIN"):
        if len(text) > MAX_API_KEY_BYTES:
            raise InvalidInput(
                "invalid_input", f"api_key.private_key is larger than {MAX_API_KEY_BYTES} bytes"
            )
        pem = text.encode("utf-8", "replace")
    else:
        pem = decode_base64(text, "api_key.private_key_base64", MAX_API_KEY_BYTES)
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, EllipticCurvePrivateKey) or not isinstance(key.curve, SECP256R1):
        raise InvalidInput(
            "invalid_input",
            "api_key.private_key_base64 must be an App Store Connect key (.p8, EC P-256 PEM)",
        )
    return pem.decode("ascii", "replace").strip() + "\n"


# -- provisioning profiles ---------------------------------------------------------------


@dataclass(frozen=True)
class ProfileFacts:
    """What a provisioning profile says about itself, when its plist can be read."""

    uuid: str | None = None
    name: str | None = None
    expires_at: int | None = None


def profile_facts(raw: bytes) -> ProfileFacts:
    """UUID, name and expiry from a ``.mobileprovision`` (a CMS-signed plist): the XML
    plist embedded in it is read as is; anything unreadable gives empty facts."""
    start = raw.find(b"<?xml")
    end = raw.find(b"</plist>", start if start >= 0 else 0)
    if start < 0 or end < 0:
        return ProfileFacts()
    try:
        plist = plistlib.loads(raw[start : end + len(b"</plist>")])
    except _UNREADABLE:
        return ProfileFacts()
    if not isinstance(plist, dict):
        return ProfileFacts()
    uuid, name, expiry = plist.get("UUID"), plist.get("Name"), plist.get("ExpirationDate")
    return ProfileFacts(
        uuid=uuid[:128] if isinstance(uuid, str) and uuid else None,
        name=name[:256] if isinstance(name, str) and name else None,
        expires_at=_unix(expiry) if isinstance(expiry, datetime) else None,
    )


def _unix(moment: datetime) -> int | None:
    """Unix seconds of a plist date (plistlib gives naive datetimes in UTC)."""
    try:
        aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return int(aware.timestamp())
    except (OverflowError, ValueError, OSError):
        return None


@dataclass(frozen=True)
class StoredProfile:
    """A provisioning profile as kept: its content encrypted (base64 inside)."""

    bundle_id: str
    profile_filename: str
    profile_encrypted: str
    checksum: str
    profile_uuid: str | None = None
    profile_name: str | None = None
    expires_at: int | None = None
    updated_at: int = 0

    def to_json(self) -> dict[str, Any]:
        """The API view: no content; unknown facts omitted."""
        out: dict[str, Any] = {
            "bundle_id": self.bundle_id,
            "profile_filename": self.profile_filename,
            "checksum": self.checksum,
        }
        if self.profile_uuid is not None:
            out["profile_uuid"] = self.profile_uuid
        if self.profile_name is not None:
            out["profile_name"] = self.profile_name
        if self.expires_at is not None:
            out["expires_at"] = self.expires_at
        return out


# -- the whole configuration -------------------------------------------------------------


@dataclass(frozen=True)
class IosSigningState:
    """A pipeline's iOS signing as stored; ``*_encrypted`` fields hold sealed text."""

    pipeline_id: str
    enabled: bool = False
    mode: Mode = DEFAULT_MODE
    team_id: str | None = None
    export_method: str = DEFAULT_EXPORT_METHOD
    bundle_ids: tuple[str, ...] = ()
    p12_filename: str | None = None
    p12_encrypted: str | None = None
    p12_checksum: str | None = None
    p12_password_encrypted: str | None = None
    api_key_id: str | None = None
    api_issuer_id: str | None = None
    api_private_key_encrypted: str | None = None
    profiles: tuple[StoredProfile, ...] = ()
    last_synced_at: int | None = None
    updated_at: int | None = None

    @property
    def has_api_key(self) -> bool:
        return bool(self.api_key_id and self.api_issuer_id and self.api_private_key_encrypted)

    def profile_for(self, bundle_id: str) -> StoredProfile | None:
        return next((p for p in self.profiles if p.bundle_id == bundle_id), None)

    def missing(self) -> list[str]:
        """What the mode still needs before signing can be enabled."""
        needs: list[str] = []
        if not self.team_id:
            needs.append("team_id")
        if self.mode in ("manual", "hybrid"):
            if not self.p12_encrypted:
                needs.append("p12")
            if not self.p12_password_encrypted:
                needs.append("p12_password")
            if not self.bundle_ids:
                needs.append("bundle_ids")
            absent = [b for b in self.bundle_ids if self.profile_for(b) is None]
            if absent:
                needs.append(f"a provisioning profile for {', '.join(absent)}")
        if self.mode in ("api", "hybrid"):
            if not self.has_api_key:
                needs.append("api_key (key_id, issuer_id, private_key_base64)")
            if not self.bundle_ids and "bundle_ids" not in needs:
                needs.append("bundle_ids")
        return needs

    def to_json(self) -> dict[str, Any]:
        """The API view (GET/PUT): flags for secrets, never their values; unset fields omitted."""
        out: dict[str, Any] = {
            "pipeline_id": self.pipeline_id,
            "enabled": self.enabled,
            "mode": self.mode,
            "export_method": self.export_method,
            "bundle_ids": list(self.bundle_ids),
            "has_p12": self.p12_encrypted is not None,
            "has_p12_password": self.p12_password_encrypted is not None,
            "provisioning_profiles": [profile.to_json() for profile in self.profiles],
            "has_api_key": self.has_api_key,
        }
        optional = {
            "team_id": self.team_id,
            "p12_filename": self.p12_filename,
            "p12_checksum": self.p12_checksum,
            "api_key_id": self.api_key_id,
            "api_issuer_id": self.api_issuer_id,
            "last_synced_at": self.last_synced_at,
            "updated_at": self.updated_at,
        }
        out.update({key: value for key, value in optional.items() if value is not None})
        return out


def _text(value: object) -> str | None:
    """A given, non-blank string; None for absent or blank (which keep stored values)."""
    return value if isinstance(value, str) and value.strip() else None


@dataclass(frozen=True)
class ProfileUpload:
    bundle_id: str
    profile_filename: str
    raw: bytes


@dataclass(frozen=True)
class IosSigningUpdate:
    """A checked PUT body: None keeps the stored value. Secrets are still in clear here."""

    enabled: bool | None = None
    mode: Mode | None = None
    team_id: str | None = None
    export_method: str | None = None
    bundle_ids: tuple[str, ...] | None = None
    p12_filename: str | None = None
    p12: bytes | None = None
    p12_password: str | None = None
    profiles: tuple[ProfileUpload, ...] = ()
    api_key_id: str | None = None
    api_issuer_id: str | None = None
    api_private_key: str | None = None

    def changed(self) -> list[str]:
        """The names of the parts this update sets (for the audit log; no values)."""
        names = {
            "enabled": self.enabled,
            "mode": self.mode,
            "team_id": self.team_id,
            "export_method": self.export_method,
            "bundle_ids": self.bundle_ids,
            "p12_filename": self.p12_filename,
            "p12": self.p12,
            "p12_password": self.p12_password,
            "api_key_id": self.api_key_id,
            "api_issuer_id": self.api_issuer_id,
            "api_private_key": self.api_private_key,
        }
        found = [name for name, value in names.items() if value is not None]
        if self.profiles:
            found.append("provisioning_profiles")
        return found


def _section(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    found = body.get(key)
    return found if isinstance(found, Mapping) else {}


def check_update(body: Mapping[str, Any]) -> IosSigningUpdate:
    """The PUT body (already shaped by the route's model) checked value by value."""
    mode = _text(body.get("mode"))
    team = _text(body.get("team_id"))
    export = _text(body.get("export_method"))
    bundles = body.get("bundle_ids")
    p12 = _section(body, "p12")
    api_key = _section(body, "api_key")
    p12_filename = _text(p12.get("p12_filename"))
    p12_base64 = _text(p12.get("p12_base64"))
    p12_password = p12.get("p12_password")
    if isinstance(p12_password, str) and len(p12_password) > MAX_PASSWORD:
        raise InvalidInput("invalid_input", f"p12_password is longer than {MAX_PASSWORD}")
    uploads = body.get("provisioning_profiles")
    profiles: list[ProfileUpload] = []
    if isinstance(uploads, list):
        if len(uploads) > MAX_PROFILES:
            raise InvalidInput("invalid_input", f"At most {MAX_PROFILES} provisioning profiles")
        for item in uploads:
            bundle = check_bundle_id(str(item.get("bundle_id", "")), "profile bundle id")
            name = check_filename(str(item.get("profile_filename", "")), "profile_filename")
            raw = decode_base64(
                str(item.get("profile_base64", "")),
                f"profile_base64 of {bundle}",
                MAX_PROFILE_BYTES,
            )
            profiles.append(ProfileUpload(bundle, name, raw))
        if len({p.bundle_id for p in profiles}) != len(profiles):
            raise InvalidInput("invalid_input", "One provisioning profile per bundle id")
    key_id = _text(api_key.get("key_id"))
    issuer = _text(api_key.get("issuer_id"))
    private = _text(api_key.get("private_key_base64"))
    enabled = body.get("enabled")
    return IosSigningUpdate(
        enabled=enabled if isinstance(enabled, bool) else None,
        mode=None if mode is None else check_mode(mode.strip()),
        team_id=None if team is None else check_team_id(team),
        export_method=None if export is None else check_export_method(export.strip()),
        bundle_ids=check_bundle_ids(bundles) if isinstance(bundles, list) else None,
        p12_filename=None if p12_filename is None else check_filename(p12_filename, "p12_filename"),
        p12=None if p12_base64 is None else decode_base64(p12_base64, "p12_base64", MAX_P12_BYTES),
        p12_password=p12_password if isinstance(p12_password, str) and p12_password else None,
        profiles=tuple(profiles),
        api_key_id=None if key_id is None else _check_identifier(key_id, "key_id", MAX_KEY_ID),
        api_issuer_id=(
            None if issuer is None else _check_identifier(issuer, "issuer_id", MAX_ISSUER_ID)
        ),
        api_private_key=None if private is None else check_api_private_key(private),
    )


def apply_update(
    current: IosSigningState,
    update: IosSigningUpdate,
    seal: Callable[[str], str],
    now: int,
) -> IosSigningState:
    """The state after ``update``; ``seal`` encrypts a secret for storage.

    Profiles given are put in place of the stored one of their bundle id; when the bundle
    ids change, profiles of bundle ids no longer listed go. A profile must belong to a
    listed bundle id (400 ``invalid_input``); enabled signing must be complete (400
    ``incomplete_signing_profile``)."""
    state = replace(
        current,
        enabled=current.enabled if update.enabled is None else update.enabled,
        mode=update.mode or current.mode,
        team_id=update.team_id or current.team_id,
        export_method=update.export_method or current.export_method,
        bundle_ids=current.bundle_ids if update.bundle_ids is None else update.bundle_ids,
        updated_at=now,
    )
    if update.p12 is not None:
        state = replace(
            state,
            p12_encrypted=seal(encode(update.p12)),
            p12_checksum=checksum(update.p12),
            p12_filename=update.p12_filename or state.p12_filename or DEFAULT_P12_FILENAME,
        )
    elif update.p12_filename is not None:
        state = replace(state, p12_filename=update.p12_filename)
    if update.p12_password is not None:
        state = replace(state, p12_password_encrypted=seal(update.p12_password))
    if update.api_private_key is not None:
        state = replace(state, api_private_key_encrypted=seal(update.api_private_key))
    state = replace(
        state,
        api_key_id=update.api_key_id or state.api_key_id,
        api_issuer_id=update.api_issuer_id or state.api_issuer_id,
    )
    strays = [p.bundle_id for p in update.profiles if p.bundle_id not in state.bundle_ids]
    if strays:
        raise InvalidInput(
            "invalid_input",
            f"Provisioning profiles for bundle ids not in bundle_ids: {', '.join(strays)}",
        )
    uploaded = [
        StoredProfile(
            bundle_id=p.bundle_id,
            profile_filename=p.profile_filename,
            profile_encrypted=seal(encode(p.raw)),
            checksum=checksum(p.raw),
            profile_uuid=facts.uuid,
            profile_name=facts.name,
            expires_at=facts.expires_at,
            updated_at=now,
        )
        for p in update.profiles
        for facts in (profile_facts(p.raw),)
    ]
    state = with_profiles(state, uploaded)
    if state.enabled:
        needs = state.missing()
        if needs:
            raise incomplete(needs, state.mode)
    return state


def with_profiles(state: IosSigningState, profiles: Iterable[StoredProfile]) -> IosSigningState:
    """``profiles`` in place of the stored ones of their bundle ids; profiles of bundle ids
    no longer listed dropped; in the order of the bundle ids."""
    merged = {p.bundle_id: p for p in state.profiles}
    merged.update({p.bundle_id: p for p in profiles})
    ordered = tuple(merged[b] for b in state.bundle_ids if b in merged)
    return replace(state, profiles=ordered)


# -- devices -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NewDevice:
    name: str
    udid: str
    platform: str


def check_device(name: str, udid: str, platform: str | None) -> NewDevice:
    """A device to register; 400 ``invalid_input`` for a blank or long name or UDID."""
    clean = name.strip()
    if not clean or len(clean) > MAX_DEVICE_NAME or _CONTROL.search(clean):
        raise InvalidInput(
            "invalid_input", f"name must be 1 to {MAX_DEVICE_NAME} printable characters"
        )
    udid = udid.strip()
    if not udid or len(udid) > MAX_UDID or not _UDID.match(udid):
        raise InvalidInput(
            "invalid_input", f"udid must be 1 to {MAX_UDID} letters, digits and dashes"
        )
    chosen = (platform or "IOS").strip().upper()
    if chosen not in DEVICE_PLATFORMS:
        raise InvalidInput(
            "invalid_input", f"platform must be one of {', '.join(DEVICE_PLATFORMS)}"
        )
    return NewDevice(clean, udid, chosen)
