"""Calls to the /v1 API over httpx, with failures turned into errors people can read."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

TIMEOUT = httpx.Timeout(30.0, connect=10.0)
USER_AGENT = "oore-cli"


class CliError(Exception):
    """A failure shown as one line, with the exit code the command ends with."""

    exit_code = 3

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class Unreachable(CliError):
    exit_code = 4


class NotSignedIn(CliError):
    exit_code = 5


class ApiFailure(CliError):
    """The server answered with an error: its status, code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} ({code}, HTTP {status})")
        self.status = status
        self.code = code


def failure(response: httpx.Response) -> CliError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code, message = str(body.get("code") or "error"), body["error"]
    else:
        code, message = "error", response.reason_phrase or "request failed"
    if response.status_code == 401:
        return NotSignedIn(f"{message} ({code}): sign in with `oore login`")
    return ApiFailure(response.status_code, code, message)


class Api:
    """One server, one optional bearer token."""

    def __init__(self, server: str, token: str | None, *, timeout: httpx.Timeout = TIMEOUT):
        self.server = server
        self.token = token
        headers = {"User-Agent": USER_AGENT}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=server, headers=headers, timeout=timeout)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def need_token(self) -> None:
        if not self.token:
            raise NotSignedIn(f"not signed in to {self.server}: run `oore login` or set OORE_TOKEN")

    @contextmanager
    def reaching(self) -> Iterator[None]:
        try:
            yield
        except httpx.TimeoutException:
            raise Unreachable(f"{self.server} did not answer in time") from None
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {self.server}: {exc}") from None

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        auth: bool = True,
    ) -> Any:
        if auth:
            self.need_token()
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        with self.reaching():
            response = self.http.request(method, path, json=body, params=clean or None)
        if response.status_code >= 400:
            raise failure(response)
        if response.status_code == 204 or not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise CliError(f"{method} {path}: the server's answer is not JSON") from None

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, body)

    def pages(self, path: str, key: str, *, page: int = 100, **params: Any) -> list[Any]:
        """Every item of a ``{key: [...], "total": n}`` listing, page by page."""
        items: list[Any] = []
        while True:
            answer = self.get(path, limit=page, offset=len(items), **params)
            batch = answer.get(key) or []
            items.extend(batch)
            if not batch or len(items) >= int(answer.get("total", 0)):
                return items
