"""OpenAPI details quart-schema leaves to us: answers that are not JSON models."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from quart import Response
from quart_schema import OpenAPIProvider
from werkzeug.routing import Rule

_RAW = "_oore_raw_responses"

F = TypeVar("F", bound=Callable[..., Any])


def raw_response(status: int, description: str, media_type: str | None = None) -> Callable[[F], F]:
    """Decorator: document an answer without a JSON model (an event stream, no content)."""

    def decorate(view: F) -> F:
        documented: dict[int, dict[str, Any]] = dict(getattr(view, _RAW, {}))
        answer: dict[str, Any] = {"description": description}
        if media_type is not None:
            answer["content"] = {media_type: {"schema": {"type": "string"}}}
        documented[status] = answer
        setattr(view, _RAW, documented)
        return view

    return decorate


def no_content(view: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[Response]]:
    """Decorator: the view returns nothing; answer 204 and document it."""

    @wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Response:
        await view(*args, **kwargs)
        return Response(b"", status=204)

    return raw_response(204, "No content")(wrapper)


class Provider(OpenAPIProvider):
    """Adds the answers documented with :func:`raw_response` to their operations."""

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        raw = getattr(self._app.view_functions[rule.endpoint], _RAW, None)
        if raw:
            for operations in paths.values():
                for operation in operations.values():
                    operation["responses"] = {**operation["responses"], **raw}
        return paths, components
