"""Notification channels and the messages they carry (contract §2.14). Pure rules.

A channel is a webhook (JSON POST, signed when it has a secret), a Mattermost incoming
webhook (``{"text": ...}``) or an email address list reached over SMTP. It subscribes to
build outcomes:

* ``build_failed`` — a build failed, or timed out (a timeout is a failure to whoever
  waits for the build; the payload's ``build.status`` tells ``timed_out`` apart);
* ``build_recovered`` — a build succeeded and the build before it on the same pipeline
  and branch that ended with a verdict (canceled ones have none) failed or timed out;
* ``build_canceled`` — a build was canceled;
* ``build_succeeded`` — any success (a recovery is sent as ``build_recovered`` instead
  when the channel subscribes to that).

The database writes one delivery per interested channel in the transaction that ends the
build (migration 0019); a sender works them off with retries (:func:`retry_delay`).
Delivery is at least once: every message carries its delivery id for receivers to dedupe.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from oore.domain.network import MAX_SECRET_LENGTH, _is_loopback_host, _parts
from oore.errors import InvalidInput

MAX_NAME_CHARS = 255
MAX_URL_CHARS = 2048
MAX_RECIPIENTS = 50
MAX_PROJECTS = 500
MAX_ERROR_CHARS = 500
SEND_TIMEOUT = 10  # seconds for one attempt, connection to answer
# Seconds to wait after the n-th failed attempt; after MAX_ATTEMPTS the delivery fails.
BACKOFF = (30, 120, 600, 3600, 21600, 21600, 21600)
MAX_ATTEMPTS = len(BACKOFF) + 1
# A sending row whose sender vanished (a crash) is taken up again after this many seconds.
LEASE_SECONDS = 120
RECENT_DELIVERIES = 50

SIGNATURE_HEADER = "X-Oore-Signature"
EVENT_HEADER = "X-Oore-Event"
DELIVERY_HEADER = "X-Oore-Delivery"

_EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$|^[^@\s<>,;\"]+@localhost$")
_HOST = re.compile(r"^[A-Za-z0-9.\-:\[\]]{1,253}$")


class ChannelKind(StrEnum):
    WEBHOOK = "webhook"
    MATTERMOST = "mattermost"
    EMAIL = "email"


class NotificationEvent(StrEnum):
    BUILD_FAILED = "build_failed"
    BUILD_RECOVERED = "build_recovered"
    BUILD_CANCELED = "build_canceled"
    BUILD_SUCCEEDED = "build_succeeded"


TEST_EVENT = "test"


class SmtpSecurity(StrEnum):
    STARTTLS = "starttls"
    TLS = "tls"
    NONE = "none"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class EmailSettings:
    """Where and how mail is sent; the password is kept apart (encrypted)."""

    smtp_host: str
    smtp_port: int
    smtp_security: SmtpSecurity
    username: str | None
    from_address: str
    to_addresses: tuple[str, ...]

    def to_stored(self) -> dict[str, Any]:
        return {
            "smtp_host": self.smtp_host,
            "smtp_port": self.smtp_port,
            "smtp_security": self.smtp_security.value,
            "username": self.username,
            "from_address": self.from_address,
            "to_addresses": list(self.to_addresses),
        }

    @classmethod
    def from_stored(cls, raw: dict[str, Any]) -> EmailSettings:
        return cls(
            smtp_host=raw["smtp_host"],
            smtp_port=int(raw["smtp_port"]),
            smtp_security=SmtpSecurity(raw["smtp_security"]),
            username=raw.get("username"),
            from_address=raw["from_address"],
            to_addresses=tuple(raw["to_addresses"]),
        )


@dataclass(frozen=True)
class Channel:
    """A stored channel; secrets only in their encrypted form."""

    id: str
    name: str
    kind: ChannelKind
    enabled: bool
    events: tuple[NotificationEvent, ...]
    project_ids: tuple[str, ...]
    url_enc: str | None
    url_host: str | None
    secret_enc: str | None
    email: EmailSettings | None
    smtp_password_enc: str | None
    created_at: int
    updated_at: int

    def to_json(self) -> dict[str, Any]:
        """The API shape: no URL (only its host), no secret, no password."""
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "kind": self.kind.value,
            "enabled": self.enabled,
            "events": [event.value for event in self.events],
            "project_ids": list(self.project_ids),
            "has_secret": self.secret_enc is not None,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if self.url_host is not None:
            body["url_host"] = self.url_host
        if self.email is not None:
            email: dict[str, Any] = {
                "smtp_host": self.email.smtp_host,
                "smtp_port": self.email.smtp_port,
                "smtp_security": self.email.smtp_security.value,
                "has_password": self.smtp_password_enc is not None,
                "from_address": self.email.from_address,
                "to_addresses": list(self.email.to_addresses),
            }
            if self.email.username is not None:
                email["username"] = self.email.username
            body["email"] = email
        return body


@dataclass(frozen=True)
class Delivery:
    id: str
    channel_id: str
    event: str
    build_id: str | None
    build: dict[str, Any] | None
    previous_status: str | None
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    next_attempt_at: int
    created_at: int
    sent_at: int | None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "channel_id": self.channel_id,
            "event": self.event,
            "status": self.status.value,
            "attempts": self.attempts,
            "created_at": self.created_at,
        }
        if self.build_id is not None:
            body["build_id"] = self.build_id
        if self.last_error is not None:
            body["last_error"] = self.last_error
        if self.status in (DeliveryStatus.PENDING, DeliveryStatus.SENDING):
            body["next_attempt_at"] = self.next_attempt_at
        if self.sent_at is not None:
            body["sent_at"] = self.sent_at
        return body


# -- input ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelInput:
    """A checked create (every field) or update (None: keep the stored value).

    ``secret`` and ``smtp_password``: None keeps, "" clears, anything else replaces.
    """

    name: str | None = None
    kind: ChannelKind | None = None
    enabled: bool | None = None
    events: tuple[NotificationEvent, ...] | None = None
    project_ids: tuple[str, ...] | None = None
    url: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    email: EmailSettings | None = None
    smtp_password: str | None = field(default=None, repr=False)


def _invalid(message: str) -> InvalidInput:
    return InvalidInput("invalid_input", message)


def check_name(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise _invalid("name is required")
    name = raw.strip()
    if len(name) > MAX_NAME_CHARS:
        raise _invalid(f"name must be {MAX_NAME_CHARS} characters or fewer")
    return name


def check_kind(raw: Any) -> ChannelKind:
    try:
        return ChannelKind(raw)
    except ValueError:
        raise _invalid("kind must be webhook, mattermost or email") from None


def check_events(raw: Any) -> tuple[NotificationEvent, ...]:
    if not isinstance(raw, list) or not raw:
        raise _invalid("events must list at least one event")
    found: list[NotificationEvent] = []
    for item in raw:
        try:
            event = NotificationEvent(item)
        except ValueError:
            known = ", ".join(e.value for e in NotificationEvent)
            raise _invalid(f"events: unknown event {item!r} (known: {known})") from None
        if event not in found:
            found.append(event)
    return tuple(found)


def check_project_ids(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise _invalid("project_ids must be a list of project ids")
    if len(raw) > MAX_PROJECTS:
        raise _invalid(f"project_ids holds at most {MAX_PROJECTS} projects")
    found: list[str] = []
    for item in raw:
        text = item.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text):
            raise _invalid(f"project_ids: {item!r} is not a project id")
        if text not in found:
            found.append(text)
    return tuple(found)


def check_url(raw: Any) -> str:
    """An http(s) URL with a host and no userinfo; https unless the host is loopback."""
    if not isinstance(raw, str) or not raw.strip():
        raise _invalid("url is required for webhook and mattermost channels")
    url = raw.strip()
    if len(url) > MAX_URL_CHARS:
        raise _invalid(f"url must be {MAX_URL_CHARS} characters or fewer")
    parts = _parts(url)
    if parts is None:
        raise _invalid("url must be an http(s) URL with a host and no user information")
    if parts.scheme != "https" and not _is_loopback_host(parts.hostname or ""):
        raise _invalid("url must use https (plain http only to a loopback host)")
    return url


def host_of(url: str) -> str | None:
    """The host part of a URL, for display (never the path or query: they may hold tokens)."""
    return urlsplit(url).hostname


def check_secret(raw: Any, name: str) -> str | None:
    """None: keep; "": clear; else the secret (at most 1024 characters)."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise _invalid(f"{name} must be a string")
    value = raw.strip()
    if len(value) > MAX_SECRET_LENGTH:
        raise _invalid(f"{name} must be {MAX_SECRET_LENGTH} characters or fewer")
    return value


