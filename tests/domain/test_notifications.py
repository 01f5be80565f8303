"""Notification rules: channel input, the retry schedule, the signature and the messages."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from oore.domain.notifications import (
    BACKOFF,
    MAX_ATTEMPTS,
    ChannelKind,
    Message,
    NotificationEvent,
    SmtpSecurity,
    check_create,
    check_update,
    host_of,
    retry_delay,
    short_error,
    signature,
)
from oore.errors import InvalidInput

BUILD: dict[str, Any] = {
    "id": "b1",
    "number": 12,
    "status": "failed",
    "project_id": "p1",
    "project_name": "app",
    "pipeline_id": "l1",
    "pipeline_name": "ci",
    "branch": "main",
    "commit_sha": "abc123",
    "trigger_actor": "owner@local",
    "started_at": 1,
    "finished_at": 2,
}


def test_retries_back_off_from_30_seconds_to_6_hours_then_give_up() -> None:
    delays = [retry_delay(n) for n in range(1, MAX_ATTEMPTS + 1)]
    assert delays == [30, 120, 600, 3600, 21600, 21600, 21600, None]
    assert list(BACKOFF) == delays[:-1]
    assert MAX_ATTEMPTS == 8


def test_the_signature_is_the_hex_hmac_sha256_of_the_exact_body() -> None:
    body = b'{"event":"build_failed"}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert signature("s3cret", body) == f"sha256={expected}"
    assert signature("s3cret", body + b" ") != signature("s3cret", body)


def test_a_webhook_channel_is_checked_and_trimmed() -> None:
    checked = check_create(
        {
            "name": "  hook ",
            "kind": "webhook",
            "events": ["build_failed", "build_failed", "build_recovered"],
            "url": " https://hooks.example.com/x?token=t ",
            "secret": " s ",
            "project_ids": ["0000000A-0000-4000-8000-000000000001"],
        }
    )
    assert checked.name == "hook"
    assert checked.kind is ChannelKind.WEBHOOK
    assert checked.events == (NotificationEvent.BUILD_FAILED, NotificationEvent.BUILD_RECOVERED)
    assert checked.url == "https://hooks.example.com/x?token=t"
    assert checked.secret == "s"
    assert checked.project_ids == ("0000000a-0000-4000-8000-000000000001",)
    assert host_of(checked.url) == "hooks.example.com"
    assert "token" not in repr(checked) and "'s'" not in repr(checked)


def test_an_email_channel_gets_defaults_for_port_and_security() -> None:
    checked = check_create(
        {
            "name": "mail",
            "kind": "email",
            "events": ["build_canceled"],
            "email": {
                "smtp_host": "smtp.example.com",
                "from_address": "ci@example.com",
                "to_addresses": ["a@example.com", "a@example.com", "b@example.com"],
            },
        }
    )
    assert checked.email is not None
    assert (checked.email.smtp_port, checked.email.smtp_security) == (587, SmtpSecurity.STARTTLS)
    assert checked.email.to_addresses == ("a@example.com", "b@example.com")
    assert checked.smtp_password is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"events": []}, "events"),
        ({"events": ["nope"]}, "events"),
        ({"kind": "sms"}, "kind"),
        ({"url": "http://hooks.example.com"}, "https"),
        ({"url": "https://a:b@hooks.example.com"}, "url"),
        ({"secret": "x" * 1025}, "secret"),
        ({"project_ids": "all"}, "project_ids"),
        ({"enabled": "yes"}, "enabled"),
    ],
)
def test_bad_channel_fields_are_named_in_the_error(body: dict[str, Any], field: str) -> None:
    base = {"name": "n", "kind": "webhook", "events": ["build_failed"], "url": "https://h.io/x"}
    with pytest.raises(InvalidInput) as refused:
        check_create({**base, **body})
    assert refused.value.code == "invalid_input"
    assert field in refused.value.message


def test_an_update_keeps_what_it_omits_and_clears_what_is_blank() -> None:
    kept = check_update(ChannelKind.WEBHOOK, {"name": "x"})
    assert (kept.url, kept.secret, kept.events) == (None, None, None)
    cleared = check_update(ChannelKind.WEBHOOK, {"secret": ""})
    assert cleared.secret == ""
    with pytest.raises(InvalidInput):
        check_update(ChannelKind.EMAIL, {"kind": "webhook"})


def test_a_failure_message_in_each_form() -> None:
    build = {**BUILD, "url": "https://ci.example.com/builds/b1"}
    message = Message("build_failed", "d1", build, None, "team")
    assert message.payload() == {"event": "build_failed", "delivery_id": "d1", "build": build}
    assert message.subject() == "[oore] app #12 failed on main"
    assert message.markdown() == ":x: [app #12 failed on main](https://ci.example.com/builds/b1)"
    text = message.text()
    assert "Pipeline: ci" in text and "Commit: abc123" in text and "Delivery: d1" in text


def test_a_timeout_and_a_recovery_say_what_happened() -> None:
    timed_out = Message("build_failed", "d", {**BUILD, "status": "timed_out"}, None, "t")
    assert timed_out.subject() == "[oore] app #12 timed out on main"
    recovered = Message("build_recovered", "d", {**BUILD, "status": "succeeded"}, "failed", "t")
    assert recovered.subject() == "[oore] app #12 recovered on main"
    assert recovered.payload()["previous_status"] == "failed"
    assert "Previous build: failed" in recovered.text()


def test_a_test_message_has_no_build() -> None:
    message = Message("test", "d9", None, None, "team")
    assert message.payload() == {
        "event": "test",
        "delivery_id": "d9",
        "channel": "team",
        "message": "Test notification from oore",
    }
    assert message.subject() == "[oore] test notification for team"


def test_stored_errors_are_one_bounded_line() -> None:
    assert short_error("a\n  b\tc") == "a b c"
    assert len(short_error("x" * 2000)) == 500
