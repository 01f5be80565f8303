"""Users API: list, invite, change role, disable and re-enable (contract §2.4)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from oore.domain.rbac import Action, Resource, require
from oore.domain.users import (
    Role,
    Session,
    User,
    UserStatus,
    assignable_role,
    check_invite_email,
    manage_target,
)
from oore.errors import Conflict, Forbidden, InvalidInput, NotFound
from oore.services.clock import WallClock
from oore.services.identity import AuditSink
from oore.store import AuditEntry, Store

LIST_DEFAULT = 20
LIST_MAX = 100


@dataclass(frozen=True)
class UserQuery:
    q: str | None = None
    sort: str = "created_at"
    descending: bool = True
    limit: int = LIST_DEFAULT
    offset: int = 0


def _is_self(path_id: str, caller: User) -> bool:
    """Does a path id name the caller (in any spelling of the UUID)?"""
    try:
        return uuid.UUID(path_id) == uuid.UUID(caller.id)
    except ValueError:
        return False


def _not_found() -> NotFound:
    return NotFound("user_not_found", "User not found")


class Users:
    """Instance user management; owner/admin through the policy matrix."""

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
        self._access_changed = access_changed  # the user's access may have ended

    async def _record(
        self,
        session: Session,
        action: str,
        target: User,
        details: dict[str, Any] | None,
        client_ip: str | None,
        now: int,
    ) -> None:
        await self._audit.submit_one(
            AuditEntry.by(
                session.user,
                action,
                "user",
                target.id,
                details=details,
                client_ip=client_ip,
                created_at=now,
            )
        )

    async def page(self, session: Session, query: UserQuery) -> tuple[list[User], int]:
        require(session.user.role, Resource.USERS, Action.READ)
        return await self._store.users.page(
            q=query.q,
            sort=query.sort,
            descending=query.descending,
            limit=query.limit,
            offset=query.offset,
        )

    async def invite(
        self, session: Session, *, email: str, role: str, client_ip: str | None
    ) -> User:
        """A new ``invited`` user; 400 invalid_email / invalid_role, 409 email_exists."""
        require(session.user.role, Resource.USERS, Action.INVITE)
        address = check_invite_email(email)
        wanted = assignable_role(role)
        now = self._clock.now()
        user = await self._store.users.invite(address, wanted, now)
        if user is None:
            raise Conflict("email_exists", "A user with this email already exists")
        await self._record(
            session,
            "user_invited",
            user,
            {"email": address, "role": wanted.value, "invited_by": session.user.email},
            client_ip,
            now,
        )
        return user

    async def change_role(
        self, session: Session, user_id: str, *, role: str, client_ip: str | None
    ) -> User:
        """Order: 400 invalid_role; admin target role needs the owner (403
        insufficient_role); 404 user_not_found; 403 cannot_change_owner; a current admin
        needs the owner (403 insufficient_role)."""
        caller = session.user
        require(caller.role, Resource.USERS, Action.WRITE)
        wanted = assignable_role(role)
        if wanted is Role.ADMIN and caller.role is not Role.OWNER:
            raise Forbidden("insufficient_role", "Only the owner may make someone admin")
        target = await self._store.users.get(user_id)
        if target is None:
            raise _not_found()
        manage_target(caller, target, owner_code="cannot_change_owner")
        now = self._clock.now()
        changed = await self._store.users.set_role(target.id, wanted, now)
        if changed is None:
            raise _not_found()
        if changed.role is not target.role:
            self._access_changed()
            await self._record(
                session,
                "user_role_changed",
                changed,
                {
                    "from_role": target.role.value,
                    "to_role": changed.role.value,
                    "changed_by": caller.email,
                },
                client_ip,
                now,
            )
        return changed

    async def disable(self, session: Session, user_id: str, *, client_ip: str | None) -> None:
        """Soft delete. Order: 400 cannot_delete_self; 404; 403 cannot_delete_owner; an
        admin target needs the owner. Revokes the user's API tokens and sessions."""
        caller = session.user
        require(caller.role, Resource.USERS, Action.DELETE)
        if _is_self(user_id, caller):
            raise InvalidInput("cannot_delete_self", "You cannot disable yourself")
        target = await self._store.users.get(user_id)
        if target is None:
            raise _not_found()
        manage_target(caller, target, owner_code="cannot_delete_owner")
        now = self._clock.now()
        disabled = await self._store.users.disable(target.id, now)
        if disabled is None:
            raise _not_found()
        self._access_changed()
        await self._record(session, "user_disabled", disabled, None, client_ip, now)

    async def enable(self, session: Session, user_id: str, *, client_ip: str | None) -> User:
        """Order: 400 cannot_enable_self; 404; 403 cannot_enable_owner; an admin target
        needs the owner; 409 not_disabled. Tokens and sessions stay revoked."""
        caller = session.user
        require(caller.role, Resource.USERS, Action.ENABLE)
        if _is_self(user_id, caller):
            raise InvalidInput("cannot_enable_self", "You cannot enable yourself")
        target = await self._store.users.get(user_id)
        if target is None:
            raise _not_found()
        manage_target(caller, target, owner_code="cannot_enable_owner")
        if target.status is not UserStatus.DISABLED:
            raise Conflict("not_disabled", "The user is not disabled")
        now = self._clock.now()
        enabled = await self._store.users.enable(target.id, now)
        if enabled is None:
            raise Conflict("not_disabled", "The user is not disabled")
        await self._record(session, "user_enabled", enabled, None, client_ip, now)
        return enabled
