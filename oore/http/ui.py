"""The web UI: the bundle built into the package (``oore/web/dist``), served at ``/``.

``index.html`` answers ``/`` and every client route (a GET or HEAD that no route matches,
outside the API's own prefixes), revalidated on every load so a new bundle is picked up
at once; ``/assets/*`` are named by their content hash and cached for a year. Both carry
the UI's Content-Security-Policy: everything from this origin only, no inline script or
style, no framing. A package without a built UI answers 503 ``ui_not_built``.

Files are read from the installed package on each request (on a worker thread), so a
rebuilt bundle needs no restart. A request path is split into segments and each is
checked before it is looked up, so no request reaches a file outside the bundle.
"""

from __future__ import annotations

import hashlib
from importlib.resources import files
from importlib.resources.abc import Traversable

import trio
from quart import Quart, Response, request
from werkzeug.exceptions import NotFound as NoRoute

from oore.errors import NotFound, ServiceUnavailable

UI_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
INDEX = "index.html"
ASSETS = "assets"
# Paths that are never a client route: a miss there is the API's 404, not the UI.
NOT_CLIENT_ROUTES = ("/v1", "/install", "/assets", "/healthz", "/readyz", "/metrics")
REVALIDATE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webp": "image/webp",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".txt": "text/plain; charset=utf-8",
}
MAX_SEGMENTS = 8


def package_bundle() -> Traversable:
    """Where an installed oore keeps its built UI."""
    return files("oore").joinpath("web", "dist")


def safe_segments(path: str) -> tuple[str, ...] | None:
    """The segments of a path below the bundle, or None when any could leave it
    (``..``, ``.``, empty, hidden, a backslash or a NUL)."""
    parts = tuple(path.split("/"))
    if not 0 < len(parts) <= MAX_SEGMENTS:
        return None
    for part in parts:
        if not part or part.startswith(".") or "\\" in part or "\x00" in part:
            return None
    return parts


def is_client_route(path: str) -> bool:
    return not any(path == prefix or path.startswith(prefix + "/") for prefix in NOT_CLIENT_ROUTES)


def content_type(name: str) -> str:
    _, dot, suffix = name.rpartition(".")
    return CONTENT_TYPES.get(f".{suffix.lower()}" if dot else "", "application/octet-stream")


def _read(target: Traversable) -> bytes | None:
    try:
        return target.read_bytes() if target.is_file() else None
    except OSError:
        return None  # a directory of the same name, a file removed meanwhile


def _etag(data: bytes) -> str:
    return f'"{hashlib.sha256(data).hexdigest()[:32]}"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    if if_none_match is None:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in tags or "*" in tags


class UiBundle:
    """The built UI under ``root`` (the package's, or a test's directory)."""

    def __init__(self, root: Traversable) -> None:
        self.root = root

    async def read(self, parts: tuple[str, ...]) -> bytes | None:
        target = self.root.joinpath(*parts)
        return await trio.to_thread.run_sync(_read, target)

    async def page(self) -> Response:
        """``index.html``; 503 ``ui_not_built`` when the package has none."""
        data = await self.read((INDEX,))
        if data is None:
            raise ServiceUnavailable(
                "ui_not_built",
                "This oore has no built web UI: build it with `npm ci && npm run build` "
                "in web/, or install a release; the API at /v1 works without it",
            )
        return _answer(data, INDEX, REVALIDATE)

    async def asset(self, path: str) -> Response:
        """A file under ``assets/``; 404 for anything else."""
        parts = safe_segments(path.removeprefix(f"/{ASSETS}/"))
        data = None if parts is None else await self.read((ASSETS, *parts))
        if parts is None or data is None:
            raise NotFound("not_found", "No such file in the web UI")
        return _answer(data, parts[-1], IMMUTABLE)

    async def root_file(self, name: str) -> Response | None:
        """A file at the top of the bundle other than index (a favicon), if there is one."""
        parts = safe_segments(name)
        if parts is None or len(parts) != 1 or parts[0] == INDEX:
            return None
        data = await self.read(parts)
        return None if data is None else _answer(data, name, REVALIDATE)


def _answer(data: bytes, name: str, cache: str) -> Response:
    etag = _etag(data)
    headers = {
        "Cache-Control": cache,
        "ETag": etag,
        "Content-Security-Policy": UI_POLICY,
        "Content-Type": content_type(name),
    }
    if _matches(request.headers.get("If-None-Match"), etag):
        return Response(b"", status=304, headers=headers)
    return Response(data, headers=headers)  # for HEAD, the server sends the headers only


def install_ui(app: Quart, bundle: UiBundle) -> None:
    """Answer GET/HEAD for ``/assets/*`` and for paths no route matches (client routes)."""

    @app.before_request
    async def serve_ui() -> Response | None:
        if request.method not in ("GET", "HEAD"):
            return None
        path = request.path
        if path.startswith(f"/{ASSETS}/"):
            return await bundle.asset(path)
        if type(request.routing_exception) is not NoRoute or not is_client_route(path):
            return None
        if path.count("/") == 1 and (found := await bundle.root_file(path[1:])) is not None:
            return found
        return await bundle.page()
