"""Scoped download tokens and install links for artifacts (contract §0.2, §7.2).

A scoped token is a bearer URL (``/install/artifact/<token>``) that redirects to a fresh
15-minute storage URL; an install token is the same kind of row made for an install link
(at most one hour, never past the artifact's expiry). Both are kept only as hashes.
"""

from __future__ import annotations

import plistlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlsplit

from oore.domain.artifacts import Artifact, ArtifactType
from oore.errors import InvalidInput, PreconditionFailed, Unauthorized, Unprocessable

SCOPED_DEFAULT_TTL = 86400
SCOPED_MIN_TTL = 60
SCOPED_MAX_TTL = 7 * 86400
INSTALL_MAX_TTL = 3600
PREFIX_CHARS = 8
REDEEM_PATH = "/install/artifact/"
IOS_MANIFEST_PATH = "/install/ios/{token}/manifest.plist"
# The keys of ``metadata.ios_app`` read for each manifest value, first found wins: oore's
# own names, then the names oored-format runners and Info.plist use.
IOS_BUNDLE_ID_KEYS = ("bundle_id", "bundle_identifier", "CFBundleIdentifier")
IOS_VERSION_KEYS = (
    "bundle_version",
    "bundle_short_version",
    "version",
    "short_version",
    "CFBundleShortVersionString",
    "CFBundleVersion",
)
IOS_TITLE_KEYS = (
    "title",
    "display_name",
    "name",
    "app_name",
    "CFBundleDisplayName",
    "CFBundleName",
)


class TokenKind(StrEnum):
    DOWNLOAD = "download"
    INSTALL = "install"


class Platform(StrEnum):
    ANDROID = "android"
    IOS = "ios"


@dataclass(frozen=True)
class ArtifactToken:
    """One row of ``artifact_download_tokens`` (the token itself is never kept)."""

    id: str
    artifact_id: str
    kind: TokenKind
    prefix: str
    created_by: str | None
    created_by_email: str | None
    single_use: bool
    expires_at: int
    used_at: int | None
    revoked_at: int | None
    created_at: int

    def usable(self, now: int) -> bool:
        """Not expired, not revoked, and not a used single-use token."""
        used_up = self.single_use and self.used_at is not None
        return self.expires_at > now and self.revoked_at is None and not used_up

    def to_json(self, now: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "artifact_id": self.artifact_id,
            "prefix": self.prefix,
            "created_by": self.created_by,
            "created_by_email": self.created_by_email,
            "expires_at": self.expires_at,
            "single_use": self.single_use,
        }
        if self.used_at is not None:
            body["used_at"] = self.used_at
        if self.revoked_at is not None:
            body["revoked_at"] = self.revoked_at
        body |= {
            "is_expired": self.expires_at <= now,
            "is_used": self.used_at is not None,
            "is_revoked": self.revoked_at is not None,
            "created_at": self.created_at,
        }
        return body


def invalid_token() -> Unauthorized:
    return Unauthorized("invalid_token", "The link is invalid, expired, revoked or used")


def check_scoped_ttl(ttl_secs: int | None) -> int:
    """The token lifetime: 24 h by default; 400 ``validation_error`` outside 60 s..7 d."""
    if ttl_secs is None:
        return SCOPED_DEFAULT_TTL
    if not SCOPED_MIN_TTL <= ttl_secs <= SCOPED_MAX_TTL:
        raise InvalidInput(
            "validation_error", f"ttl_secs must be {SCOPED_MIN_TTL}..{SCOPED_MAX_TTL}"
        )
    return ttl_secs


def install_ttl(artifact: Artifact, now: int) -> int:
    """An install token lives at most an hour and never past the artifact's expiry."""
    if artifact.expires_at is None:
        return INSTALL_MAX_TTL
    return max(0, min(INSTALL_MAX_TTL, artifact.expires_at - now))


def platform_of(artifact: Artifact) -> Platform:
    """apk → android, ipa → ios; 422 ``artifact_not_installable`` for anything else."""
    if artifact.artifact_type is ArtifactType.APK:
        return Platform.ANDROID
    if artifact.artifact_type is ArtifactType.IPA:
        return Platform.IOS
    raise Unprocessable("artifact_not_installable", "Only apk and ipa artifacts can be installed")


def install_base(delivery_url: str | None, public_url: str | None) -> str:
    """The external base of install links: the delivery URL, else the public URL.

    412 ``external_access_required`` when neither is set, ``external_access_invalid``
    when the one in use is not an http(s) URL with a host and without credentials.
    """
    chosen = (delivery_url or "").strip() or (public_url or "").strip()
    if not chosen:
        raise PreconditionFailed(
            "external_access_required",
            "Install links need an artifact delivery URL or a public URL",
        )
    try:
        parts = urlsplit(chosen)
        _ = parts.port  # a port that is not a number raises here
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        valid = valid and parts.username is None and parts.password is None
    except ValueError:
        valid = False
    if not valid:
        raise PreconditionFailed(
            "external_access_invalid", "The external access URL is not a usable http(s) URL"
        )
    return chosen.rstrip("/")


def require_https(base: str) -> None:
    """412 ``ios_install_requires_https``: iOS installs only over https."""
    if urlsplit(base).scheme != "https":
        raise PreconditionFailed(
            "ios_install_requires_https", "iOS installs need an https external URL"
        )


@dataclass(frozen=True)
class IosApp:
    """What an itms-services manifest needs, from ``metadata.ios_app``."""

    bundle_id: str
    bundle_version: str
    title: str


def _first_text(app: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first of ``keys`` holding a non-blank string, trimmed."""
    for key in keys:
        value = app.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def ios_app_of(artifact: Artifact) -> IosApp:
    """``metadata.ios_app`` with a non-blank bundle id, version and title, each under the
    first of its keys that holds one (:data:`IOS_BUNDLE_ID_KEYS`, :data:`IOS_VERSION_KEYS`,
    :data:`IOS_TITLE_KEYS`); 422 ``ios_artifact_not_installable`` otherwise."""
    metadata = artifact.metadata
    app = metadata.get("ios_app") if isinstance(metadata, dict) else None
    found = (
        [_first_text(app, keys) for keys in (IOS_BUNDLE_ID_KEYS, IOS_VERSION_KEYS, IOS_TITLE_KEYS)]
        if isinstance(app, dict)
        else [None, None, None]
    )
    bundle_id, bundle_version, title = found
    if bundle_id is None or bundle_version is None or title is None:
        raise Unprocessable(
            "ios_artifact_not_installable",
            "metadata.ios_app needs a bundle id (bundle_id), a version (bundle_version) "
            "and a title (title)",
        )
    return IosApp(bundle_id, bundle_version, title)


def redeem_url(base: str, token: str) -> str:
    return f"{base}{REDEEM_PATH}{token}"


def manifest_url(base: str, token: str) -> str:
    return base + IOS_MANIFEST_PATH.format(token=token)


def itms_services_url(manifest: str) -> str:
    return f"itms-services://?action=download-manifest&url={quote(manifest, safe='')}"


def ios_manifest(app: IosApp, download_url: str) -> bytes:
    """The over-the-air install manifest (an XML property list) for one ipa."""
    manifest = {
        "items": [
            {
                "assets": [{"kind": "software-package", "url": download_url}],
                "metadata": {
                    "bundle-identifier": app.bundle_id,
                    "bundle-version": app.bundle_version,
                    "kind": "software",
                    "title": app.title,
                },
            }
        ]
    }
    return plistlib.dumps(manifest, fmt=plistlib.FMT_XML, sort_keys=True)
