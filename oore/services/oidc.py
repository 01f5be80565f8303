"""The OpenID Provider client: discovery, code exchange and ID-token verification (§7.4).

One :class:`ProviderSession` per sign-in step, so its HTTP connections end with the step;
:class:`ProviderClient` (one per runtime) opens them.
Every failure becomes the contract's 502 (:class:`BadGateway`) with its code.
"""

from __future__ import annotations

import base64
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import cached_property
from typing import Any
from urllib.parse import quote

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from oore.domain.json_input import JsonInputError, decode_json
from oore.domain.oidc import IdentityClaims, ProviderMetadata, discovery_url
from oore.domain.oidc import parse_metadata as parse_provider_metadata
from oore.errors import BadGateway

HTTP_TIMEOUT = 10.0
MAX_RESPONSE_BYTES = 1024 * 1024
ID_TOKEN_LEEWAY = 60
# Asymmetric algorithms only: never "none", never a MAC keyed by the client secret.
SIGNING_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
_KEY_TYPES = ("RSA", "EC", "OKP")

log = logging.getLogger(__name__)


def _failure(code: str, message: str, cause: object) -> BadGateway:
    """The contract's 502; the cause goes to the log, never to the client (§0.1)."""
    log.warning("OpenID Provider failure %s: %s", code, cause)
    return BadGateway(code, message)


def discovery_error(cause: object) -> BadGateway:
    return _failure("oidc_discovery_error", "Failed to discover the OpenID Provider", cause)


class _Unusable(Exception):
    """A provider response that cannot be used (status, size or body)."""


class ProviderSession:
    """Talks to one OpenID Provider over one HTTP client (no redirects, 10 s timeouts)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def _read(self, response: httpx.Response) -> bytes:
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_RESPONSE_BYTES:
                raise _Unusable("response is too large")
        return bytes(body)

    async def _json(self, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
        try:
            async with self._http.stream(method, url, **kwargs) as response:
                raw = await self._read(response)
                status = response.status_code
        except httpx.HTTPError as exc:
            raise _Unusable(f"{type(exc).__name__}: {exc}") from None
        try:
            return status, decode_json(raw)
        except JsonInputError:
            raise _Unusable(f"HTTP {status}: body is not JSON") from None

    async def discover(self, issuer_url: str) -> ProviderMetadata:
        """The provider's metadata and signing keys; 502 ``oidc_discovery_error`` if not."""
        try:
            status, document = await self._json("GET", discovery_url(issuer_url))
            if status != 200:
                raise _Unusable(f"discovery answered HTTP {status}")
            metadata = parse_provider_metadata(issuer_url, document)
            status, jwks = await self._json("GET", metadata.jwks_uri)
            if (
                status != 200
                or not isinstance(jwks, dict)
                or not isinstance(jwks.get("keys"), list)
            ):
                raise _Unusable("the JWKS document is unusable")
        except (_Unusable, ValueError) as exc:
            raise discovery_error(str(exc)) from None
        return replace(metadata, jwks=jwks)

    async def exchange_code(
        self,
        metadata: ProviderMetadata,
        *,
        client_id: str,
        client_secret: str | None,
        code: str,
        redirect_uri: str,
        verifier: str,
    ) -> str:
        """The ID token the token endpoint returns for ``code`` (PKCE S256 verifier)."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        headers = {"Accept": "application/json"}
        methods = metadata.token_auth_methods
        if client_secret is None:
            form["client_id"] = client_id
        elif "client_secret_basic" in methods or "client_secret_post" not in methods:
            pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = client_id
            form["client_secret"] = client_secret
        message = "Failed to exchange the authorization code"
        try:
            status, body = await self._json(
                "POST", metadata.token_endpoint, data=form, headers=headers
            )
        except _Unusable as exc:
            raise _failure("token_exchange_error", message, exc) from None
        if status != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            raise _failure("token_exchange_error", message, f"HTTP {status} {error or ''}")
        id_token = body.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise BadGateway("missing_id_token", "The identity provider returned no ID token")
        return id_token


def verify_id_token(
    metadata: ProviderMetadata, id_token: str, *, client_id: str, nonce: str, now: int
) -> IdentityClaims:
    """Check the ID token's signature (provider JWKS), iss, aud, exp and nonce, then read
    the identity; 502 ``id_token_verification_error`` / ``missing_email`` otherwise."""
    message = "The ID token could not be verified"
    allowed = [alg for alg in SIGNING_ALGORITHMS if alg in metadata.signing_algorithms]
    try:
        keys = [
            key
            for key in metadata.jwks.get("keys", [])
            if isinstance(key, dict)
            and key.get("kty") in _KEY_TYPES
            and key.get("use") in (None, "sig")
        ]
        key_set = KeySet.import_key_set({"keys": keys})
        token = jwt.decode(id_token, key_set, algorithms=allowed or list(SIGNING_ALGORITHMS))
        registry = jwt.JWTClaimsRegistry(
            now=now,
            leeway=ID_TOKEN_LEEWAY,
            iss={"essential": True, "value": metadata.issuer},
            aud={"essential": True, "value": client_id},
            exp={"essential": True},
            sub={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        registry.validate(token.claims)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise _failure("id_token_verification_error", message, repr(exc)) from None
    claims = token.claims
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise _failure("id_token_verification_error", message, "no subject")
    email = claims.get("email")
    if not isinstance(email, str) or not email.strip():
        raise BadGateway("missing_email", "The ID token has no email claim")
    picture = claims.get("picture")
    return IdentityClaims(
        subject=subject,
        email=email.strip(),
        email_verified=claims.get("email_verified") is True,
        picture=picture if isinstance(picture, str) and picture else None,
    )


class ProviderClient:
    """Opens :class:`ProviderSession` s that share one TLS configuration (loading the CA
    bundle is the slow part of making an HTTP client)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._given_ssl = ssl_context

    @cached_property
    def _ssl(self) -> ssl.SSLContext:
        """Made on first use: most runtimes never call out, and loading the CA bundle
        takes a tenth of a second."""
        return self._given_ssl or httpx.create_ssl_context()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[ProviderSession]:
        """A provider client for one step; its connections close when the step ends."""
        async with httpx.AsyncClient(
            timeout=HTTP_TIMEOUT, follow_redirects=False, verify=self._ssl
        ) as http:
            yield ProviderSession(http)
