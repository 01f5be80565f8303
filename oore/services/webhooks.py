"""Webhooks: receive signed deliveries (§9.3) and turn stored ones into builds, exactly once.

The queue of deliveries lives in the database, worked off the request path by a due-time
worker (``oore/actors/due.py``, wired by the runtime) that holds one item, :data:`DRAIN`.
The database holds every delivery before the worker hears of one, so telling it only says
"look now": a received delivery makes the item due at once. At every start of the worker
the item is due at once (nothing received before a restart is lost); after each drain it
falls due when the store's next delivery does (a retry 30 s on, a lease that runs out).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from oore.domain.json_input import JsonInputError, decode_json
from oore.domain.setup import RuntimeMode
from oore.domain.webhooks import (
    RETRY_SECONDS,
    DeliveryStatus,
    Ignored,
    Provider,
    Trigger,
    gitlab_delivery_key,
    gitlab_project_id,
    is_stale,
    map_event,
    pipeline_matches,
    signature_matches,
    token_matches,
)
from oore.errors import (
    ApiError,
    Forbidden,
    InvalidInput,
    ServiceUnavailable,
    StoreError,
    StoreUnavailable,
    Unauthorized,
)
from oore.services.builds import Builds
from oore.services.clock import WallClock
from oore.services.identity import Identity
from oore.services.metrics import ServiceMetrics
from oore.store import Store
from oore.store.webhooks import Delivery, NewDelivery, SigningSecret

log = logging.getLogger(__name__)

LEASE_BATCH = 50
DRAIN = "drain"  # the one item of the queue worker


class QueueWorker(Protocol):
    """What the service needs of its due-time worker (a ``DueTimes[str]``)."""

    @property
    def name(self) -> str: ...

    @property
    def stopping(self) -> bool:
        """True once the worker's mailbox is closed for good."""
        ...

    def add(self, key: str, after: float, *, keep_earlier: bool = False) -> bool:
        """Make ``key`` fall due ``after`` seconds from now, never waiting."""
        ...

    async def fire(self, key: str) -> None:
        """Run ``key``'s callback now; return once it returned."""
        ...


@dataclass(frozen=True)
class Accepted:
    """The answer to an accepted delivery: stored now, or seen before."""

    duplicate: bool

    def to_json(self) -> dict[str, bool]:
        return {"ok": True, "duplicate": True} if self.duplicate else {"ok": True}


# Payloads up to this size decode in well under a millisecond, on the event loop.
INLINE_DECODE_MAX = 64 * 1024
DECODE_THREADS = 2


def _payload(body: bytes) -> Any:
    try:
        return decode_json(body)
    except JsonInputError as exc:
        raise InvalidInput("invalid_payload", f"The webhook body {exc}") from None


