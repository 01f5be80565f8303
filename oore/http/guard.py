"""Who may talk to the server from a browser, and the headers every response carries.

``Host``: a DNS name there must be one the server answers to (the network settings in force
decide, see :meth:`~oore.services.network.Network.serves`). Without this, any web page whose
name its author re-points at 127.0.0.1 (DNS rebinding) reaches the daemon as this machine
does, and local login asks for nothing more. IP literals and loopback names cannot be
re-pointed by a page's author, so they always pass. Webhooks skip the check: a provider's
signature is their proof, and they arrive by whatever name the provider was given.

``Origin``: a state-changing request from a browser page (and every WebSocket handshake
that names an origin) must come from an allowed origin, the public URL's, or the server's
own; other pages get 403 ``origin_not_allowed`` (cross-site request forgery). A
state-changing request signed in by the session cookie must name its Origin too (browsers
do): the cookie is the one credential a browser attaches by itself, so a request carrying
only the cookie is trusted only from a page whose origin we know.
"""

from __future__ import annotations

from quart import Quart, Response, request, websocket

from oore.domain.network import host_name, origin_allowed
from oore.errors import Forbidden, InvalidRequest
from oore.http.context import cookie_session, services
from oore.services.network import Network

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UNGUARDED_PREFIXES = ("/v1/webhooks/",)
HARDENING_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
# Nothing the API answers is meant to run, load anything or be framed; HTML pages that need
# more set their own policy.
# Nor kept by a browser or a proxy: answers carry sessions, tokens and download links, and
# what is not secret is still someone's; what may be cached (the web UI) says so itself.
DEFAULT_CACHE = "no-store"
DEFAULT_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
_HTTP_SCHEMES = {"ws": "http", "wss": "https"}


def check_request(
    network: Network,
    *,
    raw_host: str | None,
    origin: str | None,
    path: str,
    scheme: str,
    changes_state: bool,
    by_cookie: bool = False,
) -> None:
    """400 ``invalid_host`` or 403 ``origin_not_allowed``, or nothing for a request the
    server may answer (``raw_host`` and ``origin`` are the headers as sent; ``by_cookie``:
    the session cookie is its credential)."""
    if path.startswith(UNGUARDED_PREFIXES):
        return
    if raw_host is not None:
        host = host_name(raw_host)
        if host is None:
            raise InvalidRequest("invalid_host", "The Host header is not a host[:port]")
        if not network.serves(host):
            raise InvalidRequest(
                "invalid_host",
                f"This server does not answer to {host}: make it the public URL or list it "
                "in OORED_ALLOWED_HOSTS",
            )
    if changes_state and by_cookie and origin is None:
        raise Forbidden(
            "origin_not_allowed",
            "A request signed in by cookie must come from a page of an allowed origin",
        )
    if origin is None or not changes_state:
        return
    own = None if raw_host is None else f"{_HTTP_SCHEMES.get(scheme, scheme)}://{raw_host}"
    if not origin_allowed(origin, network.allowed_origins, network.public_url, own):
        raise Forbidden("origin_not_allowed", "Requests from this origin are not allowed")


def install_guard(app: Quart) -> None:
    """Check Host and Origin before any route (and before CORS); harden every response."""

    @app.before_request
    async def guard_request() -> None:
        check_request(
            services().network,
            raw_host=request.headers.get("Host"),
            origin=request.headers.get("Origin"),
            path=request.path,
            scheme=request.scheme,
            changes_state=request.method not in SAFE_METHODS,
            by_cookie=cookie_session() is not None,
        )

    @app.before_websocket
    async def guard_websocket() -> None:
        check_request(
            services().network,
            raw_host=websocket.headers.get("Host"),
            origin=websocket.headers.get("Origin"),
            path=websocket.path,
            scheme=websocket.scheme,
            changes_state=True,
        )

    @app.after_request
    async def harden(response: Response) -> Response:
        for name, value in HARDENING_HEADERS:
            response.headers.setdefault(name, value)
        response.headers.setdefault("Content-Security-Policy", DEFAULT_POLICY)
        response.headers.setdefault("Cache-Control", DEFAULT_CACHE)
        return response
