"""Webhook receivers: ``POST /v1/webhooks/github`` and ``POST /v1/webhooks/gitlab`` (§9.3)."""

from __future__ import annotations

from pydantic import BaseModel
from quart import Blueprint, Response, jsonify, request
from quart_schema import document_response

from oore.domain.webhooks import MAX_BODY_BYTES
from oore.errors import PayloadTooLarge
from oore.http.body import raw_body
from oore.http.context import services

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


@blueprint.post("/v1/webhooks/github")
@raw_body
@document_response(WebhookOut)
async def github() -> Response:
    """A GitHub delivery signed with ``X-Hub-Signature-256``."""
    body = await _bounded_body()
    accepted = await services().webhooks.receive_github(
        body,
        signature=request.headers.get("X-Hub-Signature-256"),
        event=request.headers.get("X-GitHub-Event"),
        delivery=request.headers.get("X-GitHub-Delivery"),
    )
    return jsonify(accepted.to_json())


@blueprint.post("/v1/webhooks/gitlab")
@raw_body
@document_response(WebhookOut)
async def gitlab() -> Response:
    """A GitLab delivery carrying its repository's ``X-Gitlab-Token``."""
    body = await _bounded_body()
    accepted = await services().webhooks.receive_gitlab(
        body,
        token=request.headers.get("X-Gitlab-Token"),
        event=request.headers.get("X-Gitlab-Event"),
        event_uuid=request.headers.get("X-Gitlab-Event-UUID"),
    )
    return jsonify(accepted.to_json())
