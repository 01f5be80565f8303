"""THE one client for Apple's App Store Connect API (contract §8.3).

Every call is signed with a fresh ES256 token made from the pipeline's API key (``kid``
the key id, ``iss`` the issuer id, ``aud`` ``appstoreconnect-v1``, 15 minutes: Apple
refuses more than 20), goes to the base URL of :class:`AppleConfig` (the daemon reads
``OORE_APP_STORE_CONNECT_API_BASE_URL``; tests point it at loopback) with a 15 s timeout,
no redirects and a bounded answer. Any failure (unreachable, a status other than the one
expected, an answer that is not the documented JSON) is 502 ``apple_api_error`` carrying
Apple's own error title and detail; the key never appears in a message or a log line.
Apple's 409 on device registration is 409 ``device_already_registered``.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from oore.domain.ios_signing import NewDevice
from oore.domain.json_input import JsonInputError, decode_json
from oore.errors import BadGateway, Conflict

DEFAULT_BASE_URL = "https://api.appstoreconnect.apple.com"
APPLE_TIMEOUT = 15.0
TOKEN_LIFETIME = 15 * 60
TOKEN_AUDIENCE = "appstoreconnect-v1"
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
PAGE_LIMIT = 200
MAX_PAGES = 20
MAX_DETAIL = 500

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppleConfig:
    """Where App Store Connect is, and how long one call may take (seconds)."""

    base_url: str = DEFAULT_BASE_URL
    timeout: float = APPLE_TIMEOUT


@dataclass(frozen=True)
class AppleKey:
    """An App Store Connect API key; its PEM never shows in a repr."""

    key_id: str
    issuer_id: str
    private_key_pem: str = field(repr=False)


class AppleApiError(BadGateway):
    """App Store Connect failed, could not be reached, or answered something unusable."""

    default_code = "apple_api_error"
    default_message = "App Store Connect failed"


class DeviceAlreadyRegistered(Conflict):
    """Apple already knows a device with this UDID."""

    default_code = "device_already_registered"
    default_message = "This device is already registered with Apple"


@dataclass(frozen=True)
class AppleProfile:
    """A provisioning profile as App Store Connect lists it."""

    id: str
    name: str | None
    uuid: str | None
    profile_type: str | None
    state: str | None
    expires_at: int | None
    created_at: int | None
    content_base64: str | None


@dataclass(frozen=True)
class AppleDevice:
    """A registered device: ``{id, name, udid, platform, status, model?}`` on the wire."""

    id: str
    name: str
    udid: str
    platform: str
    status: str
    model: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "udid": self.udid,
            "platform": self.platform,
            "status": self.status,
        }
        if self.model is not None:
            out["model"] = self.model
        return out


def api_token(key: AppleKey, now: int) -> str:
    """The bearer token App Store Connect expects, signed with the API key (ES256)."""
    try:
        signing_key = ECKey.import_key(key.private_key_pem)
        return jwt.encode(
            {"alg": "ES256", "kid": key.key_id, "typ": "JWT"},
            {
                "iss": key.issuer_id,
                "iat": now,
                "exp": now + TOKEN_LIFETIME,
                "aud": TOKEN_AUDIENCE,
            },
            signing_key,
        )
    except (JoseError, ValueError, TypeError) as exc:
        log.warning("App Store Connect key unusable: %s", type(exc).__name__)
        raise AppleApiError(
            "apple_api_error", "The stored App Store Connect API key cannot sign a token"
        ) from None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _moment(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value).timestamp())
    except (ValueError, OverflowError, OSError):
        return None


def _apple_detail(body: Any) -> str:
    """Apple's ``errors[]`` as one line: ``CODE: title — detail``."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return ""
    parts: list[str] = []
    for item in errors[:3]:
        if not isinstance(item, dict):
            continue
        words = [
            text
            for text in (_text(item.get("title")), _text(item.get("detail")))
            if text is not None
        ]
        code = _text(item.get("code"))
        line = " — ".join(words)
        parts.append(f"{code}: {line}" if code and line else code or line)
    return "; ".join(part for part in parts if part)[:MAX_DETAIL]


def _failed(message: str, cause: object = None) -> AppleApiError:
    if cause is not None:
        log.warning("App Store Connect failure: %s (%s)", message, cause)
    return AppleApiError("apple_api_error", message)


def _resources(body: Any) -> list[dict[str, Any]]:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise _failed("App Store Connect sent an answer without a data list")
    return [item for item in data if isinstance(item, dict)]


def _attributes(item: dict[str, Any]) -> dict[str, Any]:
    found = item.get("attributes")
    return found if isinstance(found, dict) else {}


def _profile(item: dict[str, Any]) -> AppleProfile | None:
    profile_id = _text(item.get("id"))
    if profile_id is None:
        return None
    attrs = _attributes(item)
    return AppleProfile(
        id=profile_id,
        name=_text(attrs.get("name")),
        uuid=_text(attrs.get("uuid")),
        profile_type=_text(attrs.get("profileType")),
        state=_text(attrs.get("profileState")),
        expires_at=_moment(attrs.get("expirationDate")),
        created_at=_moment(attrs.get("createdDate")),
        content_base64=_text(attrs.get("profileContent")),
    )


