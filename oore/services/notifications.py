"""Notification channels (``/v1/settings/notification-channels``) and the sender that
works off their durable delivery queue.

Channels need ``instance_settings`` (read for GETs, write for the rest) and are audited;
their URLs, HMAC secrets and SMTP passwords are encrypted at rest and never shown or
logged. A build outcome becomes one delivery row per interested channel in the very
transaction that ends the build (a trigger of migration 0019), so nothing is lost if a
daemon dies right after. The sender runs off the request path in a due-time worker (like
the webhook queue) holding one item, :data:`DRAIN`: a build ending in this daemon, a test
message or the worker's start make it due at once; after each drain it falls due when
the next retry does; the leader's maintenance round drains too, for outcomes committed
by daemons that died. Rows are leased with ``FOR UPDATE SKIP LOCKED``, so daemons sharing
the database never send the same delivery at once; a delivery is sent at least once.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, assert_never

import httpx
import orjson
import trio

from oore.domain.builds import Build, BuildStatus
from oore.domain.crypto import SecretBox, required_box
from oore.domain.notifications import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SEND_TIMEOUT,
    SIGNATURE_HEADER,
    TEST_EVENT,
    Channel,
    ChannelInput,
    ChannelKind,
    Delivery,
    EmailSettings,
    Message,
    SmtpSecurity,
    check_create,
    check_update,
    host_of,
    retry_delay,
    short_error,
    signature,
)
from oore.domain.rbac import Action, Resource, require
from oore.domain.users import Session
from oore.errors import ApiError, NotFound, StoreError, StoreUnavailable
from oore.services.clock import WallClock
from oore.services.identity import AuditSink
from oore.services.metrics import ServiceMetrics
from oore.services.network import Network
from oore.services.webhooks import QueueWorker
from oore.store import AuditEntry, Store
from oore.store.notifications import StoredChannel

log = logging.getLogger(__name__)

DRAIN = "drain"  # the one item of the sender's worker
LEASE_BATCH = 50
PARALLEL_SENDS = 8
STORE_RETRY_SECONDS = 30.0
OUTCOMES = frozenset(
    {BuildStatus.SUCCEEDED, BuildStatus.FAILED, BuildStatus.CANCELED, BuildStatus.TIMED_OUT}
)
USER_AGENT = "oore-notifications"


def wake_on_outcome(worker: QueueWorker, build: Build) -> None:
    """Told of a build change committed in this daemon: an outcome may have queued
    deliveries (in its own transaction), so the sender looks now. Never waits."""
    if build.status in OUTCOMES:
        worker.add(DRAIN, 0)


class DeliveryFailed(Exception):
    """One attempt did not reach the receiver; the text is stored with the delivery."""


class Notifications:
    """The channels API and the delivery sender."""

    def __init__(
        self,
        store: Store,
        clock: WallClock,
        audit: AuditSink,
        secrets: SecretBox | None,
        network: Network,
        metrics: ServiceMetrics,
        worker: QueueWorker,
    ) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._secrets = secrets
        self._network = network
        self.metrics = metrics
        self.worker = worker
        self._sending = trio.CapacityLimiter(PARALLEL_SENDS)
        self._ssl: ssl.SSLContext | None = None

    def _box(self) -> SecretBox:
        return required_box(self._secrets)

    # -- channels ------------------------------------------------------------------------

    async def channels(self, session: Session) -> list[Channel]:
        require(session.user.role, Resource.INSTANCE_SETTINGS, Action.READ)
        return await self._store.notifications.all()

    async def channel(self, session: Session, channel_id: str) -> Channel:
        require(session.user.role, Resource.INSTANCE_SETTINGS, Action.READ)
        return await self._found(channel_id)

    async def _found(self, channel_id: str) -> Channel:
        found = await self._store.notifications.get(channel_id)
        if found is None:
            raise NotFound("not_found", "Notification channel not found")
        return found

    async def create(
        self, session: Session, body: dict[str, Any], client_ip: str | None
    ) -> Channel:
        require(session.user.role, Resource.INSTANCE_SETTINGS, Action.WRITE)
        checked = check_create(body)
        now = self._clock.now()
        stored = self._stored(None, checked)
        channel = await self._store.notifications.insert(stored, session.user.id, now)
        await self._record(session, "notification_channel_created", channel, client_ip, now)
        return channel

    async def update(
        self, session: Session, channel_id: str, body: dict[str, Any], client_ip: str | None
    ) -> Channel:
        require(session.user.role, Resource.INSTANCE_SETTINGS, Action.WRITE)
        current = await self._found(channel_id)
        checked = check_update(current.kind, body)
        now = self._clock.now()
        saved = await self._store.notifications.update(
            current.id, self._stored(current, checked), now
        )
        if saved is None:
            raise NotFound("not_found", "Notification channel not found")
        await self._record(session, "notification_channel_updated", saved, client_ip, now)
        return saved

    async def delete(self, session: Session, channel_id: str, client_ip: str | None) -> None:
        require(session.user.role, Resource.INSTANCE_SETTINGS, Action.WRITE)
        gone = await self._store.notifications.delete(channel_id)
        if gone is None:
            raise NotFound("not_found", "Notification channel not found")
        now = self._clock.now()
        await self._record(session, "notification_channel_deleted", gone, client_ip, now)

    async def send_test(self, session: Session, channel_id: str) -> Delivery:
        """Queue a test message to the channel; the sender takes it at once."""
        require(session.user.role, Resource.INSTANCE_SETTINGS, Action.WRITE)
        channel = await self._found(channel_id)
        delivery = await self._store.notifications.queue_test(channel.id, self._clock.now())
        self.worker.add(DRAIN, 0)
        return delivery

    async def deliveries(self, session: Session, channel_id: str) -> list[Delivery]:
        require(session.user.role, Resource.INSTANCE_SETTINGS, Action.READ)
        channel = await self._found(channel_id)
        return await self._store.notifications.deliveries(channel.id)

    def _stored(self, current: Channel | None, change: ChannelInput) -> StoredChannel:
        """The columns to write: ``change`` over ``current`` (None: a new channel)."""
        box = self._box()

        def kept(new: Any, old: Any) -> Any:
            return old if new is None else new

        def sealed(new: str | None, old: str | None) -> str | None:
            if new is None:
                return old  # omitted: keep
            return box.encrypt(new) if new else None  # blank: clear

        kind = change.kind if current is None else current.kind
        assert kind is not None
        url_enc = None if current is None else current.url_enc
        url_host = None if current is None else current.url_host
        if change.url is not None:
            url_enc, url_host = box.encrypt(change.url), host_of(change.url)
        email = kept(change.email, None if current is None else current.email)
        return StoredChannel(
            name=kept(change.name, None if current is None else current.name),
            kind=kind,
            enabled=kept(change.enabled, True if current is None else current.enabled),
            events=kept(change.events, () if current is None else current.events),
            project_ids=kept(change.project_ids, () if current is None else current.project_ids),
            url_enc=url_enc,
            url_host=url_host,
            secret_enc=sealed(change.secret, None if current is None else current.secret_enc),
            email=email,
            smtp_password_enc=sealed(
                change.smtp_password, None if current is None else current.smtp_password_enc
            ),
        )

    async def _record(
        self, session: Session, action: str, channel: Channel, client_ip: str | None, now: int
    ) -> None:
        # The shown form only: no URL, secret or password reaches the audit log.
        details = {"name": channel.name, "kind": channel.kind.value, "enabled": channel.enabled}
        await self._audit.submit_one(
            AuditEntry.by(
                session.user,
                action,
                "notification_channel",
                channel.id,
                details=details,
                client_ip=client_ip,
                created_at=now,
            )
        )

    # -- the sender ----------------------------------------------------------------------

    def build_changed(self, build: Build) -> None:
        """See :func:`wake_on_outcome`."""
        wake_on_outcome(self.worker, build)

    async def drain_now(self) -> None:
        """Send every due delivery now; returns once they are handled (the caller owns
        the deadline). Raises the kernel's ``ActorStopped`` when the worker is gone."""
        await self.worker.fire(DRAIN)

    async def pending_drain(self) -> list[tuple[str, float]]:
        """The worker's item at its start: a drain, at once."""
        return [(DRAIN, 0.0)]

    async def drain_due(self, key: str) -> float | None:
        """The worker's callback: :meth:`drain`."""
        return await self.drain()

    async def drain(self) -> float | None:
        """Send every due delivery; seconds until the next falls due, or None."""
        try:
            while True:
                batch = await self._store.notifications.lease(self._clock.now(), LEASE_BATCH)
                if batch:
                    async with (
                        httpx.AsyncClient(
                            timeout=SEND_TIMEOUT, follow_redirects=False, verify=self._tls()
                        ) as client,
                        trio.open_nursery() as nursery,
                    ):
                        for delivery in batch:
                            nursery.start_soon(self._deliver, client, delivery)
                if len(batch) < LEASE_BATCH:
                    break
            waiting, due = await self._store.notifications.backlog()
        except (StoreError, StoreUnavailable):
            return STORE_RETRY_SECONDS  # the store logged the cause; look again later
        self.metrics.notifications_waiting(waiting)
        return None if due is None else float(max(0, due - self._clock.now()))

    def _tls(self) -> ssl.SSLContext:
        """The TLS settings of every send (made once, at the first that needs them)."""
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    async def _deliver(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        try:
            async with self._sending:
                await self._attempt(client, delivery)
        except (StoreError, StoreUnavailable):
            pass  # the store logged it; the lease runs out and the delivery is tried again

    async def _attempt(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        channel = await self._store.notifications.get(delivery.channel_id)
        if channel is None:
            return  # deleted meanwhile, and its deliveries with it
        kind = channel.kind.value
        if not channel.enabled and delivery.event != TEST_EVENT:
            # Disabling a channel stops what it still owed too (an explicit test still goes).
            await self._store.notifications.failed_attempt(
                delivery.id, "the channel was disabled", None
            )
            return
        try:
            with trio.fail_after(SEND_TIMEOUT + 1):
                await self._send(client, channel, delivery)
        except (DeliveryFailed, ApiError, trio.TooSlowError) as exc:
            error = short_error(str(exc) or "the receiver did not answer in time")
            delay = retry_delay(delivery.attempts)
            retry_at = None if delay is None else self._clock.now() + delay
            await self._store.notifications.failed_attempt(delivery.id, error, retry_at)
            self.metrics.notification_sent(kind, "retried" if delay else "failed")
            log.warning(
                "notification %s to channel %s (%s), attempt %d: %s",
                delivery.id,
                channel.id,
                kind,
                delivery.attempts,
                error,
            )
            return
        await self._store.notifications.sent(delivery.id, self._clock.now())
        self.metrics.notification_sent(kind, "sent")

    def _message(self, channel: Channel, delivery: Delivery) -> Message:
        build = None if delivery.build is None else dict(delivery.build)
        public = self._network.public_url
        if build is not None and public:
            build["url"] = f"{public.rstrip('/')}/builds/{build['id']}"
        return Message(delivery.event, delivery.id, build, delivery.previous_status, channel.name)

    async def _send(self, client: httpx.AsyncClient, channel: Channel, delivery: Delivery) -> None:
        message = self._message(channel, delivery)
        box = self._box()
        match channel.kind:
            case ChannelKind.WEBHOOK | ChannelKind.MATTERMOST:
                if channel.url_enc is None:
                    raise DeliveryFailed("the channel has no URL")
                url = box.decrypt(channel.url_enc)
                if channel.kind is ChannelKind.WEBHOOK:
                    body = orjson.dumps(message.payload())
                    headers = {
                        EVENT_HEADER: delivery.event,
                        DELIVERY_HEADER: delivery.id,
                    }
                    if channel.secret_enc is not None:
                        headers[SIGNATURE_HEADER] = signature(box.decrypt(channel.secret_enc), body)
                else:
                    body = orjson.dumps({"text": message.markdown()})
                    headers = {}
                await _post(client, url, body, headers, host=channel.url_host)
            case ChannelKind.EMAIL:
                if channel.email is None:
                    raise DeliveryFailed("the channel has no email settings")
                password = (
                    None
                    if channel.smtp_password_enc is None
                    else box.decrypt(channel.smtp_password_enc)
                )
                mail = _mail(channel.email, message)
                tls = self._tls()
                await trio.to_thread.run_sync(_send_mail, channel.email, password, mail, tls)
            case _:
                assert_never(channel.kind)


async def _post(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], *, host: str | None
) -> None:
    """POST the JSON body; a 2xx answer is a delivery. Errors never show the URL."""
    sent = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
    try:
        answer = await client.post(url, content=body, headers=sent)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{host}: {type(exc).__name__}") from None
    if not 200 <= answer.status_code < 300:
        raise DeliveryFailed(f"{host} answered HTTP {answer.status_code}")


def _mail(settings: EmailSettings, message: Message) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = message.subject()
    mail["From"] = settings.from_address
    mail["To"] = ", ".join(settings.to_addresses)
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain=settings.from_address.rpartition("@")[2])
    mail["X-Oore-Event"] = message.event
    mail["X-Oore-Delivery"] = message.delivery_id
    mail.set_content(message.text())
    return mail


def _send_mail(
    settings: EmailSettings, password: str | None, mail: EmailMessage, context: ssl.SSLContext
) -> None:
    """Send one mail with smtplib (runs on a worker thread; bounded by its timeout)."""
    host, port = settings.smtp_host, settings.smtp_port
    try:
        smtp: smtplib.SMTP
        if settings.smtp_security is SmtpSecurity.TLS:
            smtp = smtplib.SMTP_SSL(host, port, timeout=SEND_TIMEOUT, context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=SEND_TIMEOUT)
        with smtp:
            if settings.smtp_security is SmtpSecurity.STARTTLS:
                smtp.starttls(context=context)
            if settings.username is not None and password is not None:
                smtp.login(settings.username, password)
            smtp.send_message(mail)
    except (OSError, smtplib.SMTPException) as exc:
        # SMTP errors carry the server's reply, never our password.
        raise DeliveryFailed(f"{host}:{port}: {type(exc).__name__}: {exc}") from None
