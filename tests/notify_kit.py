"""Receivers for notification tests: a webhook endpoint and an SMTP server, both on
127.0.0.1 in threads, recording what they were sent."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler
from typing import Any

import trio
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.loopback_http import serving

WAIT_SECONDS = 20.0


@dataclass(frozen=True)
class Received:
    """One request as the webhook receiver saw it: path, headers (lower-cased), raw body."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def signed_by(self, secret: str) -> bool:
        """Does ``X-Oore-Signature`` hold the HMAC-SHA256 of the raw body under ``secret``?"""
        expected = hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("x-oore-signature", ""), f"sha256={expected}")


@dataclass
class Inbox:
    """What arrived, with a condition to wait on from trio (through a thread)."""

    items: list[Any] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def add(self, item: Any) -> None:
        with self.changed:
            self.items.append(item)
            self.changed.notify_all()

    def wait_sync(self, count: int) -> list[Any]:
        """The first ``count`` items, once they arrived (bounded; blocks the thread)."""
        with self.changed:
            arrived = self.changed.wait_for(lambda: len(self.items) >= count, WAIT_SECONDS)
        assert arrived, f"expected {count} items, got {len(self.items)}"
        return self.items[:count]

    async def wait_for(self, count: int) -> list[Any]:
        """:meth:`wait_sync` from trio, on a worker thread."""
        found: list[Any] = await trio.to_thread.run_sync(self.wait_sync, count)
        return found


@dataclass
class WebhookReceiver:
    url: str
    inbox: Inbox
    # Status codes to answer, in order; 200 once they run out.
    answers: list[int]

    @property
    def received(self) -> list[Received]:
        return list(self.inbox.items)


@contextmanager
def webhook_receiver(path: str = "/hooks/oore?token=abc123") -> Iterator[WebhookReceiver]:
    """A loopback endpoint that records every POST and answers from ``answers``."""
    inbox = Inbox()
    answers: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            status = answers.pop(0) if answers else 200
            inbox.add(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Handler) as base:
        yield WebhookReceiver(f"{base}{path}", inbox, answers)


@dataclass
class MailServer:
    host: str
    port: int
    inbox: Inbox
    # (user, password) pairs that signed in
    logins: list[tuple[str, str]]

    @property
    def mails(self) -> list[EmailMessage]:
        return list(self.inbox.items)


class _Recorder:
    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        mail = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(mail, EmailMessage)
        mail["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self._inbox.add(mail)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def mail_server() -> Iterator[MailServer]:
    """A plain SMTP server on loopback (aiosmtpd in its own thread) that keeps every mail
    and offers AUTH without TLS (loopback only), recording who signed in."""
    inbox = Inbox()
    logins: list[tuple[str, str]] = []

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            logins.append((data.login.decode(), data.password.decode()))
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    controller = Controller(
        _Recorder(inbox),
        hostname="127.0.0.1",
        port=_free_port(),
        authenticator=authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield MailServer("127.0.0.1", controller.port, inbox, logins)
    finally:
        controller.stop()
