"""CORS: exact-match origin allowlist, credentials allowed (contract §0.4, seed 000).

The allowlist is the one in force in the network settings, read on every request, so a
saved change applies to the very next request."""

from __future__ import annotations

from collections.abc import Collection

from quart import Quart, Response, request

from oore.http.context import services

ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOWED_HEADERS = "Content-Type, Authorization"
PREFLIGHT_MAX_AGE = "600"
# Paths served outside CORS: machine-to-machine endpoints browsers have no business calling.
OUTSIDE_CORS_PREFIXES = (
    "/metrics",
    "/v1/webhooks/",
    # Pages a provider's redirect lands on in the browser (contract §0.4).
    "/v1/integrations/github/create",
    "/v1/integrations/github/callback",
    "/v1/integrations/github/installed",
    "/v1/integrations/gitlab/callback",
)


def _outside(path: str) -> bool:
    return any(path == p or path.startswith(p) for p in OUTSIDE_CORS_PREFIXES)


def _allowed(origin: str | None) -> bool:
    return origin is not None and origin in services().network.allowed_origins


def cors_headers(
    origin: str | None, path: str, allowed_origins: Collection[str]
) -> list[tuple[str, str]]:
    """The CORS headers of an answer to a request from ``origin`` (for responses not made
    by Quart; :func:`install_cors` adds the same to Quart's)."""
    if origin is None or _outside(path):
        return []
    if origin not in allowed_origins:
        return [("Vary", "Origin")]
    return [
        ("Vary", "Origin"),
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Allow-Credentials", "true"),
    ]


def install_cors(app: Quart) -> None:
    """Answer preflights and decorate responses for allowed origins."""

    @app.before_request
    async def preflight() -> Response | None:
        if request.method != "OPTIONS" or _outside(request.path):
            return None
        if "Access-Control-Request-Method" not in request.headers:
            return None
        response = Response("", status=204)
        origin = request.headers.get("Origin")
        if _allowed(origin):
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        return response

    @app.after_request
    async def decorate(response: Response) -> Response:
        origin = request.headers.get("Origin")
        for name, value in cors_headers(origin, request.path, services().network.allowed_origins):
            if name == "Vary":
                response.vary.add(value)
            else:
                response.headers[name] = value
        return response
