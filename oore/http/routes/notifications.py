"""Notification channels (contract §2.14): webhook, Mattermost and email channels that are
told of build outcomes, and their recent deliveries. Owner/admin (``instance_settings``).

Types are checked here (400 ``invalid_request``); values by the notification rules (400
``invalid_input`` naming the field). URLs, secrets and SMTP passwords are write-only: a
channel shows ``url_host``, ``has_secret`` and ``email.has_password`` instead. On PATCH an
omitted field keeps its value, and a blank ``secret`` or ``email.password`` clears it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel
from quart import Blueprint, Response, jsonify
from quart_schema import document_response, security_scheme

from oore.http.body import Body, json_body
from oore.http.context import client_ip, require_session, services
from oore.http.routes.auth import OkOut

blueprint = Blueprint("notifications", __name__)

Kind = Literal["webhook", "mattermost", "email"]
Event = Literal["build_failed", "build_recovered", "build_canceled", "build_succeeded"]
Security = Literal["starttls", "tls", "none"]
ROOT = "/v1/settings/notification-channels"


class EmailIn(Body):
    smtp_host: str
    smtp_port: int = 587
    smtp_security: Security = "starttls"
    username: str | None = None
    password: str | None = None
    from_address: str
    to_addresses: list[str]


class EmailPatchIn(EmailIn):
    """Email settings are replaced as a whole; an omitted or null password is kept."""


class ChannelIn(Body):
    """``url`` (and ``secret``, webhooks only) for webhook and Mattermost channels;
    ``email`` for email channels. Events: ``build_failed`` (failed or timed out; the
    payload's ``build.status`` tells which), ``build_recovered`` (succeeded after the
    previous build of the same pipeline and branch failed or timed out), ``build_canceled``,
    ``build_succeeded`` (a recovery is sent as ``build_recovered`` when both are chosen).
    ``project_ids`` empty: every project."""

    name: str
    kind: Kind
    enabled: bool = True
    events: list[Event]
    project_ids: list[str] = []
    url: str | None = None
    secret: str | None = None
    email: EmailIn | None = None


class ChannelPatchIn(Body):
    name: str | None = None
    kind: Kind | None = None
    enabled: bool | None = None
    events: list[Event] | None = None
    project_ids: list[str] | None = None
    url: str | None = None
    secret: str | None = None
    email: EmailPatchIn | None = None


class EmailView(BaseModel):
    smtp_host: str
    smtp_port: int
    smtp_security: Security
    username: str | None = None
    has_password: bool
    from_address: str
    to_addresses: list[str]


class ChannelView(BaseModel):
    id: str
    name: str
    kind: Kind
    enabled: bool
    events: list[Event]
    project_ids: list[str]
    has_secret: bool
    url_host: str | None = None
    email: EmailView | None = None
    created_at: int
    updated_at: int


class ChannelOut(BaseModel):
    channel: ChannelView


class ChannelListOut(BaseModel):
    channels: list[ChannelView]
    total: int


class DeliveryView(BaseModel):
    id: str
    channel_id: str
    event: str
    build_id: str | None = None
    status: Literal["pending", "sending", "sent", "failed"]
    attempts: int
    last_error: str | None = None
    next_attempt_at: int | None = None
    created_at: int
    sent_at: int | None = None


class DeliveryOut(BaseModel):
    delivery: DeliveryView


class DeliveryListOut(BaseModel):
    deliveries: list[DeliveryView]
    total: int


@blueprint.get(ROOT)
@security_scheme([{"bearer": []}])
@document_response(ChannelListOut)
async def list_channels() -> Response:
    """Every notification channel, oldest first."""
    session = await require_session()
    found = await services().notifications.channels(session)
    return jsonify({"channels": [c.to_json() for c in found], "total": len(found)})


@blueprint.post(ROOT)
@security_scheme([{"bearer": []}])
@json_body(ChannelIn)
@document_response(ChannelOut, 201)
async def create_channel(body: ChannelIn) -> tuple[Response, int]:
    """Create a channel; it is told of the outcomes it lists from now on."""
    session = await require_session()
    channel = await services().notifications.create(
        session, body.model_dump(exclude_none=True), client_ip()
    )
    return jsonify({"channel": channel.to_json()}), 201


@blueprint.get(f"{ROOT}/<channel_id>")
@security_scheme([{"bearer": []}])
@document_response(ChannelOut)
async def get_channel(channel_id: str) -> Response:
    """One channel (404 ``not_found``)."""
    session = await require_session()
    channel = await services().notifications.channel(session, channel_id)
    return jsonify({"channel": channel.to_json()})


@blueprint.patch(f"{ROOT}/<channel_id>")
@security_scheme([{"bearer": []}])
@json_body(ChannelPatchIn)
@document_response(ChannelOut)
async def patch_channel(channel_id: str, body: ChannelPatchIn) -> Response:
    """Change some fields of a channel; the kind cannot change."""
    session = await require_session()
    channel = await services().notifications.update(
        session, channel_id, body.model_dump(exclude_none=True), client_ip()
    )
    return jsonify({"channel": channel.to_json()})


@blueprint.delete(f"{ROOT}/<channel_id>")
@security_scheme([{"bearer": []}])
@document_response(OkOut)
async def delete_channel(channel_id: str) -> Response:
    """Delete a channel and its queued deliveries."""
    session = await require_session()
    await services().notifications.delete(session, channel_id, client_ip())
    return jsonify({"ok": True})


@blueprint.post(f"{ROOT}/<channel_id>/test")
@security_scheme([{"bearer": []}])
@document_response(DeliveryOut)
async def test_channel(channel_id: str) -> Response:
    """Queue a test message (event ``test``) to the channel; its delivery shows how it went."""
    session = await require_session()
    delivery = await services().notifications.send_test(session, channel_id)
    return jsonify({"delivery": delivery.to_json()})


@blueprint.get(f"{ROOT}/<channel_id>/deliveries")
@security_scheme([{"bearer": []}])
@document_response(DeliveryListOut)
async def list_deliveries(channel_id: str) -> Response:
    """The channel's 50 most recent deliveries, newest first: status, attempts, last
    error and, while one is still to come, the time of the next attempt."""
    session = await require_session()
    found = await services().notifications.deliveries(session, channel_id)
    return jsonify({"deliveries": [d.to_json() for d in found], "total": len(found)})
