"""OpenAPI details quart-schema leaves to us: routes that answer 204 with no body."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from quart import Response
from quart_schema import OpenAPIProvider
from werkzeug.routing import Rule

_NO_CONTENT = "_oore_no_content"


def no_content(view: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[Response]]:
    """Decorator: the view returns nothing; answer 204 and document it."""

    @wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Response:
        await view(*args, **kwargs)
        return Response(b"", status=204)

    setattr(wrapper, _NO_CONTENT, True)
    return wrapper


class Provider(OpenAPIProvider):
    """Adds the 204 answer of :func:`no_content` views to their operations."""

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        if getattr(self._app.view_functions[rule.endpoint], _NO_CONTENT, False):
            for operations in paths.values():
                for operation in operations.values():
                    operation["responses"] = {
                        **operation["responses"],
                        204: {"description": "No content"},
                    }
        return paths, components
