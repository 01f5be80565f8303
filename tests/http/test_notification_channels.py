"""``/v1/settings/notification-channels``: create, read, change and delete channels, their
codes and roles, secrets that never come back, and the test message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from oore.domain.users import Role
from oore.runtime import Runtime
from oore.store import Store
from tests.http.conftest import Api, UserFactory
from tests.notify_kit import MailServer, WebhookReceiver, mail_server, webhook_receiver

ROOT = "/v1/settings/notification-channels"
SECRET = "hmac-secret-for-the-channel-000001"
PASSWORD = "smtp-password-for-the-channel-0001"
MISSING = "00000000-0000-4000-8000-00000000dead"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as found:
        yield found


@pytest.fixture
def smtp() -> Iterator[MailServer]:
    with mail_server() as found:
        yield found


def webhook_body(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "team hook",
        "kind": "webhook",
        "events": ["build_failed", "build_recovered"],
        "url": url,
        "secret": SECRET,
        **extra,
    }


def email_body(smtp: MailServer, **extra: Any) -> dict[str, Any]:
    return {
        "name": "team mail",
        "kind": "email",
        "events": ["build_failed"],
        "email": {
            "smtp_host": smtp.host,
            "smtp_port": smtp.port,
            "smtp_security": "none",
            "username": "ci",
            "password": PASSWORD,
            "from_address": "ci@example.com",
            "to_addresses": ["dev@example.com", "qa@example.com"],
        },
        **extra,
    }


async def create(api: Api, token: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = await api.post(ROOT, json=body, token=token)
    assert reply.status == 201, reply.body
    channel: dict[str, Any] = reply.body["channel"]
    return channel


async def test_a_webhook_channel_is_created_read_changed_and_deleted(
    api: Api, owner_token: str, receiver: WebhookReceiver, store: Store
) -> None:
    created = await create(api, owner_token, webhook_body(receiver.url))
    assert created["name"] == "team hook"
    assert created["kind"] == "webhook"
    assert created["enabled"] is True
    assert created["events"] == ["build_failed", "build_recovered"]
    assert created["project_ids"] == []
    assert created["has_secret"] is True
    assert created["url_host"] == "127.0.0.1"
    assert "url" not in created and "secret" not in created and "email" not in created

    listed = await api.get(ROOT, token=owner_token)
    assert listed.status == 200
    assert listed.body == {"channels": [created], "total": 1}
    one = await api.get(f"{ROOT}/{created['id']}", token=owner_token)
    assert one.status == 200 and one.body == {"channel": created}

    changed = await api.call(
        "PATCH",
        f"{ROOT}/{created['id']}",
        json={"name": "renamed", "events": ["build_canceled"], "enabled": False},
        token=owner_token,
    )
    assert changed.status == 200, changed.body
    channel = changed.body["channel"]
    assert (channel["name"], channel["events"], channel["enabled"]) == (
        "renamed",
        ["build_canceled"],
        False,
    )
    assert channel["has_secret"] is True  # omitted: kept
    cleared = await api.call(
        "PATCH", f"{ROOT}/{created['id']}", json={"secret": ""}, token=owner_token
    )
    assert cleared.status == 200 and cleared.body["channel"]["has_secret"] is False

    gone = await api.call("DELETE", f"{ROOT}/{created['id']}", token=owner_token)
    assert gone.status == 200 and gone.body == {"ok": True}
    after = await api.get(f"{ROOT}/{created['id']}", token=owner_token)
    assert (after.status, after.code) == (404, "not_found")

    actions = await store.db.run(
        lambda conn: conn.fetch(
            """SELECT action, details FROM audit_log WHERE resource_type = 'notification_channel'
               ORDER BY id"""
        )
    )
    assert [row["action"] for row in actions] == [
        "notification_channel_created",
        "notification_channel_updated",
        "notification_channel_updated",
        "notification_channel_deleted",
    ]
    assert all(SECRET not in json.dumps(row["details"]) for row in actions)


async def test_an_email_channel_shows_its_settings_but_not_its_password(
    api: Api, owner_token: str, smtp: MailServer
) -> None:
    created = await create(api, owner_token, email_body(smtp, project_ids=[MISSING]))
    assert created["kind"] == "email"
    assert created["has_secret"] is False
    assert "url_host" not in created
    assert created["project_ids"] == [MISSING]
    assert created["email"] == {
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "smtp_security": "none",
        "username": "ci",
        "has_password": True,
        "from_address": "ci@example.com",
        "to_addresses": ["dev@example.com", "qa@example.com"],
    }
    # Replacing the settings without a password keeps the stored one.
    settings = {k: v for k, v in email_body(smtp)["email"].items() if k != "password"}
    settings["to_addresses"] = ["ops@example.com"]
    changed = await api.call(
        "PATCH", f"{ROOT}/{created['id']}", json={"email": settings}, token=owner_token
    )
    assert changed.status == 200, changed.body
    assert changed.body["channel"]["email"]["has_password"] is True
    assert changed.body["channel"]["email"]["to_addresses"] == ["ops@example.com"]


async def test_urls_secrets_and_passwords_are_never_echoed(
    api: Api, owner_token: str, smtp: MailServer
) -> None:
    url = "https://hooks.example.com/services/T000/B000/token-in-the-path-0001"
    hook = await api.post(ROOT, json=webhook_body(url), token=owner_token)
    mattermost = await api.post(
        ROOT,
        json={"name": "mm", "kind": "mattermost", "events": ["build_failed"], "url": url},
        token=owner_token,
    )
    mail = await api.post(ROOT, json=email_body(smtp), token=owner_token)
    listed = await api.get(ROOT, token=owner_token)
    for reply in (hook, mattermost, mail, listed):
        text = json.dumps(reply.body)
        assert reply.status in (200, 201), reply.body
        for value in ("token-in-the-path", SECRET, PASSWORD):
            assert value not in text
    assert mattermost.body["channel"]["url_host"] == "hooks.example.com"


BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("blank name", {"name": "  "}, "invalid_input"),
    ("long name", {"name": "n" * 256}, "invalid_input"),
    ("no events", {"events": []}, "invalid_input"),
    ("unknown event", {"events": ["build_exploded"]}, "invalid_request"),
    ("unknown kind", {"kind": "pager"}, "invalid_request"),
    ("no url", {"url": None}, "invalid_input"),
    ("plain http", {"url": "http://hooks.example.com/x"}, "invalid_input"),
    ("userinfo", {"url": "https://user:pw@hooks.example.com/x"}, "invalid_input"),
    ("not a url", {"url": "hooks.example.com"}, "invalid_input"),
    ("ftp", {"url": "ftp://hooks.example.com/x"}, "invalid_input"),
    ("long secret", {"secret": "s" * 1025}, "invalid_input"),
    ("bad project id", {"project_ids": ["nope"]}, "invalid_input"),
    ("email on a webhook", {"email": {"smtp_host": "x"}}, "invalid_request"),
    ("wrong type", {"enabled": "yes"}, "invalid_request"),
    ("unknown field", {"colour": "red"}, "invalid_request"),
]


async def test_invalid_webhook_channels_are_refused(api: Api, owner_token: str) -> None:
    for case, change, code in BAD_BODIES:
        body = {**webhook_body("https://hooks.example.com/x"), **change}
        body = {key: value for key, value in body.items() if value is not None}
        reply = await api.post(ROOT, json=body, token=owner_token)
        assert (reply.status, reply.code) == (400, code), (case, reply.body)
    assert (await api.get(ROOT, token=owner_token)).body["total"] == 0


BAD_EMAIL: list[tuple[str, dict[str, Any]]] = [
    ("bad from", {"from_address": "not-an-address"}),
    ("no recipients", {"to_addresses": []}),
    ("bad recipient", {"to_addresses": ["dev@example.com", "nobody"]}),
    ("port zero", {"smtp_port": 0}),
    ("port too high", {"smtp_port": 70000}),
    ("blank host", {"smtp_host": " "}),
    ("long password", {"password": "p" * 1025}),
]


async def test_invalid_email_channels_are_refused(
    api: Api, owner_token: str, smtp: MailServer
) -> None:
    for case, change in BAD_EMAIL:
        body = email_body(smtp)
        body["email"] = {**body["email"], **change}
        reply = await api.post(ROOT, json=body, token=owner_token)
        assert (reply.status, reply.code) == (400, "invalid_input"), (case, reply.body)
        assert "email." in reply.body["error"], reply.body
    assert (await api.get(ROOT, token=owner_token)).body["total"] == 0


async def test_the_kind_cannot_change_and_fields_of_another_kind_are_refused(
    api: Api, owner_token: str, smtp: MailServer
) -> None:
    hook = await create(api, owner_token, webhook_body("https://hooks.example.com/x"))
    mail = await create(api, owner_token, email_body(smtp))
    cases = [
        (hook["id"], {"kind": "email"}),
        (hook["id"], {"events": []}),
        (hook["id"], {"url": "http://hooks.example.com/x"}),
        (mail["id"], {"url": "https://hooks.example.com/x"}),
        (mail["id"], {"secret": "s"}),
    ]
    for channel_id, change in cases:
        reply = await api.call("PATCH", f"{ROOT}/{channel_id}", json=change, token=owner_token)
        assert (reply.status, reply.code) == (400, "invalid_input"), (change, reply.body)
    mattermost = await api.post(
        ROOT,
        json={
            "name": "mm",
            "kind": "mattermost",
            "events": ["build_failed"],
            "url": "https://chat.example.com/hooks/x",
            "secret": "s",
        },
        token=owner_token,
    )
    assert (mattermost.status, mattermost.code) == (400, "invalid_input")


async def test_plain_http_is_allowed_to_loopback_only(api: Api, owner_token: str) -> None:
    for url in ("http://127.0.0.1:9/x", "http://localhost:9/x", "http://[::1]:9/x"):
        reply = await api.post(ROOT, json=webhook_body(url), token=owner_token)
        assert reply.status == 201, (url, reply.body)


async def test_unknown_channels_are_404(api: Api, owner_token: str) -> None:
    for channel_id in (MISSING, "not-a-uuid"):
        for method, tail, body in (
            ("GET", "", None),
            ("PATCH", "", {"name": "x"}),
            ("DELETE", "", None),
            ("POST", "/test", None),
            ("GET", "/deliveries", None),
        ):
            reply = await api.call(
                method, f"{ROOT}/{channel_id}{tail}", json=body, token=owner_token
            )
            assert (reply.status, reply.code) == (404, "not_found"), (method, tail, reply.body)


async def test_only_owners_and_admins_see_or_change_channels(
    api: Api, owner_token: str, make_user: UserFactory
) -> None:
    channel = await create(api, owner_token, webhook_body("https://hooks.example.com/x"))
    admin = await make_user(Role.ADMIN)
    assert (await api.get(ROOT, token=admin.token)).status == 200
    for role in (Role.DEVELOPER, Role.QA_VIEWER):
        who = await make_user(role)
        for method, path, body in (
            ("GET", ROOT, None),
            ("POST", ROOT, webhook_body("https://hooks.example.com/y")),
            ("GET", f"{ROOT}/{channel['id']}", None),
            ("PATCH", f"{ROOT}/{channel['id']}", {"name": "x"}),
            ("DELETE", f"{ROOT}/{channel['id']}", None),
            ("POST", f"{ROOT}/{channel['id']}/test", None),
            ("GET", f"{ROOT}/{channel['id']}/deliveries", None),
        ):
            reply = await api.call(method, path, json=body, token=who.token)
            assert (reply.status, reply.code) == (403, "permission_denied"), (role, method, path)
    anonymous = await api.get(ROOT)
    assert (anonymous.status, anonymous.code) == (401, "missing_auth")
    assert (await api.get(ROOT, token=owner_token)).body["total"] == 1


async def test_a_test_message_is_queued_signed_and_shown_in_the_deliveries(
    api: Api,
    owner_token: str,
    runtime: Runtime,
    receiver: WebhookReceiver,
    smtp: MailServer,
) -> None:
    hook = await create(api, owner_token, webhook_body(receiver.url))
    mail = await create(api, owner_token, email_body(smtp))
    queued = await api.post(f"{ROOT}/{hook['id']}/test", token=owner_token)
    assert queued.status == 200, queued.body
    delivery = queued.body["delivery"]
    assert (delivery["event"], delivery["status"], delivery["attempts"]) == ("test", "pending", 0)
    mailed = await api.post(f"{ROOT}/{mail['id']}/test", token=owner_token)
    assert mailed.status == 200, mailed.body
    with trio.fail_after(10):
        await runtime.notifications.drain_now()

    [got] = receiver.received
    assert got.path == "/hooks/oore?token=abc123"
    assert got.signed_by(SECRET)
    assert got.headers["x-oore-event"] == "test"
    assert got.headers["x-oore-delivery"] == delivery["id"]
    assert got.json() == {
        "event": "test",
        "delivery_id": delivery["id"],
        "channel": "team hook",
        "message": "Test notification from oore",
    }
    [letter] = smtp.mails
    assert letter["Subject"] == "[oore] test notification for team mail"
    assert letter["X-Envelope-To"] == "dev@example.com, qa@example.com"
    assert smtp.logins == [("ci", PASSWORD)]

    shown = await api.get(f"{ROOT}/{hook['id']}/deliveries", token=owner_token)
    assert shown.status == 200
    [sent] = shown.body["deliveries"]
    assert shown.body["total"] == 1
    assert (sent["id"], sent["status"], sent["attempts"]) == (delivery["id"], "sent", 1)
    assert "next_attempt_at" not in sent and "last_error" not in sent
    assert isinstance(sent["sent_at"], int)


async def test_the_routes_are_typed_in_the_openapi_document(api: Api) -> None:
    reply = await api.get("/v1/openapi.json")
    paths = reply.body["paths"]
    assert set(paths[ROOT]) >= {"get", "post"}
    assert set(paths[f"{ROOT}/{{channel_id}}"]) >= {"get", "patch", "delete"}
    assert "post" in paths[f"{ROOT}/{{channel_id}}/test"]
    assert "get" in paths[f"{ROOT}/{{channel_id}}/deliveries"]
    schemas = reply.body["components"]["schemas"]
    assert {"ChannelView", "EmailView", "DeliveryView"} <= set(schemas)
    created = paths[ROOT]["post"]
    assert "requestBody" in created and "201" in created["responses"]
    assert schemas["ChannelView"]["properties"]["kind"]["enum"] == [
        "webhook",
        "mattermost",
        "email",
    ]