def check_address(raw: Any, name: str) -> str:
    if not isinstance(raw, str) or not _EMAIL.match(raw.strip()) or len(raw.strip()) > 254:
        raise _invalid(f"{name} must be an email address")
    return raw.strip()


def check_email(raw: Any) -> EmailSettings:
    if not isinstance(raw, dict):
        raise _invalid("email settings are required for email channels")
    allowed = {
        "smtp_host",
        "smtp_port",
        "smtp_security",
        "username",
        "password",
        "from_address",
        "to_addresses",
    }
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise _invalid(f"email: unknown field {unknown[0]!r}")
    host = raw.get("smtp_host")
    if not isinstance(host, str) or not _HOST.match(host.strip()):
        raise _invalid("email.smtp_host must be a host name or address")
    port = raw.get("smtp_port", 587)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise _invalid("email.smtp_port must be a number from 1 to 65535")
    try:
        security = SmtpSecurity(raw.get("smtp_security", "starttls"))
    except ValueError:
        raise _invalid("email.smtp_security must be starttls, tls or none") from None
    username = raw.get("username")
    if username is not None and (not isinstance(username, str) or len(username) > 255):
        raise _invalid("email.username must be a string of 255 characters or fewer")
    username = username.strip() or None if isinstance(username, str) else None
    sender = check_address(raw.get("from_address"), "email.from_address")
    recipients = raw.get("to_addresses")
    if not isinstance(recipients, list) or not recipients:
        raise _invalid("email.to_addresses must list at least one address")
    if len(recipients) > MAX_RECIPIENTS:
        raise _invalid(f"email.to_addresses holds at most {MAX_RECIPIENTS} addresses")
    to = tuple(dict.fromkeys(check_address(r, "email.to_addresses") for r in recipients))
    return EmailSettings(host.strip(), port, security, username, sender, to)


