"""OpenAPI details quart-schema leaves to us: answers that are not JSON models, the error
answers of every operation, and the query parameters views declare.

Every error answer has one body, the ``Error`` schema (what ``oore/http/errors.py``
writes). Most statuses follow from the route itself (see :meth:`Provider.common_errors`);
a view names the others with :func:`errors`.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Iterable
from functools import wraps
from typing import Any, TypeVar

from quart import Response
from quart_schema import OpenAPIProvider
from quart_schema.validation import QUART_SCHEMA_REQUEST_ATTRIBUTE
from werkzeug.routing import Rule

from oore.domain.json_input import INT_MAX, INT_MIN
from oore.errors import ApiError, StoreUnavailable
from oore.http.body import RAW_BODY
from oore.http.guard import UNGUARDED_PREFIXES
from oore.http.guesses import UNCOUNTED_PREFIXES
from oore.http.query import QUERY_ATTRIBUTE, Param

_RAW = "_oore_raw_responses"
_ERRORS = "_oore_errors"
_STORELESS = "_oore_storeless"

F = TypeVar("F", bound=Callable[..., Any])

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "description": "Every error answer: a message, a stable code, maybe details, the request id.",
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "What went wrong, for people"},
        "code": {"type": "string", "description": "A stable, machine-readable code"},
        "details": {"type": "string", "description": "More about the failure (a field...)"},
        "request_id": {"type": "string", "description": "Also in the X-Request-Id header"},
    },
    "required": ["error", "code"],
    "additionalProperties": False,
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}

# Control characters and lone surrogates are refused (oore/http/query.py).
_PRINTABLE = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
_PRINTABLE_NOT_BLANK = (
    "^[^\\u0000-\\u001f\\u007f-\\u009f]*"
    "[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
)
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_REASONS = {
    400: "Bad request",
    401: "Missing or invalid credential",
    403: "Not allowed",
    404: "Not found",
    408: "Request body too slow",
    409: "Conflict",
    410: "Gone",
    412: "Precondition failed",
    413: "Request body too large",
    416: "Range not satisfiable",
    422: "Unprocessable",
    429: "Too many requests",
    500: "Server failure",
    502: "Upstream failure",
    503: "Unavailable",
}


def raw_response(
    status: int,
    description: str,
    media_type: str | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> Callable[[F], F]:
    """Decorator: document an answer without a JSON model (an event stream, a download, a
    redirect, no content); ``headers``: the headers it carries, by name, with what they say."""

    def decorate(view: F) -> F:
        documented: dict[int, dict[str, Any]] = dict(getattr(view, _RAW, {}))
        answer: dict[str, Any] = {"description": description}
        if headers:
            answer["headers"] = {
                name: {"description": said, "schema": {"type": "string"}}
                for name, said in headers.items()
            }
        if media_type is not None:
            schema: dict[str, Any] = {"type": "string"}
            if not media_type.startswith("text/"):
                schema["format"] = "binary"
            answer["content"] = {media_type: {"schema": schema}}
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


def errors(*answers: ApiError) -> Callable[[F], F]:
    """Decorator: the errors a view answers beyond those its route implies (each one's
    status and code, e.g. ``Conflict("build_not_cancelable")``)."""

    def decorate(view: F) -> F:
        known: list[tuple[int, str]] = list(getattr(view, _ERRORS, ()))
        known.extend((answer.status, answer.code) for answer in answers)
        setattr(view, _ERRORS, tuple(known))
        return view

    return decorate


def storeless(view: F) -> F:
    """Decorator: the view answers without the database (no 503 ``store_unavailable``)."""
    setattr(view, _STORELESS, True)
    return view


def query_parameter(param: Param) -> dict[str, Any]:
    """The OpenAPI parameter object of a declared query parameter."""
    schema: dict[str, Any]
    if param.choices:
        schema = {"type": "string", "enum": list(param.choices)}
    elif param.kind == "integer":
        schema = {"type": "integer", "format": "int64"}
        schema["minimum"] = param.minimum
        schema["maximum"] = param.maximum
    elif param.required and param.pattern is None:
        schema = {"type": "string", "pattern": _PRINTABLE_NOT_BLANK}  # blank reads as absent
    else:
        schema = {"type": "string", "pattern": param.pattern or _PRINTABLE}
    parameter: dict[str, Any] = {
        "name": param.name,
        "in": "query",
        "description": param.description,
    }
    if param.required:
        parameter["required"] = True
    return {**parameter, "schema": schema}


def _refuses(param: Param) -> bool:
    """Does the code answer 400 ``invalid_input`` to some values of ``param``?"""
    bounded = (param.minimum, param.maximum) != (INT_MIN, INT_MAX)
    return bool(param.choices) or param.required or bounded


def _error_answer(status: int, codes: Iterable[str]) -> dict[str, Any]:
    named = set(codes)
    listed = ", ".join(f"`{code}`" for code in sorted(named))
    answer: dict[str, Any] = {
        "description": f"{_REASONS.get(status, 'Error')}: {listed}",
        "content": {"application/json": {"schema": ERROR_REF}},
    }
    if StoreUnavailable.default_code in named:
        said = f"Seconds to wait before retrying (with {StoreUnavailable.default_code})"
        answer["headers"] = {"Retry-After": {"description": said, "schema": {"type": "string"}}}
    return answer


class Provider(OpenAPIProvider):
    """Adds raw answers, error answers and declared query parameters to the operations.

    The document is built once, on first request: the routes do not change while the app
    runs, and building it walks every rule and model (seconds of CPU that any anonymous
    client could otherwise ask for again and again)."""

    _document: dict[str, Any] | None = None

    def schema(self) -> dict[str, Any]:
        if self._document is None:
            document = super().schema()
            document["components"]["schemas"]["Error"] = ERROR_SCHEMA
            self._document = document
        return copy.deepcopy(self._document)

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        view = self._app.view_functions[rule.endpoint]
        raw = getattr(view, _RAW, {})
        declared: dict[str, Param] = getattr(view, QUERY_ATTRIBUTE, {})
        for operations in paths.values():
            for method, operation in operations.items():
                failures = self.common_errors(view, rule, method.upper(), operation, declared)
                failures.extend(getattr(view, _ERRORS, ()))
                by_status: dict[int, list[str]] = {}
                for status, code in failures:
                    by_status.setdefault(status, []).append(code)
                answers = {**operation["responses"], **raw}
                for status in sorted(by_status):
                    answers.setdefault(status, _error_answer(status, by_status[status]))
                operation["responses"] = dict(sorted(answers.items(), key=lambda a: int(a[0])))
                if "requestBody" in operation:
                    operation["requestBody"]["required"] = True  # no body: 400 invalid_request
                operation["parameters"] = [
                    *operation["parameters"],
                    *(query_parameter(param) for param in declared.values()),
                ]
        return paths, components

    def common_errors(
        self,
        view: Callable[..., Any],
        rule: Rule,
        method: str,
        operation: dict[str, Any],
        declared: dict[str, Param],
    ) -> list[tuple[int, str]]:
        """The errors an operation answers by the shape of its route: the guard's, its
        credential's, its path's, its body's, its query's, the guess limit's and the
        database's."""
        found: list[tuple[int, str]] = []
        if not rule.rule.startswith(UNGUARDED_PREFIXES):
            found.append((400, "invalid_host"))
            if method in _STATE_CHANGING:
                found.append((403, "origin_not_allowed"))
        if method in _STATE_CHANGING and not getattr(view, RAW_BODY, False):
            found.append((400, "invalid_request"))  # a Content-Type other than JSON
        if operation.get("security"):
            found += [
                (401, "missing_auth"),
                (401, "invalid_session"),
                (401, "invalid_token"),
                (403, "permission_denied"),
                (403, "insufficient_role"),
            ]
        if rule.arguments:
            found.append((404, "not_found"))
        if getattr(view, QUART_SCHEMA_REQUEST_ATTRIBUTE, None) is not None:
            found += [(400, "invalid_request"), (400, "invalid_input"), (413, "payload_too_large")]
        if declared:
            found.append((400, "invalid_request"))
            if any(
                param.choices
                or param.required
                or (param.minimum, param.maximum) != (INT_MIN, INT_MAX)
                for param in declared.values()
            ):
                found.append((400, "invalid_input"))
        if not rule.rule.startswith(UNCOUNTED_PREFIXES):
            # any request presenting a credential, from a client that guessed too often
            found.append((429, "too_many_attempts"))
        if not getattr(view, _STORELESS, False):
            found.append((503, StoreUnavailable.default_code))
        return found
