"""CORS: exact-match origin allowlist, credentials allowed (contract §0.4, seed 000)."""

from __future__ import annotations

from collections.abc import Iterable

from quart import Quart, Response, request

ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOWED_HEADERS = "Content-Type, Authorization"
PREFLIGHT_MAX_AGE = "600"
# Paths served outside CORS: machine-to-machine endpoints browsers have no business calling.
OUTSIDE_CORS_PREFIXES = ("/metrics", "/v1/webhooks/")


def _outside(path: str) -> bool:
    return any(path == p or path.startswith(p) for p in OUTSIDE_CORS_PREFIXES)


def install_cors(app: Quart, origins: Iterable[str]) -> None:
    """Answer preflights and decorate responses for allowed origins."""
    allowed = frozenset(origins)

    @app.before_request
    async def preflight() -> Response | None:
        if request.method != "OPTIONS" or _outside(request.path):
            return None
        if "Access-Control-Request-Method" not in request.headers:
            return None
        response = Response("", status=204)
        origin = request.headers.get("Origin")
        if origin in allowed:
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        return response

    @app.after_request
    async def decorate(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin is None or _outside(request.path):
            return response
        response.vary.add("Origin")
        if origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
        return response
