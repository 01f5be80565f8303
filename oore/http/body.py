"""Request bodies: JSON only, decoded into strict pydantic models, documented in OpenAPI."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import trio
from pydantic import BaseModel, ConfigDict, ValidationError
from quart import Quart, request
from quart_schema import document_request
from quart_trio.wrappers import TrioRequest

from oore.domain import ios_signing, signing
from oore.domain.json_input import JsonInputError, decode_json
from oore.errors import InvalidRequest
from oore.http.context import services

M = TypeVar("M", bound=BaseModel)
P = ParamSpec("P")

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_ONLY = "Content-Type must be application/json"
RAW_BODY = "oore_raw_body"  # marks views that read their body themselves

# Bodies up to this many bytes decode in well under a millisecond, on the event loop.
INLINE_DECODE_MAX = 64 * 1024
R = TypeVar("R")

# Routes whose bodies may pass the app's default limit (contract §0.1), by path.
LARGER_BODIES = (
    (re.compile(r"^/v1/pipelines/[^/]+/ios-signing$"), ios_signing.MAX_REQUEST_BYTES),
    (re.compile(r"^/v1/pipelines/[^/]+/android-signing$"), signing.MAX_REQUEST_BYTES),
)


def body_limit(path: str, default: int | None) -> int | None:
    """The most bytes a request to ``path`` may send (413 ``payload_too_large`` past it)."""
    for pattern, limit in LARGER_BODIES:
        if pattern.match(path):
            return limit
    return default


class RoutedRequest(TrioRequest):
    """A request whose body limit is its route's (see :data:`LARGER_BODIES`): the limit
    must be known when the request is made, as its body starts arriving before routing."""

    def __init__(
        self,
        method: str,
        scheme: str,
        path: str,
        *args: Any,
        max_content_length: int | None = None,
        **kwargs: Any,
    ) -> None:
        limit = body_limit(path, max_content_length)
        super().__init__(method, scheme, path, *args, max_content_length=limit, **kwargs)


class Body(BaseModel):
    """Base of every request body: unknown fields are refused, types are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def raw_body(view: Callable[P, R]) -> Callable[P, R]:
    """Mark a view that reads its body itself (webhooks, uploads): it takes any type."""
    setattr(view, RAW_BODY, True)
    return view


def install_json_only(app: Quart) -> None:
    """A state-changing request naming any Content-Type but JSON is 400 ``invalid_request``
    before its view runs, whether the view reads a body or not: form and text/plain posts
    are what a page on another site can send without the browser asking first. A request
    without a Content-Type (no body) passes; views marked :func:`raw_body` are exempt."""

    @app.before_request
    async def json_only() -> None:
        if request.method not in STATE_CHANGING or request.mimetype in ("", "application/json"):
            return
        view = app.view_functions.get(request.endpoint or "")
        if view is not None and not getattr(view, RAW_BODY, False):
            raise InvalidRequest(details=JSON_ONLY)


async def read_body(model: type[M], *, optional: bool = False) -> M:
    """Decode the request body as ``model``; 400 ``invalid_request`` when it does not fit.

    With ``optional``, an empty body counts as ``{}``; a Content-Type other than JSON is
    refused even then.
    """
    raw = await request.get_data(as_text=False)
    absent = optional and not raw.strip()
    if request.mimetype != "application/json" and (request.mimetype or not absent):
        raise InvalidRequest(details=JSON_ONLY)
    data: Any = {} if absent else await decode_untrusted(raw, what="body")
    return validate_body(model, data)


async def decode_untrusted(raw: bytes | str, *, what: str) -> Any:
    """JSON from a client within the bounds of :mod:`oore.domain.json_input`; 400
    ``invalid_request`` otherwise. A large document is decoded on a worker thread (a few
    at a time), so no other request waits behind it."""
    try:
        if len(raw) <= INLINE_DECODE_MAX:
            return decode_json(raw)
        return await trio.to_thread.run_sync(decode_json, raw, limiter=services().cpu)
    except JsonInputError as exc:
        raise InvalidRequest(details=f"{what} {exc}") from None


def validate_body(model: type[M], data: Any) -> M:
    """Decoded JSON as ``model``; 400 ``invalid_request`` naming the first field at fault."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidRequest(details=f"{where}: {first['msg']}") from None


def json_body(
    model: type[M], *, optional: bool = False
) -> Callable[[Callable[..., Awaitable[R]]], Callable[..., Awaitable[R]]]:
    """Decorator: decode the body and pass it to the view as ``body=``."""

    def decorate(view: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> R:
            return await view(*args, body=await read_body(model, optional=optional), **kwargs)

        documented: Callable[..., Awaitable[R]] = document_request(model)(wrapper)
        return documented

    return decorate
