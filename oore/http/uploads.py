"""Local artifact uploads at the ASGI level: ``PUT /v1/artifacts/local-upload/<token>``.

Quart reads a request body into memory as fast as it arrives; an upload of up to 512 MiB
must go to disk at the pace the disk takes it instead. This wrapper decides on the token
before reading any of the body (401 ``invalid_upload_token``), refuses a declared length
over the limit (413), streams the body to the object while asking for the next chunk only
once the last one is handled (so the server's flow control holds the client back), and
then hands the request to the Quart route with the outcome and an empty body: the answer,
or the error through the app's one error mapping, comes from there.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import trio

from oore.domain.artifacts import MAX_UPLOAD_BYTES
from oore.errors import ApiError, PayloadTooLarge, RequestTimeout
from oore.services.artifacts import Artifacts

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UPLOAD_PREFIX = "/v1/artifacts/local-upload/"
OUTCOME = "oore.local_upload"
# A client that sends nothing for this long is given up on.
IDLE_SECONDS = 60.0


@dataclass(frozen=True)
class UploadOutcome:
    """What the wrapper did with the body: stored it (``error`` None) or refused it."""

    error: ApiError | None
    received: int = 0


class _Disconnected(Exception):
    """The client went away mid-body: nobody is left to answer."""


def upload_outcome(scope: Mapping[str, object]) -> UploadOutcome | None:
    """The outcome the wrapper left for the route, or None when it did not run."""
    extensions = scope.get("extensions")
    found = extensions.get(OUTCOME) if isinstance(extensions, dict) else None
    return found if isinstance(found, UploadOutcome) else None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


class LocalUploads:
    """ASGI middleware in front of the Quart app for the local upload route."""

    def __init__(self, app: ASGIApp, artifacts: Artifacts) -> None:
        self._app = app
        self._artifacts = artifacts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope.get("method") != "PUT"
            or not path.startswith(UPLOAD_PREFIX)
        ):
            await self._app(scope, receive, send)
            return
        try:
            received = await self._store(path.removeprefix(UPLOAD_PREFIX), scope, receive)
            outcome = UploadOutcome(None, received)
        except ApiError as exc:
            outcome = UploadOutcome(exc)
        except _Disconnected:
            return
        # The route sees what it gets: an empty body (the app's 2 MiB limit stays intact).
        headers = [
            (name, value)
            for name, value in scope.get("headers", [])
            if name.lower() not in (b"content-length", b"transfer-encoding")
        ]
        extensions = {**(scope.get("extensions") or {}), OUTCOME: outcome}
        inner = {
            **scope,
            "headers": [*headers, (b"content-length", b"0")],
            "extensions": extensions,
        }
        await self._app(inner, _EmptyBody(), send)

    async def _store(self, token: str, scope: Scope, receive: Receive) -> int:
        upload = await self._artifacts.begin_local_upload(token)
        declared = _content_length(scope)
        if declared is not None and declared > MAX_UPLOAD_BYTES:
            raise PayloadTooLarge(
                "payload_too_large", f"An artifact upload is at most {MAX_UPLOAD_BYTES} bytes"
            )
        async with aclosing(_body(receive)) as body:
            return await upload.receive(body, limit=MAX_UPLOAD_BYTES)


async def _body(receive: Receive) -> AsyncGenerator[bytes, None]:
    """The request body, one ASGI message at a time."""
    while True:
        message: Message | None = None
        with trio.move_on_after(IDLE_SECONDS):
            message = await receive()
        if message is None:
            raise RequestTimeout()
        if message["type"] == "http.disconnect":
            raise _Disconnected()
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


class _EmptyBody:
    """The receive channel the Quart route sees: an empty body, then nothing more."""

    def __init__(self) -> None:
        self._sent = False

    async def __call__(self) -> Message:
        if not self._sent:
            self._sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await trio.sleep_forever()
        raise AssertionError("unreachable")
