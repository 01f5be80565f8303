"""OpenID Connect sign-in rules (contract §7.3, §7.4): the redirect-URI rule, pending
authorization requests and their limits, the start rate limiter and the provider's metadata.

Everything here is pure: time is passed in, memory is bounded by the limits below. The
pending requests themselves are kept in the database (``oore/services/pending_signins.py``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from oore.domain.rate_limit import WindowLimiter
from oore.domain.setup import Preferences
from oore.domain.users import User, UserStatus
from oore.errors import Forbidden, InvalidInput, ServiceUnavailable, TooManyRequests

CALLBACK_PATH = "/auth/callback"
DEFAULT_REDIRECT_URI = "http://127.0.0.1:8787/v1/auth/oidc/callback"
SCOPE = "openid email"
PENDING_TTL = 600
PENDING_CAPACITY = 1000
# An expired pending request is still recognised (a late callback learns ``auth_expired``)
# until room is needed for new ones, and at most this long after it was made.
PENDING_KEEP = 3600
START_WINDOW = 60
START_GLOBAL_LIMIT = 120
START_PER_IP_LIMIT = 20
MAX_ISSUER_URL = 2048
MAX_CLIENT_ID = 256
MAX_CLIENT_SECRET = 1024

_PRIVATE_V4 = tuple(
    ipaddress.IPv4Network(net)
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16")
)
_LOCAL_V6 = tuple(ipaddress.IPv6Network(net) for net in ("fc00::/7", "fe80::/10"))
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class OidcConfig:
    """The stored provider configuration; the client secret stays encrypted."""

    issuer_url: str
    client_id: str
    client_secret_enc: str | None
    configured_at: int
    updated_at: int

    @property
    def has_client_secret(self) -> bool:
        return self.client_secret_enc is not None


@dataclass(frozen=True)
class ClientSettings:
    """A provider configuration as an owner submits it (setup configure or settings PUT)."""

    issuer_url: str
    client_id: str
    client_secret: str | None
    clear_client_secret: bool = False


def check_client_settings(
    issuer_url: str,
    client_id: str,
    client_secret: str | None,
    clear_client_secret: bool = False,
) -> ClientSettings:
    """Trimmed, length-checked settings; 400 ``invalid_input`` otherwise (§2.2, §12)."""
    issuer = issuer_url.strip()
    client = client_id.strip()
    if not 1 <= len(issuer) <= MAX_ISSUER_URL:
        raise InvalidInput("invalid_input", "issuer_url must be 1 to 2048 characters")
    if not _is_http_url(issuer):
        raise InvalidInput("invalid_input", "issuer_url must be an http(s) URL")
    if not 1 <= len(client) <= MAX_CLIENT_ID:
        raise InvalidInput("invalid_input", "client_id must be 1 to 256 characters")
    if client_secret is not None and not 1 <= len(client_secret) <= MAX_CLIENT_SECRET:
        raise InvalidInput("invalid_input", "client_secret must be 1 to 1024 characters")
    if client_secret is not None and clear_client_secret:
        raise InvalidInput(
            "invalid_input", "client_secret and clear_client_secret cannot be used together"
        )
    return ClientSettings(issuer, client, client_secret, clear_client_secret)


def check_issuer_url(issuer_url: str) -> str:
    """A trimmed issuer URL (test-connection); 400 ``invalid_input`` otherwise."""
    return check_client_settings(issuer_url, "-", None).issuer_url


def _is_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def secret_reentry_needed(
    stored: OidcConfig | None, issuer_url: str, client_id: str, *, keeps_secret: bool
) -> bool:
    """A stored secret may not silently follow a change of issuer or client (§2.2)."""
    if stored is None or not stored.has_client_secret or not keeps_secret:
        return False
    return stored.issuer_url != issuer_url or stored.client_id != client_id


def secret_reentry_required() -> InvalidInput:
    return InvalidInput(
        "oidc_secret_reentry_required",
        "The issuer or client changed: enter the client secret again or clear it",
    )


def _is_local_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".local"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv4Address):
        return ip.is_loopback or any(ip in net for net in _PRIVATE_V4)
    return ip.is_loopback or any(ip in net for net in _LOCAL_V6)


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` with the default port left out, or None if it does not parse."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    scheme = parts.scheme.lower()
    if not host or scheme not in _DEFAULT_PORTS:
        return None
    shown = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        shown = f"{shown}:{port}"
    return f"{scheme}://{shown}"


def check_redirect_uri(redirect_uri: str, allowed_origins: Collection[str]) -> str:
    """The redirect-URI rule of §7.3; every failure is 400 ``invalid_redirect_uri``.

    The URI must parse, carry no userinfo and have the path ``/auth/callback``. Local hosts
    (loopback, ``localhost``, ``*.local``, private or link-local addresses) may use http;
    any other host needs https and an origin in ``allowed_origins``.
    """
    refused = InvalidInput("invalid_redirect_uri", "Redirect URI is not allowed")
    try:
        parts = urlsplit(redirect_uri)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise refused from None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        raise refused
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise refused
    if parts.path != CALLBACK_PATH:
        raise refused
    if _is_local_host(host):
        return redirect_uri
    if scheme != "https":
        raise refused
    allowed = {origin_of(origin) for origin in allowed_origins}
    if origin_of(redirect_uri) not in allowed:
        raise refused
    return redirect_uri


@dataclass(frozen=True)
class ProviderMetadata:
    """What discovery found: the provider's endpoints, capabilities and signing keys."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    scopes_supported: tuple[str, ...]
    token_auth_methods: tuple[str, ...]
    signing_algorithms: tuple[str, ...]
    jwks: Mapping[str, Any] = field(default_factory=dict)

    def connection_json(self) -> dict[str, object]:
        """The discovered endpoints as the settings API shows them."""
        body: dict[str, object] = {
            "discovered_issuer": self.issuer,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
        }
        if self.userinfo_endpoint:
            body["userinfo_endpoint"] = self.userinfo_endpoint
        body["jwks_uri"] = self.jwks_uri
        body["scopes_supported"] = list(self.scopes_supported)
        return body