def check_create(body: dict[str, Any]) -> ChannelInput:
    """A create body, checked field by field (400 ``invalid_input`` naming the field)."""
    name = check_name(body.get("name"))
    kind = check_kind(body.get("kind"))
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _invalid("enabled must be true or false")
    events = check_events(body.get("events"))
    project_ids = check_project_ids(body.get("project_ids", []))
    if kind is ChannelKind.EMAIL:
        if body.get("url") is not None or body.get("secret") is not None:
            raise _invalid("url and secret belong to webhook and mattermost channels")
        email = check_email(body.get("email"))
        password = check_secret(body["email"].get("password"), "email.password")
        return ChannelInput(
            name, kind, enabled, events, project_ids, email=email, smtp_password=password or None
        )
    if body.get("email") is not None:
        raise _invalid("email settings belong to email channels")
    url = check_url(body.get("url"))
    secret = check_secret(body.get("secret"), "secret")
    if secret and kind is ChannelKind.MATTERMOST:
        raise _invalid("secret: Mattermost channels are not signed (the URL is the secret)")
    return ChannelInput(name, kind, enabled, events, project_ids, url=url, secret=secret or None)


def check_update(kind: ChannelKind, body: dict[str, Any]) -> ChannelInput:
    """A PATCH body for a channel of ``kind`` (the kind cannot change)."""
    if "kind" in body and body["kind"] != kind.value:
        raise _invalid("kind cannot be changed; create a new channel")
    name = None if body.get("name") is None else check_name(body["name"])
    enabled = body.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise _invalid("enabled must be true or false")
    events = None if body.get("events") is None else check_events(body["events"])
    projects = body.get("project_ids")
    project_ids = None if projects is None else check_project_ids(projects)
    if kind is ChannelKind.EMAIL:
        if body.get("url") is not None or body.get("secret") is not None:
            raise _invalid("url and secret belong to webhook and mattermost channels")
        raw_email = body.get("email")
        email = None if raw_email is None else check_email(raw_email)
        password = (
            None if raw_email is None else check_secret(raw_email.get("password"), "email.password")
        )
        return ChannelInput(
            name, kind, enabled, events, project_ids, email=email, smtp_password=password
        )
    if body.get("email") is not None:
        raise _invalid("email settings belong to email channels")
    url = None if body.get("url") is None else check_url(body["url"])
    secret = check_secret(body.get("secret"), "secret")
    if secret and kind is ChannelKind.MATTERMOST:
        raise _invalid("secret: Mattermost channels are not signed (the URL is the secret)")
    return ChannelInput(name, kind, enabled, events, project_ids, url=url, secret=secret)


