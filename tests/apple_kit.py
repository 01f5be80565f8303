"""App Store Connect on loopback: a thread serving the documented JSON:API answers.

The real :class:`oore.services.apple.AppleClient` talks to it with only its base URL
changed. Every request must carry the ES256 token App Store Connect asks for (``kid`` the
key id, ``iss`` the issuer id, ``aud`` ``appstoreconnect-v1``, at most 20 minutes), checked
with the public half of a key made per test; requests are recorded. Tests flip ``fault``:
``"broken"`` (HTTP 500 with Apple's ``errors``), ``"reject"`` (HTTP 401), ``"garbage"``
(200, not JSON), ``"shapeless"`` (200 JSON without ``data``).
"""

from __future__ import annotations

import base64
import json
import plistlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from joserfc import jwt
from joserfc.jwk import ECKey

from oore.services.apple import AppleConfig
from tests.loopback_http import Recorded, recorded, send_answer, serving

KEY_ID = "ABC123DEFG"
ISSUER_ID = "69a6de70-03db-47e3-e053-5b8c7c11a4d1"
TEAM_ID = "TEAM123456"
PAGE_SIZE = 2  # devices are served two a page, to exercise links.next


def new_p8() -> str:
    """A fresh App Store Connect style key: PKCS#8 PEM of an EC P-256 private key."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


def mobileprovision(uuid: str, name: str, expires: int, team: str = TEAM_ID) -> bytes:
    """A provisioning profile as Apple ships it: a plist inside a CMS signature (here,
    binary bytes around the XML stand in for the signature)."""
    plist = plistlib.dumps(
        {
            "UUID": uuid,
            "Name": name,
            "TeamIdentifier": [team],
            "ExpirationDate": datetime.fromtimestamp(expires, UTC).replace(tzinfo=None),
        }
    )
    return b"0\x82\x1f\x10\x06\t*\x86H\x86\xf7\r\x01\x07\x02" + plist + b"\xa0\x82\x0b\x00signed"


def _errors(status: int, code: str, title: str, detail: str) -> dict[str, Any]:
    return {"errors": [{"status": str(status), "code": code, "title": title, "detail": detail}]}


@dataclass
class FakeAppStoreConnect:
    """The team's bundle ids, profiles and devices, and what the fake answers."""

    base: str = ""
    p8: str = field(default_factory=new_p8)
    fault: str | None = None
    # Where links.next points (the fake itself unless a test says otherwise).
    next_base: str | None = None
    requests: list[Recorded] = field(default_factory=list)
    # identifier -> Apple's resource id
    bundle_ids: dict[str, str] = field(default_factory=dict)
    # Apple's bundle resource id -> profiles (JSON:API resources)
    profiles: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    devices: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def config(self) -> AppleConfig:
        return AppleConfig(base_url=self.base, timeout=5.0)

    @property
    def key_base64(self) -> str:
        return base64.b64encode(self.p8.encode()).decode()

    def api_key(self) -> dict[str, str]:
        """The ``api_key`` part of a PUT body for this fake's key."""
        return {"key_id": KEY_ID, "issuer_id": ISSUER_ID, "private_key_base64": self.key_base64}

    def add_bundle(self, identifier: str, resource_id: str) -> None:
        self.bundle_ids[identifier] = resource_id
        self.profiles.setdefault(resource_id, [])

    def add_profile(
        self,
        resource_id: str,
        profile_id: str,
        *,
        content: bytes,
        profile_type: str = "IOS_APP_ADHOC",
        state: str = "ACTIVE",
        expires: int,
        created: int = 1_790_000_000,
        name: str = "profile",
        uuid: str = "",
    ) -> None:
        def iso(moment: int) -> str:
            return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")

        self.profiles.setdefault(resource_id, []).append(
            {
                "type": "profiles",
                "id": profile_id,
                "attributes": {
                    "name": name,
                    "platform": "IOS",
                    "profileContent": base64.b64encode(content).decode(),
                    "uuid": uuid or profile_id,
                    "createdDate": iso(created),
                    "profileState": state,
                    "profileType": profile_type,
                    "expirationDate": iso(expires),
                },
            }
        )

    def add_device(self, device_id: str, name: str, udid: str, model: str | None = None) -> None:
        attributes: dict[str, Any] = {
            "name": name,
            "udid": udid,
            "platform": "IOS",
            "status": "ENABLED",
            "deviceClass": "IPHONE",
            "addedDate": "2026-01-01T00:00:00.000+0000",
        }
        if model is not None:
            attributes["model"] = model
        self.devices.append({"type": "devices", "id": device_id, "attributes": attributes})

    def claims(self, request: Recorded) -> tuple[dict[str, Any], dict[str, Any]]:
        """The verified header and claims of the token a request carried."""
        header = request.headers.get("authorization", "")
        assert header.startswith("Bearer "), header
        private = load_pem_private_key(self.p8.encode(), password=None)
        public = ECKey.import_key(
            private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        )
        token = jwt.decode(header[len("Bearer ") :], public, algorithms=["ES256"])
        return dict(token.header), dict(token.claims)

    def _authorized(self, request: Recorded) -> bool:
        try:
            header, claims = self.claims(request)
        except Exception:
            return False
        lifetime = claims.get("exp", 0) - claims.get("iat", 0)
        return (
            header.get("alg") == "ES256"
            and header.get("kid") == KEY_ID
            and claims.get("iss") == ISSUER_ID
            and claims.get("aud") == "appstoreconnect-v1"
            and 0 < lifetime <= 20 * 60
        )

    def answer(self, request: Recorded) -> tuple[int, Any]:
        if self.fault == "broken":
            return 500, _errors(500, "UNEXPECTED_ERROR", "An unexpected error occurred.", "x")
        if self.fault == "garbage":
            return 200, "<html>maintenance</html>"
        if self.fault == "reject" or not self._authorized(request):
            return 401, _errors(
                401,
                "NOT_AUTHORIZED",
                "Authentication credentials are missing or invalid.",
                "Provide a properly configured and signed bearer token.",
            )
        if self.fault == "shapeless":
            return 200, {"meta": {}}
        path, query = request.path, request.query
        if path == "/v1/bundleIds" and request.method == "GET":
            wanted = query.get("filter[identifier]", "")
            # Apple's filter also matches identifiers that only contain the value.
            data = [
                {"type": "bundleIds", "id": rid, "attributes": {"identifier": ident}}
                for ident, rid in self.bundle_ids.items()
                if wanted in ident
            ]
            return 200, {"data": data, "links": {"self": f"{self.base}{path}"}}
        if path.startswith("/v1/bundleIds/") and path.endswith("/profiles"):
            rid = path.split("/")[3]
            if rid not in self.profiles:
                return 404, _errors(404, "NOT_FOUND", "The specified resource does not exist", rid)
            return 200, {"data": self.profiles[rid], "links": {}}
        if path == "/v1/devices" and request.method == "GET":
            start = int(query.get("cursor", "0"))
            page = self.devices[start : start + PAGE_SIZE]
            links: dict[str, str] = {"self": f"{self.base}{path}"}
            if start + PAGE_SIZE < len(self.devices):
                origin = self.next_base or self.base
                links["next"] = f"{origin}/v1/devices?limit=200&cursor={start + PAGE_SIZE}"
            return 200, {"data": page, "links": links}
        if path == "/v1/devices" and request.method == "POST":
            sent = json.loads(request.body)
            attributes = sent["data"]["attributes"]
            with self.lock:
                if any(d["attributes"]["udid"] == attributes["udid"] for d in self.devices):
                    return 409, _errors(
                        409,
                        "ENTITY_ERROR.ATTRIBUTE.INVALID",
                        "An attribute value is invalid.",
                        "A device with number '" + attributes["udid"] + "' already exists.",
                    )
                device_id = f"DEV{len(self.devices) + 1:04d}"
                self.add_device(device_id, attributes["name"], attributes["udid"])
                created = self.devices[-1]
            created["attributes"]["platform"] = attributes["platform"]
            return 201, {"data": created, "links": {}}
        return 404, _errors(404, "NOT_FOUND", "The path provided does not match", path)


def _handler(fake: FakeAppStoreConnect) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            request = recorded(self)
            fake.requests.append(request)
            status, body = fake.answer(request)
            send_answer(self, status, body)

        do_GET = _answer
        do_POST = _answer

    return Handler


@pytest.fixture
def fake_apple() -> Iterator[FakeAppStoreConnect]:
    """App Store Connect on 127.0.0.1 (a thread), shut down after the test."""
    fake = FakeAppStoreConnect()
    with serving(_handler(fake)) as base:
        fake.base = base
        yield fake