def discovery_url(issuer_url: str) -> str:
    return issuer_url.rstrip("/") + "/.well-known/openid-configuration"


def _string_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, str))


def parse_metadata(issuer_url: str, document: object) -> ProviderMetadata:
    """The provider metadata of a discovery document; ValueError when it is unusable.

    The document's issuer must be the one asked for (a trailing ``/`` aside), and the
    endpoints the code flow needs must be http(s) URLs.
    """
    if not isinstance(document, dict):
        raise ValueError("discovery document is not a JSON object")
    issuer = document.get("issuer")
    if not isinstance(issuer, str) or issuer.rstrip("/") != issuer_url.rstrip("/"):
        raise ValueError("discovery document names another issuer")
    endpoints: dict[str, str] = {}
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        value = document.get(name)
        if not isinstance(value, str) or not _is_http_url(value):
            raise ValueError(f"discovery document has no usable {name}")
        endpoints[name] = value
    userinfo = document.get("userinfo_endpoint")
    methods = _string_list(document.get("token_endpoint_auth_methods_supported"))
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=endpoints["authorization_endpoint"],
        token_endpoint=endpoints["token_endpoint"],
        jwks_uri=endpoints["jwks_uri"],
        userinfo_endpoint=userinfo if isinstance(userinfo, str) and userinfo else None,
        scopes_supported=_string_list(document.get("scopes_supported")),
        token_auth_methods=methods or ("client_secret_basic",),
        signing_algorithms=_string_list(document.get("id_token_signing_alg_values_supported")),
    )


def authorization_url(
    endpoint: str,
    *,
    client_id: str,
    redirect_uri: str,
    state: str,
    nonce: str,
    code_challenge: str,
) -> str:
    """The provider's authorization endpoint with the code-flow parameters (PKCE S256)."""
    parts = urlsplit(endpoint)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", SCOPE),
        ("state", state),
        ("nonce", nonce),
        ("code_challenge", code_challenge),
        ("code_challenge_method", "S256"),
    ]
    return urlunsplit(SplitResult(*parts[:3], urlencode(query), parts.fragment))


@dataclass(frozen=True)
class IdentityClaims:
    """What a verified ID token says about the person signing in."""

    subject: str
    email: str
    email_verified: bool
    picture: str | None


