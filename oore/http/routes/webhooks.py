"""Webhook receivers: ``POST /v1/webhooks/github`` and ``POST /v1/webhooks/gitlab`` (§9.3)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import BaseModel
from quart import Blueprint, Response, jsonify, request
from quart_schema import document_response

from oore.domain.webhooks import MAX_BODY_BYTES, Provider
from oore.errors import (
    ApiError,
    Forbidden,
    InvalidInput,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
)
from oore.http.body import raw_body
from oore.http.context import services
from oore.http.openapi import errors
from oore.services.webhooks import Accepted

blueprint = Blueprint("webhooks", __name__)


class WebhookOut(BaseModel):
    ok: bool
    duplicate: bool | None = None


async def _bounded_body() -> bytes:
    """The raw body, refused with 413 as soon as it passes 1 MiB (checked before anything)."""
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        raise PayloadTooLarge()
    received = bytearray()
    async for chunk in request.body:
        received += chunk
        if len(received) > MAX_BODY_BYTES:
            raise PayloadTooLarge()
    return bytes(received)


async def _answer(provider: Provider, receive: Callable[[], Awaitable[Accepted]]) -> Response:
    """Receive a delivery and count how its receipt ended."""
    metrics = services().metrics
    try:
        accepted = await receive()
    except ApiError as exc:
        metrics.webhook_received(provider, "rejected" if exc.status < 500 else "error")
        raise
    except Exception:
        metrics.webhook_received(provider, "error")
        raise
    metrics.webhook_received(provider, "duplicate" if accepted.duplicate else "accepted")
    return jsonify(accepted.to_json())


@blueprint.post("/v1/webhooks/github")
@raw_body
@document_response(WebhookOut)
@errors(
    Unauthorized("missing_signature"),
    Unauthorized("invalid_signature"),
    PayloadTooLarge(),
    InvalidInput("invalid_payload"),
    InvalidInput("stale_event"),
    ServiceUnavailable("webhook_queue_unavailable"),
    Forbidden("mode_restricted"),
)
async def github() -> Response:
    """A GitHub delivery signed with ``X-Hub-Signature-256``."""

    async def receive() -> Accepted:
        return await services().webhooks.receive_github(
            await _bounded_body(),
            signature=request.headers.get("X-Hub-Signature-256"),
            event=request.headers.get("X-GitHub-Event"),
            delivery=request.headers.get("X-GitHub-Delivery"),
        )

    return await _answer(Provider.GITHUB, receive)


@blueprint.post("/v1/webhooks/gitlab")
@raw_body
@document_response(WebhookOut)
@errors(
    Unauthorized("missing_token"),
    Unauthorized("invalid_token"),
    PayloadTooLarge(),
    InvalidInput("invalid_payload"),
    InvalidInput("stale_event"),
    ServiceUnavailable("webhook_queue_unavailable"),
    Forbidden("mode_restricted"),
)
async def gitlab() -> Response:
    """A GitLab delivery carrying its repository's ``X-Gitlab-Token``."""

    async def receive() -> Accepted:
        return await services().webhooks.receive_gitlab(
            await _bounded_body(),
            token=request.headers.get("X-Gitlab-Token"),
            event=request.headers.get("X-Gitlab-Event"),
            event_uuid=request.headers.get("X-Gitlab-Event-UUID"),
        )

    return await _answer(Provider.GITLAB, receive)
