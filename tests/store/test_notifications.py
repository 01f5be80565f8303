"""The notification queue in the database: a leased delivery is nobody else's until its
sender's lease runs out, and only the sender holding it records its outcome."""

from __future__ import annotations

from oore.domain.notifications import LEASE_SECONDS, ChannelKind, DeliveryStatus, NotificationEvent
from oore.store import Store
from oore.store.notifications import StoredChannel

NOW = 1_800_000_000


async def test_leases_never_hand_one_delivery_to_two_senders(store: Store) -> None:
    channel = await store.notifications.insert(
        StoredChannel(
            name="hook",
            kind=ChannelKind.WEBHOOK,
            enabled=True,
            events=(NotificationEvent.BUILD_FAILED,),
            project_ids=(),
            url_enc="sealed",
            url_host="hooks.example.com",
            secret_enc=None,
            email=None,
            smtp_password_enc=None,
        ),
        None,
        NOW,
    )
    queued = [await store.notifications.queue_test(channel.id, NOW) for _ in range(3)]
    assert await store.notifications.backlog() == (3, NOW)

    first = await store.notifications.lease(NOW, 2)
    second = await store.notifications.lease(NOW, 10)
    assert [d.id for d in first + second] == [d.id for d in queued]
    assert all(d.status is DeliveryStatus.SENDING and d.attempts == 1 for d in first + second)
    assert await store.notifications.lease(NOW + LEASE_SECONDS - 1, 10) == []

    # A sender that vanished: its deliveries are taken up again once its lease ran out.
    again = await store.notifications.lease(NOW + LEASE_SECONDS, 10)
    assert [(d.id, d.attempts) for d in again] == [(d.id, 2) for d in queued]
    await store.notifications.sent(again[0].id, NOW + LEASE_SECONDS)
    await store.notifications.failed_attempt(again[1].id, "HTTP 500", NOW + 500)
    await store.notifications.failed_attempt(again[2].id, "HTTP 500", None)
    # An outcome for a delivery no longer held is not recorded over the real one.
    await store.notifications.failed_attempt(again[0].id, "late", NOW + 900)
    shown = {d.id: d for d in await store.notifications.deliveries(channel.id)}
    assert shown[again[0].id].status is DeliveryStatus.SENT
    assert shown[again[0].id].last_error is None
    assert (shown[again[1].id].status, shown[again[1].id].next_attempt_at) == (
        DeliveryStatus.PENDING,
        NOW + 500,
    )
    assert shown[again[2].id].status is DeliveryStatus.FAILED
    assert await store.notifications.backlog() == (1, NOW + 500)
    assert await store.notifications.delete(channel.id) is not None
    assert await store.notifications.backlog() == (0, None)
