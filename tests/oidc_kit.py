"""OpenID Providers for tests, served on loopback.

* :func:`oidc_provider` — the real one: panva's certified ``oidc-provider`` (Node.js, see
  ``tests/oidc_provider``), one process per test session, stopped and reaped at the end.
  ``authorize(url, login_hint)`` plays the browser: it follows the provider's redirects
  (its interaction route signs in the account named by ``login_hint``) and returns the
  ``code`` and ``state`` the provider sends to the redirect URI.
* :class:`FaultyProvider` — a tiny provider for the failures a certified implementation
  will not produce on demand (no ID token, a forged or mismatched ID token, broken
  discovery). It serves from a thread on 127.0.0.1.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import selectors
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.loopback_http import serving

PROVIDER_DIR = Path(__file__).parent / "oidc_provider"
NPM_TIMEOUT = 300.0
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

CLIENT_ID = "oore-ci"
CLIENT_SECRET = "oore-test-client-secret"
# The redirect URIs the test client may use: loopback (any mode) and the allowlisted
# https origin the HTTP tests configure (see tests/http/conftest.py, app fixture).
REDIRECT_URI = "http://127.0.0.1:3000/auth/callback"
REDIRECT_URIS = (
    REDIRECT_URI,
    "http://localhost:3000/auth/callback",
    "http://localhost:4173/auth/callback",
    "https://ci.example.com/auth/callback",
)


@dataclass(frozen=True)
class Account:
    sub: str
    email: str | None
    email_verified: bool | None = True
    picture: str | None = None

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"sub": self.sub}
        if self.email is not None:
            body["email"] = self.email
        if self.email_verified is not None:
            body["email_verified"] = self.email_verified
        if self.picture is not None:
            body["picture"] = self.picture
        return body


ACCOUNTS = (
    Account("owner-sub", "owner@example.com", picture="https://img.example.com/owner.png"),
    Account("dev-sub", "Dev@Example.com", picture="https://img.example.com/dev.png"),
    Account("qa-sub", "qa@example.com"),
    Account("unverified-sub", "unverified@example.com", email_verified=False),
    Account("no-email-sub", None),
)


def _redirected_to(url: str, redirect_uris: tuple[str, ...]) -> bool:
    return any(url.split("?", 1)[0] == uri for uri in redirect_uris)


async def follow_to_redirect_uri(
    authorization_url: str, redirect_uris: tuple[str, ...], *, max_hops: int = 12
) -> dict[str, str]:
    """Play the browser: follow redirects until one points at a redirect URI; its query."""
    url = authorization_url
    async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as browser:
        for _ in range(max_hops):
            response = await browser.get(url)
            if response.status_code not in (302, 303):
                raise AssertionError(
                    f"provider answered {response.status_code} at {url}: {response.text[:500]}"
                )
            url = str(response.url.join(response.headers["location"]))
            if _redirected_to(url, redirect_uris):
                return dict(parse_qsl(urlsplit(url).query))
    raise AssertionError(f"no redirect to the client after {max_hops} hops")


@dataclass
class OidcProvider:
    """A running ``oidc-provider`` process and its one confidential client."""

    issuer: str
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    accounts: tuple[Account, ...]
    proc: subprocess.Popen[bytes] = field(repr=False)

    async def authorize(self, authorization_url: str, login_hint: str) -> tuple[str, str]:
        """Sign ``login_hint`` (an account's sub) in and return the ``(code, state)``."""
        separator = "&" if "?" in authorization_url else "?"
        url = f"{authorization_url}{separator}{urlencode({'login_hint': login_hint})}"
        query = await follow_to_redirect_uri(url, self.redirect_uris)
        if "code" not in query:
            raise AssertionError(f"the provider refused the sign-in: {query}")
        return query["code"], query["state"]


def ensure_node_modules() -> None:
    """Install the provider's locked dependencies once; fail loudly without node or npm.

    The suite runs in several worker processes, each of which may get here first: an
    exclusive lock on a file beside the package makes the others wait for one install."""
    with (PROVIDER_DIR / ".npm-install.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _install_node_modules()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _install_node_modules() -> None:
    if (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.fail(
            "the OIDC tests run a real OpenID Provider on Node.js: install node (>= 20.19) "
            "and npm, then run `npm ci` in tests/oidc_provider",
            pytrace=False,
        )
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=PROVIDER_DIR,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"`npm ci` in tests/oidc_provider failed:\n{result.stdout}\n{result.stderr}",
            pytrace=False,
        )


def _read_issuer(proc: subprocess.Popen[bytes], log: Path) -> str:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buffered = b""
    deadline = time.monotonic() + START_TIMEOUT
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if b"\n" in buffered:
                line, buffered = buffered.split(b"\n", 1)
                try:
                    ready = json.loads(line)
                except json.JSONDecodeError:
                    continue
                issuer = ready.get("issuer") if isinstance(ready, dict) else None
                if isinstance(issuer, str):
                    return issuer
                continue
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buffered += chunk
    raise AssertionError(f"the OpenID Provider did not start:\n{log.read_text(errors='replace')}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the process by its PID and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def start_provider(
    *,
    accounts: tuple[Account, ...] = ACCOUNTS,
    client_id: str = CLIENT_ID,
    client_secret: str = CLIENT_SECRET,
    redirect_uris: tuple[str, ...] = REDIRECT_URIS,
    token_endpoint_auth_method: str = "client_secret_basic",
    log_dir: Path | None = None,
) -> OidcProvider:
    """Start ``provider.mjs`` on a free loopback port; the caller must :func:`stop` it."""
    ensure_node_modules()
    options = {
        "client_id": client_id,
        "client_secret": client_secret,
        "redirect_uris": list(redirect_uris),
        "accounts": [account.to_json() for account in accounts],
        "token_endpoint_auth_method": token_endpoint_auth_method,
    }
    log = Path(tempfile.mkstemp(prefix="oidc-provider-", suffix=".log", dir=log_dir)[1])
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            ["node", str(PROVIDER_DIR / "provider.mjs"), json.dumps(options)],
            cwd=PROVIDER_DIR,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        issuer = _read_issuer(proc, log)
    except BaseException:
        stop(proc)
        raise
    return OidcProvider(issuer, client_id, client_secret, redirect_uris, accounts, proc)


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """The real OpenID Provider, shared by the session's tests (each sign-in is separate)."""
    provider = start_provider(log_dir=tmp_path_factory.mktemp("oidc-provider"))
    try:
        yield provider
    finally:
        stop(provider.proc)


# -- a provider that misbehaves on purpose ------------------------------------------------


@dataclass
class FaultyProvider:
    """A loopback provider whose token endpoint misbehaves as ``fault`` says.

    Faults: ``"none"`` (a valid ID token), ``"missing_id_token"``, ``"forged_signature"``,
    ``"wrong_nonce"``, ``"wrong_audience"``, ``"expired"``, ``"no_email"``,
    ``"token_error"`` (HTTP 400), and ``"discovery_404"`` / ``"wrong_issuer"`` /
    ``"discovery_redirect"`` for discovery itself.
    """

    issuer: str = ""
    fault: str = "none"
    subject: str = "faulty-sub"
    email: str = "faulty@example.com"
    client_id: str = CLIENT_ID
    key: RSAKey = field(
        default_factory=lambda: RSAKey.generate_key(
            2048, parameters={"kid": "faulty", "use": "sig", "alg": "RS256"}
        )
    )
    nonces: dict[str, str] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    # When ``hold`` is set up, discovery signals ``entered`` and waits for ``hold``.
    hold: threading.Event | None = None
    entered: threading.Event = field(default_factory=threading.Event)

    def discovery(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self.hold is not None:
            self.entered.set()
            self.hold.wait(STOP_TIMEOUT)
        if self.fault == "discovery_404":
            return 404, {"error": "not_found"}, {}
        if self.fault == "discovery_redirect":
            return 302, {}, {"Location": "https://elsewhere.example.com/"}
        issuer = "https://other.example.com" if self.fault == "wrong_issuer" else self.issuer
        return (
            200,
            {
                "issuer": issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "userinfo_endpoint": f"{self.issuer}/userinfo",
                "scopes_supported": ["openid", "email"],
                "response_types_supported": ["code"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
            },
            {},
        )

    def authorize(self, query: dict[str, str]) -> str:
        """Where the browser goes next: straight back with a code."""
        code = secrets.token_urlsafe(16)
        self.nonces[code] = query.get("nonce", "")
        back = urlencode({"code": code, "state": query.get("state", "")})
        return f"{query['redirect_uri']}?{back}"

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.token_requests.append(form)
        if self.fault == "token_error":
            return 400, {"error": "invalid_grant"}
        if self.fault == "missing_id_token":
            return 200, {"access_token": "at", "token_type": "Bearer"}
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": self.subject,
            "aud": "someone-else" if self.fault == "wrong_audience" else self.client_id,
            "iat": now,
            "exp": now - 3600 if self.fault == "expired" else now + 300,
            "nonce": "not-yours"
            if self.fault == "wrong_nonce"
            else self.nonces.get(form.get("code", ""), ""),
            "email_verified": True,
        }
        if self.fault != "no_email":
            claims["email"] = self.email
        signer = self.key
        if self.fault == "forged_signature":
            signer = RSAKey.generate_key(2048, parameters={"kid": "faulty"})
        id_token = jwt.encode({"alg": "RS256", "kid": "faulty"}, claims, signer)
        return 200, {"access_token": "at", "token_type": "Bearer", "id_token": id_token}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.as_dict(private=False)]}


def _handler(provider: FaultyProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path == "/.well-known/openid-configuration":
                self._send(*provider.discovery())
            elif parts.path == "/jwks":
                self._send(200, provider.jwks())
            elif parts.path == "/authorize":
                self._send(302, {}, {"Location": provider.authorize(dict(parse_qsl(parts.query)))})
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(parse_qsl(self.rfile.read(length).decode()))
            if urlsplit(self.path).path == "/token":
                self._send(*provider.token(form))
            else:
                self._send(404, {"error": "not_found"})

    return Handler


@pytest.fixture
def faulty_provider() -> Iterator[FaultyProvider]:
    """A misbehaving provider on 127.0.0.1 (thread), shut down after the test."""
    provider = FaultyProvider()
    with serving(_handler(provider)) as base:
        provider.issuer = base
        yield provider
