"""External-access rules (contract §0.4, §7.3, §10.3): origins, public URLs, the trusted
proxy and the preflight that guards remote mode. Pure: no I/O, values in, verdicts out."""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import SplitResult, urlencode, urlsplit

from oore.domain.client_ip import parse_ip
from oore.domain.oidc import CALLBACK_PATH, check_redirect_uri
from oore.domain.setup import RemoteAuthMode
from oore.errors import ApiError, Forbidden, InvalidInput, ServiceUnavailable, Unauthorized

LOCAL_ORIGINS = (
    "http://localhost:3000",
    "http://127.0.0.1:3000",
    "http://localhost:4173",
    "http://127.0.0.1:4173",
)
DEFAULT_EMAIL_HEADER = "x-oore-user-email"
SHARED_SECRET_HEADER = "x-oore-trusted-proxy-secret"
# Warpgate names the signed-in user in this header; a proxy configured with it is Warpgate.
WARPGATE_EMAIL_HEADER = "x-warpgate-username"
# The query parameter that carries a Warpgate access ticket past Warpgate's sign-in.
WARPGATE_TICKET_PARAM = "warpgate-ticket"
MAX_SECRET_LENGTH = 1024
MAX_EMAIL_LENGTH = 256

_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = r"[a-z0-9_][a-z0-9_-]{0,62}"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")
# RFC 9110 token characters: what a header field name may be made of.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9a-z]+$")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# -- origins and URLs ---------------------------------------------------------------------


