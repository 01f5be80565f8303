"""Personal API tokens: create (shown once), list, revoke (contract §0.2, §2.14)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from oore.domain.api_tokens import ApiToken, check_request, mint
from oore.domain.rbac import Action, Resource, is_instance_admin, require
from oore.domain.tokens import hash_token
from oore.domain.users import Session
from oore.errors import Forbidden, InvalidInput, NotFound
from oore.services.clock import WallClock
from oore.services.identity import AuditSink
from oore.store import AuditEntry, Store
from oore.store.api_tokens import NewApiToken


@dataclass(frozen=True)
class CreatedToken:
    token: ApiToken
    secret: str

    def to_json(self) -> dict[str, object]:
        """The creation answer: the only time the token text is shown."""
        t = self.token
        return {
            "id": t.id,
            "name": t.name,
            "prefix": t.prefix,
            "role": t.role.value,
            "created_at": t.created_at,
            "expires_at": t.expires_at,
            "token": self.secret,
        }


@dataclass(frozen=True)
class TokenScope:
    """Whose tokens a list shows: the caller's (default), one user's, or everyone's."""

    user_id: str | None = None
    everyone: bool = False


class ApiTokens:
    """API tokens of the caller; owner/admin may also see and revoke other people's."""

    def __init__(
        self,
        store: Store,
        clock: WallClock,
        audit: AuditSink,
        *,
        access_changed: Callable[[], None],
    ) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._access_changed = access_changed  # what the token gave access to has ended

    async def _record(
        self,
        session: Session,
        action: str,
        token: ApiToken,
        client_ip: str | None,
        now: int,
    ) -> None:
        details: dict[str, object] = {
            "name": token.name,
            "role": token.role.value,
            "prefix": token.prefix,
        }
        if token.user_id != session.user.id:
            details["user_id"] = token.user_id
        await self._audit.submit_one(
            AuditEntry.by(
                session.user,
                action,
                "api_token",
                token.id,
                details=details,
                client_ip=client_ip,
                created_at=now,
            )
        )

    async def create(
        self,
        session: Session,
        *,
        name: str,
        role: str,
        expires_at: int | None,
        client_ip: str | None,
    ) -> CreatedToken:
        """A new token for the caller; its role may not exceed the caller's (effective) role."""
        require(session.user.role, Resource.API_TOKENS, Action.WRITE)
        now = self._clock.now()
        wanted = check_request(
            session.user.role, name=name, role=role, expires_at=expires_at, now=now
        )
        secret = mint()
        token = await self._store.api_tokens.create(
            NewApiToken(
                user_id=session.user.id,
                name=wanted.name,
                prefix=secret.prefix,
                token_hash=hash_token(secret.token),
                role=wanted.role,
                expires_at=wanted.expires_at,
                now=now,
            )
        )
        await self._record(session, "api_token_created", token, client_ip, now)
        return CreatedToken(token, secret.token)

    async def page(
        self, session: Session, scope: TokenScope, *, limit: int, offset: int
    ) -> tuple[list[ApiToken], int]:
        """Unrevoked tokens, newest first; others' tokens only for owner/admin (403)."""
        caller = session.user
        require(caller.role, Resource.API_TOKENS, Action.READ)
        wanted: str | None = caller.id
        if scope.everyone:
            wanted = None
        elif scope.user_id is not None:
            try:
                wanted = str(uuid.UUID(scope.user_id))
            except ValueError:
                raise InvalidInput("invalid_input", "user_id must be a UUID") from None
        if wanted != caller.id and not is_instance_admin(caller.role):
            raise Forbidden("permission_denied", "Only owner or admin may list others' tokens")
        return await self._store.api_tokens.page(wanted, limit=limit, offset=offset)

    async def revoke(self, session: Session, token_id: str, *, client_ip: str | None) -> None:
        """Revoke for good; another user's token is 404 unless the caller is owner/admin."""
        caller = session.user
        require(caller.role, Resource.API_TOKENS, Action.DELETE)
        token = await self._store.api_tokens.get(token_id)
        if token is None or (token.user_id != caller.id and not is_instance_admin(caller.role)):
            raise NotFound("not_found", "API token not found")
        now = self._clock.now()
        if not await self._store.api_tokens.revoke(token.id, now):
            raise NotFound("not_found", "API token not found")
        self._access_changed()
        await self._record(session, "api_token_revoked", token, client_ip, now)
