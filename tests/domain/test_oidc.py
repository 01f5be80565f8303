"""OIDC rules: the redirect-URI rule (§7.3), pending requests and start limits (§7.4); the
storage of pending requests is tested in tests/services/test_pending_signins.py."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from oore.domain.oidc import (
    PENDING_TTL,
    START_GLOBAL_LIMIT,
    START_PER_IP_LIMIT,
    IdentityClaims,
    OidcConfig,
    PendingRequest,
    SetupBinding,
    StartLimiter,
    authorization_url,
    check_client_settings,
    check_redirect_uri,
    parse_metadata,
    secret_reentry_needed,
    sign_in_target,
)
from oore.domain.users import Role, User, UserStatus
from oore.errors import ApiError

ALLOWED = ("https://ci.example.com", "https://ops.example.com:8443")


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:3000/auth/callback",
        "http://127.8.9.1/auth/callback",
        "http://localhost:4173/auth/callback",
        "https://localhost/auth/callback",
        "http://LOCALHOST:3000/auth/callback",
        "http://buildbox.local/auth/callback",
        "http://10.1.2.3/auth/callback",
        "http://172.16.0.9:8080/auth/callback",
        "http://172.31.255.255/auth/callback",
        "http://192.168.1.20/auth/callback",
        "http://169.254.10.10/auth/callback",
        "http://[::1]:3000/auth/callback",
        "http://[fd12:3456::1]/auth/callback",
        "http://[fe80::1]/auth/callback",
        "https://ci.example.com/auth/callback",
        "https://CI.example.com:443/auth/callback",
        "https://ops.example.com:8443/auth/callback",
        "https://ci.example.com/auth/callback?next=%2Fbuilds",
    ],
)
def test_redirect_uris_that_are_accepted(uri: str) -> None:
    assert check_redirect_uri(uri, ALLOWED) == uri


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "not a url",
        "/auth/callback",
        "ftp://127.0.0.1/auth/callback",
        "http://127.0.0.1:99999/auth/callback",
        "http://user@127.0.0.1/auth/callback",
        "http://user:pw@localhost/auth/callback",
        "https://user@ci.example.com/auth/callback",
        "http://127.0.0.1/auth/callback/",
        "http://127.0.0.1/v1/auth/oidc/callback",
        "http://127.0.0.1/AUTH/CALLBACK",
        "http://127.0.0.1/",
        "http://ci.example.com/auth/callback",
        "https://evil.example.com/auth/callback",
        "https://ci.example.com:8443/auth/callback",
        "https://ops.example.com/auth/callback",
        "http://172.32.0.1/auth/callback",
        "http://11.0.0.1/auth/callback",
        "http://203.0.113.7/auth/callback",
        "http://100.64.0.1/auth/callback",
        "http://[2001:db8::1]/auth/callback",
        "http://local/auth/callback",
        "http://evil.localhost.example.com/auth/callback",
        "http://127.0.0.1:8787/v1/auth/oidc/callback",
    ],
)
def test_redirect_uris_that_are_refused(uri: str) -> None:
    with pytest.raises(ApiError) as refused:
        check_redirect_uri(uri, ALLOWED)
    assert (refused.value.status, refused.value.code) == (400, "invalid_redirect_uri")


def test_an_allowlisted_origin_still_needs_https() -> None:
    with pytest.raises(ApiError):
        check_redirect_uri("http://ci.example.com/auth/callback", ("http://ci.example.com",))


def _request(state: str, created_at: int, setup: SetupBinding | None = None) -> PendingRequest:
    uri = "http://127.0.0.1/auth/callback"
    return PendingRequest(state, "verifier", "nonce", uri, created_at, setup)


def test_pending_requests_expire_after_600_seconds() -> None:
    request = _request("s1", 100)
    assert not request.expired(100 + PENDING_TTL - 1)
    assert request.expired(100 + PENDING_TTL)


@pytest.mark.parametrize("setup", [None, SetupBinding("ab" * 32, 3, "fingerprint")])
def test_a_pending_request_reads_back_as_it_was_written(setup: SetupBinding | None) -> None:
    request = _request("state-" + "x" * 40, 1_800_000_000, setup)
    assert PendingRequest.loads(request.dumps()) == request


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        "{}",
        '{"state": 1}',
        '{"state":"s","verifier":"v","nonce":"n",'
        '"redirect_uri":"u","created_at":true,"setup":null}',
        '"text"',
    ],
)
def test_what_is_not_a_pending_request_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        PendingRequest.loads(text)


def test_start_limiter_allows_20_per_client_in_a_minute() -> None:
    limiter = StartLimiter()
    for _ in range(START_PER_IP_LIMIT):
        limiter.admit("198.51.100.1", 1000)
    with pytest.raises(ApiError) as limited:
        limiter.admit("198.51.100.1", 1030)
    assert (limited.value.status, limited.value.code) == (429, "oidc_start_rate_limited")
    limiter.admit("198.51.100.2", 1030)
    limiter.admit("198.51.100.1", 1060)


def test_start_limiter_allows_120_overall_in_a_minute() -> None:
    limiter = StartLimiter()
    for n in range(START_GLOBAL_LIMIT):
        limiter.admit(f"198.51.100.{n}", 1000 + n // 4)
    with pytest.raises(ApiError) as limited:
        limiter.admit("203.0.113.9", 1059)
    assert limited.value.code == "oidc_start_rate_limited"
    limiter.admit("203.0.113.9", 1060)


def test_start_limiter_forgets_quiet_clients() -> None:
    limiter = StartLimiter(window=60, global_limit=1000, per_ip_limit=1)
    for n in range(500):
        limiter.admit(f"10.0.{n // 250}.{n % 250}", n)
    limiter.admit("192.0.2.1", 10_000)
    assert len(limiter._by_ip) == 1


def test_authorization_url_carries_the_code_flow_parameters() -> None:
    url = authorization_url(
        "https://idp.example.com/authorize?tenant=a",
        client_id="cid",
        redirect_uri="http://127.0.0.1/auth/callback",
        state="st",
        nonce="nn",
        code_challenge="cc",
    )
    parts = urlsplit(url)
    assert parts.netloc == "idp.example.com" and parts.path == "/authorize"
    assert parse_qs(parts.query) == {
        "tenant": ["a"],
        "response_type": ["code"],
        "client_id": ["cid"],
        "redirect_uri": ["http://127.0.0.1/auth/callback"],
        "scope": ["openid email"],
        "state": ["st"],
        "nonce": ["nn"],
        "code_challenge": ["cc"],
        "code_challenge_method": ["S256"],
    }


def _document(**overrides: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "issuer": "https://idp.example.com/",
        "authorization_endpoint": "https://idp.example.com/auth",
        "token_endpoint": "https://idp.example.com/token",
        "jwks_uri": "https://idp.example.com/jwks",
    }
    doc.update(overrides)
    return doc


def test_metadata_keeps_the_discovered_issuer_and_defaults_to_basic_auth() -> None:
    metadata = parse_metadata("https://idp.example.com", _document())
    assert metadata.issuer == "https://idp.example.com/"
    assert metadata.token_auth_methods == ("client_secret_basic",)
    assert metadata.userinfo_endpoint is None


@pytest.mark.parametrize(
    "document",
    [
        [],
        _document(issuer="https://other.example.com"),
        _document(token_endpoint=None),
        _document(jwks_uri="not a url"),
    ],
)
def test_unusable_discovery_documents(document: object) -> None:
    with pytest.raises(ValueError):
        parse_metadata("https://idp.example.com", document)


@pytest.mark.parametrize(
    ("issuer", "client", "secret", "clear"),
    [
        ("", "cid", None, False),
        ("   ", "cid", None, False),
        ("idp.example.com", "cid", None, False),
        ("https://" + "a" * 2048, "cid", None, False),
        ("https://idp.example.com", "", None, False),
        ("https://idp.example.com", "c" * 257, None, False),
        ("https://idp.example.com", "cid", "", False),
        ("https://idp.example.com", "cid", "s" * 1025, False),
        ("https://idp.example.com", "cid", "secret", True),
    ],
)
def test_client_settings_validation(
    issuer: str, client: str, secret: str | None, clear: bool
) -> None:
    with pytest.raises(ApiError) as refused:
        check_client_settings(issuer, client, secret, clear)
    assert (refused.value.status, refused.value.code) == (400, "invalid_input")


def test_client_settings_are_trimmed() -> None:
    settings = check_client_settings(" https://idp.example.com ", " cid ", "s" * 1024)
    assert (settings.issuer_url, settings.client_id) == ("https://idp.example.com", "cid")


def test_secret_reentry_is_needed_only_when_a_stored_secret_would_follow_a_change() -> None:
    stored = OidcConfig("https://idp.example.com", "cid", "sealed", 1, 1)
    no_secret = OidcConfig("https://idp.example.com", "cid", None, 1, 1)
    assert secret_reentry_needed(stored, "https://other.example.com", "cid", keeps_secret=True)
    assert secret_reentry_needed(stored, "https://idp.example.com", "other", keeps_secret=True)
    assert not secret_reentry_needed(stored, "https://idp.example.com", "cid", keeps_secret=True)
    assert not secret_reentry_needed(stored, "https://other.example.com", "c", keeps_secret=False)
    assert not secret_reentry_needed(no_secret, "https://other.example.com", "c", keeps_secret=True)
    assert not secret_reentry_needed(None, "https://other.example.com", "c", keeps_secret=True)


def _user(status: UserStatus, subject: str = "sub") -> User:
    return User("u1", "a@example.com", None, Role.DEVELOPER, status, subject, None, 0, 0)


def _claims(verified: bool) -> IdentityClaims:
    return IdentityClaims("sub", "A@example.com", verified, None)


def test_sign_in_prefers_the_active_user_with_the_subject_even_unverified() -> None:
    active = _user(UserStatus.ACTIVE)
    target = sign_in_target(active, _claims(False), None)
    assert target.user is active and not target.activates


def test_sign_in_activates_an_invitation_for_a_verified_email() -> None:
    invited = _user(UserStatus.INVITED, "pending-u1")
    target = sign_in_target(None, _claims(True), invited)
    assert target.user is invited and target.activates


@pytest.mark.parametrize(
    ("by_subject", "verified", "invited", "code"),
    [
        (None, False, _user(UserStatus.INVITED, "pending-u1"), "unverified_email"),
        (None, True, None, "user_not_found"),
        (_user(UserStatus.DISABLED), True, None, "user_not_found"),
        (
            _user(UserStatus.DISABLED),
            True,
            _user(UserStatus.INVITED, "pending-u1"),
            "user_not_found",
        ),
    ],
)
def test_sign_in_refusals(
    by_subject: User | None, verified: bool, invited: User | None, code: str
) -> None:
    with pytest.raises(ApiError) as refused:
        sign_in_target(by_subject, _claims(verified), invited)
    assert (refused.value.status, refused.value.code) == (403, code)