class Webhooks:
    """The two receivers and the worker behind them."""

    def __init__(
        self,
        store: Store,
        clock: WallClock,
        identity: Identity,
        builds: Builds,
        metrics: ServiceMetrics,
        worker: QueueWorker,
    ) -> None:
        self.metrics = metrics
        self._store = store
        self._clock = clock
        self._identity = identity
        self._builds = builds
        self.worker = worker
        self._decoding = trio.CapacityLimiter(DECODE_THREADS)

    async def _decoded(self, body: bytes) -> Any:
        """The payload as JSON (400 ``invalid_payload``); a large one off the event loop."""
        if len(body) <= INLINE_DECODE_MAX:
            return _payload(body)
        return await trio.to_thread.run_sync(_payload, body, limiter=self._decoding)

    # -- receiving ---------------------------------------------------------------------

    async def receive_github(
        self, body: bytes, *, signature: str | None, event: str | None, delivery: str | None
    ) -> Accepted:
        """``POST /v1/webhooks/github`` after the size check, in the order of §9.3."""
        if not signature:
            raise Unauthorized("missing_signature", "X-Hub-Signature-256 header is required")
        payload = await self._decoded(body)
        await self._require_remote()
        integration_id = await self._github_signer(signature, body)
        if integration_id is None:
            raise Unauthorized("invalid_signature", "The webhook signature does not match")
        self._require_worker()
        new = NewDelivery(
            provider=Provider.GITHUB,
            integration_id=integration_id,
            delivery_key=(delivery or "").strip(),
            event=(event or "").strip() or "unknown",
            payload=payload,
            now=self._clock.now(),
        )
        if new.delivery_key:
            stored = await self._store.webhooks.insert(new)
        else:
            stored = await self._store.webhooks.insert_unkeyed(new)
        return self._accepted(stored)

    async def receive_gitlab(
        self, body: bytes, *, token: str | None, event: str | None, event_uuid: str | None
    ) -> Accepted:
        """``POST /v1/webhooks/gitlab`` after the size check, in the order of §9.3."""
        if not token:
            raise Unauthorized("missing_token", "X-Gitlab-Token header is required")
        payload = await self._decoded(body)
        await self._require_remote()
        project_id = gitlab_project_id(payload)
        integration_id = None if project_id is None else await self._gitlab_owner(project_id, token)
        if integration_id is None:
            raise Unauthorized("invalid_token", "The webhook token does not match")
        self._require_worker()
        name = (event or "").strip() or "unknown"
        key = (event_uuid or "").strip() or gitlab_delivery_key(integration_id, name, body)
        if await self._store.webhooks.known(integration_id, key):
            return Accepted(duplicate=True)
        now = self._clock.now()
        if is_stale(payload, now):
            raise InvalidInput("stale_event", "The webhook event is older than five minutes")
        stored = await self._store.webhooks.insert(
            NewDelivery(Provider.GITLAB, integration_id, key, name, payload, now)
        )
        return self._accepted(stored)

    def _accepted(self, stored: str | None) -> Accepted:
        if stored is None:
            return Accepted(duplicate=True)
        # Stored: a full mailbox already holds a wake-up whose drain finds it, and a
        # stopped worker finds it when it runs again.
        self.worker.add(DRAIN, 0)
        return Accepted(duplicate=False)

    async def _require_remote(self) -> None:
        prefs = await self._store.instance.preferences()
        if prefs.runtime_mode is not RuntimeMode.REMOTE:
            raise Forbidden("mode_restricted", "Webhooks are accepted only in remote mode")

    def _require_worker(self) -> None:
        if self.worker.stopping:
            raise ServiceUnavailable(
                "webhook_queue_unavailable", "The webhook queue is not running"
            )

    # -- secrets -----------------------------------------------------------------------
    #
    # Secrets are read from the store for every delivery, never cached: a rotated GitLab
    # secret or a deleted integration is refused as soon as that change is committed, in
    # every daemon on the database. The read is one indexed query and a decryption per
    # candidate (about 0.2-0.3 ms, against about 5 ms for the whole delivery).

    def _opened(self, found: list[SigningSecret]) -> list[tuple[str, str]]:
        """(integration id, plaintext secret) of each secret that opens."""
        box = self._identity.secrets
        opened: list[tuple[str, str]] = []
        for secret in found:
            if box is None:
                break
            try:
                opened.append((secret.integration_id, box.decrypt(secret.secret_enc)))
            except ApiError:
                log.warning("webhook secret of integration %s does not open", secret.integration_id)
        return opened

    async def _github_signer(self, signature: str, body: bytes) -> str | None:
        """The active GitHub integration whose secret made ``signature``, if any."""
        secrets = self._opened(await self._store.webhooks.github_secrets())
        return _signer(secrets, lambda secret: signature_matches(signature, secret, body))

    async def _gitlab_owner(self, project_id: str, token: str) -> str | None:
        """The active GitLab integration whose repository ``project_id`` has this token."""
        secrets = self._opened(await self._store.webhooks.gitlab_secrets(project_id))
        return _signer(secrets, lambda secret: token_matches(token, secret))

    # -- the worker's side -------------------------------------------------------------

    async def drain_now(self) -> None:
        """Process every due delivery now; returns once they are handled (the caller
        owns the deadline). Raises the kernel's ``ActorStopped`` when the worker is gone."""
        await self.worker.fire(DRAIN)

    async def pending_drain(self) -> list[tuple[str, float]]:
        """The worker's item at its start: a drain, at once."""
        return [(DRAIN, 0.0)]

    async def drain_due(self, key: str) -> float | None:
        """The worker's callback: :meth:`drain`."""
        return await self.drain()

    async def drain(self) -> float | None:
        """Process every due delivery; seconds until the next falls due, or None."""
        try:
            while True:
                batch = await self._store.webhooks.lease(self._clock.now(), LEASE_BATCH)
                for delivery in batch:
                    await self._process(delivery)
                if len(batch) < LEASE_BATCH:
                    break
            due = await self._store.webhooks.next_due()
        except (StoreError, StoreUnavailable):
            return float(RETRY_SECONDS)  # the store logged the cause; look again later
        return None if due is None else float(max(0, due - self._clock.now()))

    async def _process(self, delivery: Delivery) -> None:
        mapped = map_event(delivery.provider, delivery.event, delivery.payload)
        if isinstance(mapped, Ignored):
            await self._finish(delivery, DeliveryStatus.IGNORED, mapped.reason)
            return
        try:
            reason = await self._build(delivery, mapped)
        except ApiError as exc:
            log.warning("webhook delivery %s failed: %s", delivery.id, exc)
            ended = await self._store.webhooks.retry(delivery.id, str(exc), self._clock.now())
            self.metrics.webhook_handled(
                delivery.provider, "failed" if ended == DeliveryStatus.FAILED else "retried"
            )
            return
        status = DeliveryStatus.PROCESSED if reason is None else DeliveryStatus.IGNORED
        await self._finish(delivery, status, reason)

    async def _finish(self, delivery: Delivery, status: DeliveryStatus, reason: str | None) -> None:
        await self._store.webhooks.finish(delivery.id, status.value, reason, self._clock.now())
        self.metrics.webhook_handled(
            delivery.provider, "processed" if status is DeliveryStatus.PROCESSED else "ignored"
        )

    async def _build(self, delivery: Delivery, trigger: Trigger) -> str | None:
        """One build per matching pipeline; the reason when nothing could match."""
        if trigger.branch is None and trigger.commit_sha is None:
            return "the event names neither a branch nor a commit"
        targets = await self._store.webhooks.targets(
            delivery.integration_id, trigger.full_name, trigger.external_id
        )
        if not targets:
            return "no project is linked to this repository under the integration"
        for project, pipelines in targets:
            for pipeline in pipelines:
                if not pipeline_matches(pipeline.trigger_config, trigger.event, trigger.branch):
                    continue
                if not await self._store.webhooks.claim(
                    delivery.id, pipeline.id, self._clock.now()
                ):
                    continue  # built by an earlier attempt
                try:
                    build = await self._builds.trigger_from_webhook(
                        project,
                        pipeline,
                        commit_sha=trigger.commit_sha,
                        branch=trigger.branch,
                        event=trigger.event,
                        actor=trigger.actor,
                    )
                except ApiError:
                    await self._store.webhooks.settle_claim(delivery.id, pipeline.id, None)
                    raise
                await self._store.webhooks.settle_claim(delivery.id, pipeline.id, build.id)
        return None


def _signer(secrets: list[tuple[str, str]], matches: Callable[[str], bool]) -> str | None:
    """The first integration whose secret ``matches``; every secret is compared."""
    found: str | None = None
    for integration_id, secret in secrets:
        if matches(secret) and found is None:
            found = integration_id
    return found