# -- pending authorization requests -------------------------------------------------------


def setup_fingerprint(config: OidcConfig, prefs: Preferences) -> str:
    """A digest of everything a pending setup sign-in depends on besides the generation."""
    material = json.dumps(
        [
            config.issuer_url,
            config.client_id,
            config.client_secret_enc,
            config.updated_at,
            prefs.runtime_mode.value,
            prefs.remote_auth_mode.value,
        ]
    )
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class SetupBinding:
    """Ties a pending request to the setup session and configuration it was started under."""

    session_hash: str
    generation: int
    fingerprint: str


@dataclass(frozen=True)
class PendingRequest:
    """One authorization request waiting for its callback."""

    state: str
    verifier: str
    nonce: str
    redirect_uri: str
    created_at: int
    setup: SetupBinding | None = None

    def expired(self, now: int) -> bool:
        return now - self.created_at >= PENDING_TTL

    def dumps(self) -> str:
        """The request as JSON: it holds the PKCE verifier and the nonce, so it is kept
        only sealed."""
        setup = self.setup
        return json.dumps(
            {
                "state": self.state,
                "verifier": self.verifier,
                "nonce": self.nonce,
                "redirect_uri": self.redirect_uri,
                "created_at": self.created_at,
                "setup": None
                if setup is None
                else [setup.session_hash, setup.generation, setup.fingerprint],
            },
            separators=(",", ":"),
        )

    @classmethod
    def loads(cls, text: str) -> PendingRequest:
        """The request :meth:`dumps` wrote; ValueError when the text is not one."""
        try:
            found = json.loads(text)
            setup = found["setup"]
            return cls(
                state=_text(found["state"]),
                verifier=_text(found["verifier"]),
                nonce=_text(found["nonce"]),
                redirect_uri=_text(found["redirect_uri"]),
                created_at=_number(found["created_at"]),
                setup=None
                if setup is None
                else SetupBinding(_text(setup[0]), _number(setup[1]), _text(setup[2])),
            )
        except (TypeError, KeyError, IndexError) as exc:
            raise ValueError("not a pending sign-in request") from exc


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected text")
    return value


def _number(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("expected an integer")
    return value


@dataclass(frozen=True)
class Reservation:
    """A slot held for a public start while discovery runs."""

    ticket: int
    created_at: int


def too_many_pending() -> TooManyRequests:
    return TooManyRequests("too_many_pending", "Too many pending sign-in requests")


def start_expired() -> ServiceUnavailable:
    """A reservation was dropped (the provider was reconfigured) or lapsed meanwhile."""
    return ServiceUnavailable("oidc_start_expired", "The sign-in start took too long")


class StartLimiter(WindowLimiter):
    """The limit on public starts: 120 a minute overall, 20 a minute per client address."""

    def __init__(
        self,
        window: int = START_WINDOW,
        global_limit: int = START_GLOBAL_LIMIT,
        per_ip_limit: int = START_PER_IP_LIMIT,
    ) -> None:
        super().__init__(
            window,
            global_limit,
            per_ip_limit,
            "oidc_start_rate_limited",
            "Too many sign-in attempts",
        )


# -- who signs in -------------------------------------------------------------------------


@dataclass(frozen=True)
class SignInTarget:
    """The account a verified identity signs in as, and whether this activates it."""

    user: User
    activates: bool


def sign_in_target(
    by_subject: User | None, claims: IdentityClaims, invited: User | None
) -> SignInTarget:
    """Contract §2.3/§7.7: an active user with this subject, else an invitation for this
    (verified) email; 403 ``unverified_email`` / ``user_not_found`` otherwise."""
    if by_subject is not None and by_subject.status is UserStatus.ACTIVE:
        return SignInTarget(by_subject, activates=False)
    if not claims.email_verified:
        raise Forbidden("unverified_email", "The identity provider has not verified this email")
    # A subject held by an account that is not active (disabled) cannot be taken over.
    if by_subject is not None or invited is None or invited.status is not UserStatus.INVITED:
        raise Forbidden("user_not_found", "No user account for this identity")
    return SignInTarget(invited, activates=True)
