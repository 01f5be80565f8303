"""Query-string parsing shared by list endpoints; undecodable values are 400 invalid_request.

Text values holding a control character (NUL included) or a lone surrogate, and integers
outside the signed 64-bit range (what the database stores), count as undecodable.

A view declares every query parameter it reads with :func:`query` (the OpenAPI document
lists them from there); reading one it did not declare raises :class:`UndeclaredQuery`,
a programming error, so the code and the document cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from quart import current_app, request

from oore.domain.json_input import INT_MAX, INT_MIN
from oore.errors import InvalidInput, InvalidRequest

_UNUSABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Enough characters for any 64-bit integer with a sign; a longer one is out of range.
_MAX_INT_CHARS = 20

QUERY_ATTRIBUTE = "_oore_query"
F = TypeVar("F", bound=Callable[..., Any])


class UndeclaredQuery(Exception):
    """A view read a query parameter it did not declare (a bug, never a client's fault)."""


@dataclass(frozen=True)
class Param:
    """One query parameter a view reads: its name, type and the values the code accepts."""

    name: str
    description: str
    kind: Literal["string", "integer"] = "string"
    choices: tuple[str, ...] = ()
    minimum: int = INT_MIN
    maximum: int = INT_MAX
    pattern: str | None = None  # a text value the code accepts matches it
    required: bool = False  # the code refuses a request without it (400)


def text(
    name: str, description: str, *, pattern: str | None = None, required: bool = False
) -> Param:
    return Param(name, description, pattern=pattern, required=required)


def integer(
    name: str, description: str, *, minimum: int = INT_MIN, maximum: int = INT_MAX
) -> Param:
    return Param(name, description, "integer", minimum=minimum, maximum=maximum)


def choice(name: str, choices: tuple[str, ...], description: str) -> Param:
    return Param(name, description, choices=choices)


def direction(description: str = "Sort order (default desc)") -> Param:
    return choice("direction", ("asc", "desc"), description)


def page_params(*, default: int, maximum: int, strict: bool = False) -> tuple[Param, Param]:
    """``limit`` and ``offset`` as :func:`query_page` reads them."""
    if strict:
        return (
            integer("limit", f"At most this many (default {default}, max {maximum})", minimum=1),
            integer("offset", "Skip this many (default 0)", minimum=0),
        )
    return (
        integer(
            "limit",
            f"At most this many (default {default}; above {maximum} counts as {maximum}; "
            "negative: no limit)",
        ),
        integer("offset", "Skip this many (default 0; negative counts as 0)"),
    )


def query(*params: Param | tuple[Param, ...]) -> Callable[[F], F]:
    """Decorator: the query parameters the view reads (and the document lists)."""
    flat: list[Param] = []
    for param in params:
        flat.extend(param if isinstance(param, tuple) else (param,))

    def decorate(view: F) -> F:
        declared: dict[str, Param] = dict(getattr(view, QUERY_ATTRIBUTE, {}))
        declared.update((param.name, param) for param in flat)
        setattr(view, QUERY_ATTRIBUTE, declared)
        return view

    return decorate


class QueryArgs:
    """The query of one request read against the parameters its view declares: what the
    Quart views read through the functions below and the lean listener reads directly, so
    both validate from the same :class:`Param` declarations."""

    __slots__ = ("_args", "_declared", "_where")

    def __init__(self, declared: Mapping[str, Param], args: Mapping[str, str], where: str) -> None:
        self._declared = declared
        self._args = args  # the first value of each name
        self._where = where

    def declared(self, name: str) -> Param:
        """The declaration of ``name``; :class:`UndeclaredQuery` without one."""
        found = self._declared.get(name)
        if found is None:
            raise UndeclaredQuery(f"{self._where} reads ?{name} but does not declare it")
        return found

    def raw(self, name: str) -> str | None:
        """A query value exactly as sent (a token, an OAuth code), or None."""
        self.declared(name)
        return self._args.get(name)

    def text(self, name: str) -> str | None:
        """A trimmed query value, or None when absent or blank; 400 ``invalid_request``
        when it holds a control character or a lone surrogate."""
        return text_value(name, self.raw(name))

    def number(self, name: str) -> int | None:
        """An integer query value; one that is not an integer, or is outside the signed
        64-bit range, is 400 ``invalid_request``."""
        if self.declared(name).kind != "integer":
            raise UndeclaredQuery(f"{self._where} reads ?{name} as an integer, declared text")
        return int_value(name, self._args.get(name))

    def choice(self, name: str) -> str | None:
        """One of the declared choices or None; anything else is 400 ``invalid_input``."""
        choices = self.declared(name).choices
        if not choices:
            raise UndeclaredQuery(f"{self._where} reads ?{name} as a choice, declared none")
        value = self.text(name)
        if value is not None and value not in choices:
            raise InvalidInput(
                "invalid_input", f"{name} must be one of: {', '.join(sorted(choices))}"
            )
        return value

    def page(self, *, default: int, maximum: int, strict: bool = False) -> Page:
        """``limit``/``offset``; ``strict`` refuses limit <= 0 and offset < 0 (400
        invalid_input).

        Without ``strict`` a negative limit means "no limit" (contract §2.5 quirk) and a
        limit over the maximum is clamped.
        """
        limit = self.number("limit")
        offset = self.number("offset") or 0
        if strict:
            if limit is not None and limit <= 0:
                raise InvalidInput("invalid_input", "limit must be positive")
            if offset < 0:
                raise InvalidInput("invalid_input", "offset must not be negative")
        offset = max(offset, 0)
        if limit is None:
            return Page(default, offset)
        if limit < 0:
            return Page(None, offset)
        return Page(min(limit, maximum), offset)


def declarations(view: object) -> Mapping[str, Param]:
    """The query parameters ``view`` declares with :func:`query`."""
    found: Mapping[str, Param] = getattr(view, QUERY_ATTRIBUTE, {})
    return found


def current_query() -> QueryArgs:
    """The current request's query, read against its view's declarations."""
    endpoint = request.endpoint or ""
    return QueryArgs(declarations(current_app.view_functions.get(endpoint)), request.args, endpoint)


def declared(name: str) -> Param:
    """The current view's declaration of ``name``; :class:`UndeclaredQuery` without one."""
    return current_query().declared(name)


def query_raw(name: str) -> str | None:
    """A query value exactly as sent (a token, an OAuth code), or None."""
    return current_query().raw(name)


def query_str(name: str) -> str | None:
    """See :meth:`QueryArgs.text`."""
    return current_query().text(name)


def query_int(name: str) -> int | None:
    """See :meth:`QueryArgs.number`."""
    return current_query().number(name)


def text_value(name: str, value: str | None) -> str | None:
    """:func:`query_str` of a value already taken from a query string."""
    if value is None:
        return None
    if _UNUSABLE.search(value):
        raise InvalidRequest(details=f"{name}: control characters are not allowed")
    value = value.strip()
    return value or None


def int_value(name: str, raw: str | None) -> int | None:
    """:func:`query_int` of a value already taken from a query string."""
    value = text_value(name, raw)
    if value is None:
        return None
    try:
        number = int(value[: _MAX_INT_CHARS + 1])
    except ValueError:
        raise InvalidRequest(details=f"{name}: not an integer") from None
    if len(value) > _MAX_INT_CHARS or not INT_MIN <= number <= INT_MAX:
        raise InvalidRequest(details=f"{name}: out of the 64-bit range")
    return number


def query_choice(name: str) -> str | None:
    """See :meth:`QueryArgs.choice`."""
    return current_query().choice(name)


@dataclass(frozen=True)
class Page:
    limit: int | None
    offset: int


def query_page(*, default: int, maximum: int, strict: bool = False) -> Page:
    """See :meth:`QueryArgs.page`."""
    return current_query().page(default=default, maximum=maximum, strict=strict)