# -- delivery ------------------------------------------------------------------------------


def retry_delay(attempts: int) -> int | None:
    """Seconds before the next try after ``attempts`` failed ones; None: give up."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return BACKOFF[min(max(attempts, 1), len(BACKOFF)) - 1]


def signature(secret: str, body: bytes) -> str:
    """The ``X-Oore-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def short_error(text: str) -> str:
    """An error as stored with a delivery: one line, bounded."""
    line = " ".join(text.split())
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"


_OUTCOME = {
    "build_failed": "failed",
    "build_recovered": "recovered",
    "build_canceled": "was canceled",
    "build_succeeded": "succeeded",
}


@dataclass(frozen=True)
class Message:
    """What one delivery says, in the forms the channel kinds need."""

    event: str
    delivery_id: str
    build: dict[str, Any] | None
    previous_status: str | None
    channel_name: str

    def payload(self) -> dict[str, Any]:
        """The webhook body."""
        body: dict[str, Any] = {"event": self.event, "delivery_id": self.delivery_id}
        if self.build is None:
            body["channel"] = self.channel_name
            body["message"] = "Test notification from oore"
            return body
        body["build"] = self.build
        if self.previous_status is not None:
            body["previous_status"] = self.previous_status
        return body

    def _what(self) -> str:
        assert self.build is not None
        build = self.build
        outcome = _OUTCOME.get(self.event, str(build.get("status")))
        if build.get("status") == "timed_out" and self.event == "build_failed":
            outcome = "timed out"
        project = build.get("project_name") or build.get("project_id")
        where = f" on {build['branch']}" if build.get("branch") else ""
        return f"{project} #{build.get('number')} {outcome}{where}"

    def subject(self) -> str:
        if self.build is None:
            return f"[oore] test notification for {self.channel_name}"
        return f"[oore] {self._what()}"

    def text(self) -> str:
        """The plain text of a mail."""
        if self.build is None:
            return (
                f"This is a test notification for the channel {self.channel_name!r}.\n"
                f"Delivery: {self.delivery_id}\n"
            )
        build = self.build
        lines = [
            self._what(),
            "",
            f"Pipeline: {build.get('pipeline_name') or build.get('pipeline_id')}",
            f"Status: {build.get('status')}",
        ]
        if build.get("commit_sha"):
            lines.append(f"Commit: {build['commit_sha']}")
        if build.get("trigger_actor"):
            lines.append(f"Triggered by: {build['trigger_actor']}")
        if self.previous_status:
            lines.append(f"Previous build: {self.previous_status}")
        if build.get("url"):
            lines.append(f"Build: {build['url']}")
        lines.extend(["", f"Delivery: {self.delivery_id}"])
        return "\n".join(lines) + "\n"

    def markdown(self) -> str:
        """One Mattermost line."""
        if self.build is None:
            return f"Test notification from oore for **{self.channel_name}**"
        what = self._what()
        url = self.build.get("url")
        shown = f"[{what}]({url})" if url else what
        icon = {
            "build_failed": ":x:",
            "build_recovered": ":white_check_mark:",
            "build_succeeded": ":white_check_mark:",
            "build_canceled": ":no_entry_sign:",
        }.get(self.event, ":information_source:")
        return f"{icon} {shown}"