def split_url(raw: str) -> SplitResult | None:
    """The pieces of an http(s) URL with a host and no userinfo, else None."""
    try:
        parts = urlsplit(raw.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or parts.username is not None or "@" in parts.netloc:
        return None
    host = parts.hostname or ""
    if not host or (":" not in host and not _HOSTNAME.match(host)):
        return None
    if ":" in host and parse_ip(host) is None:
        return None
    return parts


def _origin(parts: SplitResult) -> str:
    host = parts.hostname or ""
    shown = f"[{host}]" if ":" in host else host
    port = parts.port
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        shown = f"{shown}:{port}"
    return f"{parts.scheme}://{shown}"


def normalise_origin(raw: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL (default port dropped), else None."""
    parts = split_url(raw)
    return None if parts is None else _origin(parts)


def with_local_defaults(origins: Iterable[str]) -> tuple[str, ...]:
    """The origins, deduplicated in order, with the four local origins appended."""
    found: list[str] = []
    for origin in (*origins, *LOCAL_ORIGINS):
        if origin not in found:
            found.append(origin)
    return tuple(found)


def normalise_origins(values: Iterable[str]) -> tuple[str, ...]:
    """Each origin normalised (400 ``invalid_input`` for one that is not), deduplicated,
    the local defaults appended."""
    found: list[str] = []
    for value in values:
        origin = normalise_origin(value)
        if origin is None:
            raise InvalidInput("invalid_input", f"Invalid allowed origin: {value.strip()}")
        found.append(origin)
    return with_local_defaults(found)


def parse_origin_list(text: str) -> tuple[str, ...]:
    """Origins from a comma- or newline-separated list (the environment); bad ones skipped."""
    found = (normalise_origin(part) for part in re.split(r"[,\n]", text))
    return with_local_defaults(origin for origin in found if origin is not None)


def is_loopback_host(host: str) -> bool:
    """``localhost``, a ``*.localhost`` name, or a loopback or unspecified address."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    ip = parse_ip(host)
    return ip is not None and (ip.is_loopback or ip.is_unspecified)


class UrlProblem(StrEnum):
    INVALID = "invalid"
    NOT_PUBLIC = "not_public"
    NOT_HTTPS = "not_https"


def public_url_problem(raw: str) -> UrlProblem | None:
    """What keeps ``raw`` from being an external URL: unparsable, loopback, or not https."""
    try:
        parts = urlsplit(raw.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return UrlProblem.INVALID
    if not parts.scheme or not parts.netloc or parts.username is not None:
        return UrlProblem.INVALID
    host = parts.hostname or ""
    if not host or is_loopback_host(host):
        return UrlProblem.NOT_PUBLIC
    if parts.scheme != "https":
        return UrlProblem.NOT_HTTPS
    if split_url(raw) is None:
        return UrlProblem.INVALID
    return None


def origin_of(url: str) -> str | None:
    return normalise_origin(url)


# -- the names this server answers to (DNS rebinding) ------------------------------------


def _ip_literal(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _port_suffix(text: str) -> bool:
    """Empty, or a colon and a port number."""
    digits = text[1:]
    return text == "" or (
        text[0] == ":" and digits.isascii() and digits.isdigit() and len(digits) <= 5
    )


def host_name(header: str) -> str | None:
    """The lower-cased host of a ``Host`` header value (port and trailing dot dropped, IPv6
    without brackets), or None when the value is not ``host[:port]``."""
    value = header.strip().lower()
    if value.startswith("["):
        inside, bracket, rest = value[1:].partition("]")
        ok = bracket and _port_suffix(rest)
        return inside if ok and isinstance(_ip_literal(inside), ipaddress.IPv6Address) else None
    name, _, _ = value.partition(":")
    if not _port_suffix(value[len(name) :]):
        return None
    name = name.removesuffix(".")
    return name if _ip_literal(name) is not None or _HOSTNAME.match(name) else None


def rebinding_proof(name: str) -> bool:
    """An IP literal or a loopback name: no page can make a browser send it for its own
    origin, since rebinding needs a DNS name the page's author controls."""
    return _ip_literal(name) is not None or name == "localhost" or name.endswith(".localhost")


def url_host(url: str | None) -> str | None:
    """The lower-cased host of an http(s) URL, without brackets; None when there is none."""
    parts = None if url is None else split_url(url)
    return None if parts is None or not parts.hostname else parts.hostname.removesuffix(".")


def served_names(
    names: Iterable[str],
    public_url: str | None,
    artifact_delivery_url: str | None,
    allowed_origins: Iterable[str],
) -> frozenset[str]:
    """The DNS names a request may carry in ``Host`` besides the rebinding-proof ones: the
    configured names, and the hosts of the public and delivery URLs and allowed origins."""
    found = {name.strip().lower().removesuffix(".") for name in names if name.strip()}
    for url in (public_url, artifact_delivery_url, *allowed_origins):
        host = url_host(url)
        if host is not None:
            found.add(host)
    return frozenset(found)


def origin_allowed(
    origin: str, allowed_origins: Iterable[str], public_url: str | None, own_origin: str | None
) -> bool:
    """May a browser page at ``origin`` change state here? Only an allowlisted origin, the
    public URL's, or the request's own (same scheme, host and port)."""
    normal = normalise_origin(origin)
    if normal is None:
        return False
    if normal in allowed_origins or origin in allowed_origins:
        return True
    if public_url is not None and normal == origin_of(public_url):
        return True
    return own_origin is not None and normal == normalise_origin(own_origin)


@dataclass(frozen=True)
class NetworkSettings:
    """The external-access network settings: public URL, delivery URL, CORS allowlist."""

    public_url: str | None
    artifact_delivery_url: str | None
    allowed_origins: tuple[str, ...]
    updated_at: int | None = None


def _blank_to_none(value: str | None) -> str | None:
    return value.strip() if value and value.strip() else None


def check_network_update(
    public_url: str | None, artifact_delivery_url: str | None, allowed_origins: Iterable[str]
) -> NetworkSettings:
    """Validate a ``PUT …/network`` body in the contract's order; trailing ``/`` stripped."""
    origins = normalise_origins(allowed_origins)
    public = _blank_to_none(public_url)
    if public is not None:
        problem = public_url_problem(public)
        if problem is UrlProblem.INVALID:
            raise InvalidInput("invalid_input", "Public URL is not valid")
        if problem is UrlProblem.NOT_PUBLIC:
            raise InvalidInput(
                "external_access_public_url_missing",
                "Public URL must resolve to a non-loopback host",
            )
        if problem is UrlProblem.NOT_HTTPS:
            raise InvalidInput(
                "external_access_https_required", "Public URL must use https for External Access"
            )
        origin = origin_of(public)
        if origin not in origins:
            raise InvalidInput(
                "external_access_origin_not_allowed",
                f"Public URL origin {origin} must be included in allowed origins",
            )
        public = public.rstrip("/")
    delivery = _blank_to_none(artifact_delivery_url)
    if delivery is not None:
        problem = public_url_problem(delivery)
        if problem is UrlProblem.NOT_HTTPS:
            raise InvalidInput(
                "artifact_delivery_https_required", "Artifact delivery URL must use https"
            )
        if problem is UrlProblem.NOT_PUBLIC:
            raise InvalidInput(
                "artifact_delivery_public_url_required",
                "Artifact delivery URL must resolve to a non-loopback host",
            )
        if problem is UrlProblem.INVALID:
            raise InvalidInput("artifact_delivery_url_invalid", "Artifact delivery URL is invalid")
        delivery = delivery.rstrip("/")
    return NetworkSettings(public, delivery, origins)


# -- the trusted proxy --------------------------------------------------------------------


class TicketSource(StrEnum):
    """Where the Warpgate ticket in force comes from."""

    DATABASE = "database"  # saved (encrypted) through the settings API
    ENVIRONMENT = "environment"  # OORE_WARPGATE_TICKET


@dataclass(frozen=True)
class TrustedProxySettings:
    """How a reverse proxy in front of oored vouches for its users (one row)."""

    user_email_header: str = DEFAULT_EMAIL_HEADER
    setup_owner_email: str | None = None
    trusted_proxy_cidrs: tuple[str, ...] = ()
    shared_secret_enc: str | None = None
    configured_at: int | None = None
    updated_at: int | None = None
    warpgate_ticket_enc: str | None = None

    @property
    def has_shared_secret(self) -> bool:
        return self.shared_secret_enc is not None

    @property
    def usable(self) -> bool:
        """Enough to sign people in: a shared secret and a valid identity header."""
        return self.has_shared_secret and normalise_header_name(self.user_email_header) is not None

    def ticket_source(self, environment_ticket: str | None) -> TicketSource | None:
        """The saved ticket wins; the environment's counts only for a saved configuration
        whose identity header is Warpgate's (a variable set for the whole machine must not
        reach another kind of proxy)."""
        if self.warpgate_ticket_enc is not None:
            return TicketSource.DATABASE
        if (
            environment_ticket
            and self.configured_at is not None
            and self.user_email_header == WARPGATE_EMAIL_HEADER
        ):
            return TicketSource.ENVIRONMENT
        return None

    def to_json(self, environment_ticket: str | None = None) -> dict[str, Any]:
        """The settings API shape; secrets and the ticket are never shown."""
        source = self.ticket_source(environment_ticket)
        body: dict[str, Any] = {
            "user_email_header": self.user_email_header,
            "trusted_proxy_cidrs": list(self.trusted_proxy_cidrs),
            "has_shared_secret": self.has_shared_secret,
            "has_warpgate_ticket": source is not None,
        }
        if source is not None:
            body["warpgate_ticket_source"] = source.value
        if self.updated_at is not None:
            body["updated_at"] = self.updated_at
        return body


def warpgate_ticket(
    remote_with: RemoteAuthMode | None,
    settings: TrustedProxySettings | None,
    environment_ticket: str | None,
    decrypt: Callable[[str], str],
) -> str | None:
    """The ticket to put on install and download URLs: only in remote mode signed in
    through the trusted proxy (Warpgate trusted-proxy mode), the saved ticket first, else
    the environment's (see :meth:`TrustedProxySettings.ticket_source`); None otherwise."""
    if remote_with is not RemoteAuthMode.TRUSTED_PROXY or settings is None:
        return None
    source = settings.ticket_source(environment_ticket)
    if source is TicketSource.DATABASE and settings.warpgate_ticket_enc is not None:
        return decrypt(settings.warpgate_ticket_enc)
    if source is TicketSource.ENVIRONMENT:
        return environment_ticket
    return None


def with_warpgate_ticket(url: str, ticket: str | None) -> str:
    """``url`` with the ticket appended as the ``warpgate-ticket`` query parameter
    (form-encoded), or unchanged without a ticket."""
    if ticket is None:
        return url
    joiner = "&" if urlsplit(url).query else "?"
    return f"{url}{joiner}{urlencode({WARPGATE_TICKET_PARAM: ticket})}"


def normalise_header_name(raw: str | None) -> str | None:
    """A header name lower-cased, or None when it is blank or not a valid name."""
    name = (raw or "").strip().lower()
    return name if _HEADER_NAME.match(name) else None


def email_header(raw: str | None) -> str:
    """The identity header to use: the given one when valid, else the default."""
    return normalise_header_name(raw) or DEFAULT_EMAIL_HEADER


def normalise_email(raw: str | None) -> str | None:
    """Trimmed and lower-cased; None unless it holds an ``@`` and fits 256 characters."""
    email = (raw or "").strip().lower()
    if not email or len(email) > MAX_EMAIL_LENGTH or "@" not in email:
        return None
    return email


def _network(text: str) -> IpNetwork | None:
    if "/" not in text:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def parse_cidrs(values: Iterable[str]) -> tuple[str, ...]:
    """CIDRs with a prefix length, canonical and deduplicated; 400 ``invalid_input``."""
    found: list[str] = []
    for value in values:
        text = value.strip()
        if not text:
            continue
        network = _network(text)
        if network is None:
            raise InvalidInput("invalid_input", f"Invalid trusted proxy CIDR: {text}")
        if str(network) not in found:
            found.append(str(network))
    return tuple(found)


def check_secret(value: str | None, field: str) -> str | None:
    """A secret trimmed; None when blank; 400 ``invalid_input`` above 1024 characters."""
    secret = _blank_to_none(value)
    if secret is not None and len(secret) > MAX_SECRET_LENGTH:
        raise InvalidInput("invalid_input", f"{field} must be 1024 characters or fewer")
    return secret


def peer_allowed(peer: str | None, cidrs: Iterable[str]) -> bool:
    """The raw peer is loopback or inside one of the configured networks."""
    ip = parse_ip(peer) if peer else None
    if ip is None:
        return False
    if ip.is_loopback:
        return True
    for text in cidrs:
        network = _network(text)
        if network is not None and ip.version == network.version and ip in network:
            return True
    return False


def proxied_email(
    settings: TrustedProxySettings,
    peer: str | None,
    headers: Mapping[str, str],
    decrypt: Callable[[str], str],
) -> str:
    """The email a trusted proxy vouches for, checked in the contract's order: peer (403),
    shared secret configured (503), presented (401) and equal in constant time (401), then
    the identity header (401). ``headers`` has lower-cased names."""
    if not peer_allowed(peer, settings.trusted_proxy_cidrs):
        raise Forbidden(
            "trusted_proxy_peer_not_allowed", "This peer is not a trusted proxy of this instance"
        )
    if settings.shared_secret_enc is None:
        raise ServiceUnavailable(
            "trusted_proxy_config_invalid", "Trusted proxy shared secret is not configured"
        )
    expected = decrypt(settings.shared_secret_enc)
    presented = (headers.get(SHARED_SECRET_HEADER) or "").strip()
    if not presented:
        raise Unauthorized(
            "trusted_proxy_shared_secret_missing", "Trusted proxy shared secret header is missing"
        )
    if not hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8")):
        raise Unauthorized(
            "trusted_proxy_shared_secret_invalid", "Trusted proxy shared secret is invalid"
        )
    header = normalise_header_name(settings.user_email_header)
    if header is None:
        raise ServiceUnavailable(
            "trusted_proxy_config_invalid", "Trusted proxy email header configuration is invalid"
        )
    raw = headers.get(header)
    if raw is None:
        raise Unauthorized(
            "trusted_proxy_identity_missing", "Trusted proxy identity header is missing"
        )
    email = normalise_email(raw)
    if email is None:
        raise Unauthorized(
            "trusted_proxy_identity_invalid", "Trusted proxy identity must be an email address"
        )
    return email


# -- the preflight ------------------------------------------------------------------------


@dataclass(frozen=True)
class PreflightCheck:
    id: str
    label: str
    ok: bool
    message: str
    failure_code: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "label": self.label,
            "ok": self.ok,
            "message": self.message,
        }
        if self.failure_code is not None:
            body["failure_code"] = self.failure_code
        return body


@dataclass(frozen=True)
class Preflight:
    checks: tuple[PreflightCheck, ...]

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks)

    def failure(self) -> InvalidInput | None:
        """The 400 a switch to remote mode answers with: the first failing check's code,
        or ``external_access_preflight_failed`` when that check names none."""
        for check in self.checks:
            if not check.ok:
                return InvalidInput(
                    check.failure_code or "external_access_preflight_failed", check.message
                )
        return None

    def to_json(self) -> dict[str, Any]:
        return {"ready": self.ready, "checks": [check.to_json() for check in self.checks]}


def _redirect_allowed(uri: str, allowed_origins: tuple[str, ...]) -> bool:
    """Would the sign-in redirect rule (§7.3) accept ``uri``?"""
    try:
        check_redirect_uri(uri, allowed_origins)
    except ApiError:
        return False
    return True


def run_preflight(
    *,
    setup_ready: bool,
    auth_mode: RemoteAuthMode,
    auth_configured: bool,
    public_url: str | None,
    allowed_origins: tuple[str, ...],
) -> Preflight:
    """The checks that must pass before remote mode is enabled, in the contract's order."""
    checks = [
        PreflightCheck(
            "setup_ready",
            "Setup state is ready",
            setup_ready,
            "Setup is complete."
            if setup_ready
            else "Complete setup before enabling External Access.",
        )
    ]
    if auth_mode is RemoteAuthMode.OIDC:
        checks.append(
            PreflightCheck(
                "oidc_configured",
                "OIDC configuration is present",
                auth_configured,
                "An OIDC provider is configured."
                if auth_configured
                else "Configure an OIDC provider before enabling External Access.",
            )
        )
    else:
        checks.append(
            PreflightCheck(
                "trusted_proxy_configured",
                "Trusted proxy settings are configured",
                auth_configured,
                "Trusted proxy settings are configured."
                if auth_configured
                else "Configure the trusted proxy (with a shared secret) first.",
                None if auth_configured else "external_access_trusted_proxy_not_configured",
            )
        )
    problem = UrlProblem.NOT_PUBLIC if public_url is None else public_url_problem(public_url)
    url_label = "Public URL is configured with HTTPS"
    if problem is None:
        checks.append(PreflightCheck("public_url_https", url_label, True, "Public URL is HTTPS."))
    elif problem is UrlProblem.NOT_HTTPS:
        checks.append(
            PreflightCheck(
                "public_url_https",
                url_label,
                False,
                "Public URL must use https for External Access.",
                "external_access_https_required",
            )
        )
    else:
        checks.append(
            PreflightCheck(
                "public_url_https",
                url_label,
                False,
                "Set a non-loopback https public URL before enabling External Access.",
                "external_access_public_url_missing",
            )
        )
    origin = origin_of(public_url) if problem is None and public_url else None
    origin_label = "Public URL origin is allowlisted in CORS"
    if origin is None:
        checks.append(
            PreflightCheck(
                "public_origin_allowed",
                origin_label,
                False,
                "The public URL check must pass first.",
            )
        )
    elif origin in allowed_origins:
        checks.append(
            PreflightCheck("public_origin_allowed", origin_label, True, "Public origin is allowed.")
        )
    else:
        checks.append(
            PreflightCheck(
                "public_origin_allowed",
                origin_label,
                False,
                f"Add {origin} to the allowed origins before enabling External Access.",
                "external_access_origin_not_allowed",
            )
        )
    if auth_mode is RemoteAuthMode.OIDC:
        consistent = origin is not None and _redirect_allowed(
            f"{origin}{CALLBACK_PATH}", allowed_origins
        )
        checks.append(
            PreflightCheck(
                "redirect_policy_consistent",
                "Redirect policy is consistent with allowed origins",
                consistent,
                "Sign-in redirects to the public URL are allowed."
                if consistent
                else "Sign-in redirects to the public URL would be refused.",
            )
        )
    return Preflight(tuple(checks))