def _device(item: object) -> AppleDevice | None:
    if not isinstance(item, dict):
        return None
    attrs = _attributes(item)
    device_id, udid = _text(item.get("id")), _text(attrs.get("udid"))
    if device_id is None or udid is None:
        return None
    return AppleDevice(
        id=device_id,
        name=_text(attrs.get("name")) or "",
        udid=udid,
        platform=_text(attrs.get("platform")) or "UNKNOWN",
        status=_text(attrs.get("status")) or "UNKNOWN",
        model=_text(attrs.get("model")),
    )


class AppleSession:
    """Calls made with one API key's token, on one HTTP client."""

    def __init__(self, http: httpx.AsyncClient, config: AppleConfig, token: str) -> None:
        self._http = http
        self._base = config.base_url.rstrip("/")
        self._token = token

    async def _call(self, method: str, target: str, *, expect: int = 200, json: Any = None) -> Any:
        """The decoded JSON answer to ``method target`` (a path, or a full URL of a next
        page under the base URL); 502 on anything else."""
        url = target if target.startswith(self._base + "/") else self._base + target
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        try:
            async with self._http.stream(method, url, headers=headers, json=json) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise _failed("App Store Connect sent too large an answer")
                status = response.status_code
        except httpx.HTTPError as exc:
            raise _failed(
                f"App Store Connect could not be reached ({type(exc).__name__})", exc
            ) from None
        try:
            decoded: Any = decode_json(bytes(body)) if body else None
        except JsonInputError:
            decoded = None
        if status == 409 and method == "POST":
            detail = _apple_detail(decoded)
            raise DeviceAlreadyRegistered(
                "device_already_registered",
                f"Apple refused the device: {detail}" if detail else None,
            )
        if not 200 <= status < 300:
            detail = _apple_detail(decoded)
            message = f"App Store Connect answered HTTP {status}"
            raise _failed(f"{message}: {detail}" if detail else message, target)
        if decoded is None:
            raise _failed("App Store Connect sent an answer that is not JSON", target)
        return decoded

    async def _pages(self, path: str) -> list[dict[str, Any]]:
        """Every resource of a list, following ``links.next`` (within the API, bounded)."""
        found: list[dict[str, Any]] = []
        target: str | None = path
        for _ in range(MAX_PAGES):
            if target is None:
                return found
            body = await self._call("GET", target)
            found.extend(_resources(body))
            links = body.get("links") if isinstance(body, dict) else None
            following = _text(links.get("next")) if isinstance(links, dict) else None
            if following is not None and not following.startswith(self._base + "/"):
                raise _failed("App Store Connect pointed the next page outside its API")
            target = following
        if target is not None:
            raise _failed(f"App Store Connect listed more than {MAX_PAGES} pages")
        return found

    async def bundle_id(self, identifier: str) -> str | None:
        """Apple's resource id of the bundle id ``identifier``, or None when it has none."""
        listed = await self._pages(
            f"/v1/bundleIds?filter[identifier]={quote(identifier, safe='')}&limit={PAGE_LIMIT}"
        )
        for item in listed:
            if _attributes(item).get("identifier") == identifier and _text(item.get("id")):
                return str(item["id"])
        return None

    async def profiles(self, bundle_resource_id: str) -> list[AppleProfile]:
        """The provisioning profiles of a bundle id, with their content."""
        listed = await self._pages(
            f"/v1/bundleIds/{quote(bundle_resource_id, safe='')}/profiles?limit={PAGE_LIMIT}"
        )
        return [found for item in listed if (found := _profile(item)) is not None]

    async def devices(self) -> list[AppleDevice]:
        """Every device registered on the team."""
        listed = await self._pages(f"/v1/devices?limit={PAGE_LIMIT}")
        return [found for item in listed if (found := _device(item)) is not None]

    async def register_device(self, device: NewDevice) -> AppleDevice:
        """Register a device (``POST /v1/devices``); 409 ``device_already_registered``."""
        body = await self._call(
            "POST",
            "/v1/devices",
            json={
                "data": {
                    "type": "devices",
                    "attributes": {
                        "name": device.name,
                        "udid": device.udid,
                        "platform": device.platform,
                    },
                }
            },
        )
        created = _device(body.get("data") if isinstance(body, dict) else None)
        if created is None:
            raise _failed("App Store Connect answered the registration without a device")
        return created


class AppleClient:
    """Opens :class:`AppleSession` s sharing one TLS configuration, built at the first
    session (loading the CA bundle costs tens of milliseconds that a runtime which never
    speaks to Apple need not pay), then kept for the runtime's life."""

    def __init__(self, config: AppleConfig, ssl_context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self._given_ssl = ssl_context
        self._built_ssl: ssl.SSLContext | None = None

    @property
    def _ssl(self) -> ssl.SSLContext:
        if self._given_ssl is not None:
            return self._given_ssl
        if self._built_ssl is None:
            self._built_ssl = httpx.create_ssl_context()
        return self._built_ssl

    @asynccontextmanager
    async def session(self, key: AppleKey, now: int) -> AsyncIterator[AppleSession]:
        """A client for one operation with ``key``; its connections close when it ends."""
        token = api_token(key, now)
        async with httpx.AsyncClient(
            timeout=self.config.timeout, follow_redirects=False, verify=self._ssl
        ) as http:
            yield AppleSession(http, self.config, token)
