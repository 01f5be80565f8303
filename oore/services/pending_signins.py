"""Pending OIDC sign-ins (contract §7.4), kept in the database so that the callback may
reach another daemon than the start.

A request is found by its ``state``, of which only the SHA-256 is stored; the request
itself (PKCE verifier, nonce, redirect URI, setup binding) is sealed with the instance
key. Public starts hold a reservation while they talk to the provider. Requests and
reservations together are at most ``capacity``; when full, expired ones make room, else
429 ``too_many_pending``. Every request is used once: the first callback takes it.
"""

from __future__ import annotations

from collections.abc import Callable

from oore.domain.crypto import SecretBox, decryption_error, encryption_error
from oore.domain.oidc import (
    PENDING_CAPACITY,
    PENDING_KEEP,
    PENDING_TTL,
    PendingRequest,
    Reservation,
    start_expired,
    too_many_pending,
)
from oore.domain.tokens import hash_token
from oore.store.pending_signins import PendingLimits, PendingSignInStore, SealedRequest


class PendingSignIns:
    """The pending requests and reservations of every daemon on the database."""

    def __init__(
        self,
        rows: PendingSignInStore,
        box: Callable[[], SecretBox | None],
        capacity: int = PENDING_CAPACITY,
    ) -> None:
        self._rows = rows
        self._box = box
        self._limits = PendingLimits(capacity, PENDING_TTL, max(PENDING_KEEP, PENDING_TTL))

    def _sealed(self, request: PendingRequest) -> SealedRequest:
        box = self._box()
        if box is None:
            raise encryption_error()
        return SealedRequest(
            hash_token(request.state),
            box.encrypt(request.dumps()),
            request.setup is not None,
            request.created_at,
        )

    async def count(self) -> int:
        """Requests and reservations held now, expired ones included."""
        return await self._rows.count()

    async def reserve(self, now: int) -> Reservation:
        """Hold a slot for a start still talking to the provider; 429 when full."""
        ticket = await self._rows.reserve(self._limits, now)
        if ticket is None:
            raise too_many_pending()
        return Reservation(ticket, now)

    async def release(self, reservation: Reservation) -> None:
        await self._rows.release(reservation.ticket)

    async def fulfil(self, reservation: Reservation, request: PendingRequest, now: int) -> None:
        """Turn a reservation into a pending request; 503 ``oidc_start_expired`` when it
        was dropped or lapsed meanwhile."""
        sealed = self._sealed(request)
        if not await self._rows.fulfil(reservation.ticket, sealed, PENDING_TTL, now):
            raise start_expired()

    async def add(self, request: PendingRequest, now: int) -> None:
        """Record a request directly (setup start); 429 when full."""
        if not await self._rows.add(self._sealed(request), self._limits, now):
            raise too_many_pending()

    async def take(self, state: str) -> PendingRequest | None:
        """Remove and return the request with this state (each is used at most once).

        500 ``decryption_error`` when it does not open with the instance key (daemons
        sharing a database must share the key)."""
        found = await self._rows.take(hash_token(state))
        if found is None:
            return None
        box = self._box()
        if box is None:
            raise decryption_error()
        try:
            return PendingRequest.loads(box.decrypt(found.request_enc))
        except ValueError:
            raise decryption_error() from None

    async def drop_all(self) -> None:
        """Forget every pending request and reservation (provider reconfigured)."""
        await self._rows.drop_all()

    async def drop_setup(self) -> None:
        """Forget the pending setup sign-ins (setup-time reconfiguration)."""
        await self._rows.drop_setup()
