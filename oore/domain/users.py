"""Users, roles and sessions as the API shows them (contract §2.4, §7.5)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from oore.domain.text import name_problem
from oore.errors import Forbidden, InvalidInput

USER_SESSION_TTL = 24 * 60 * 60
# Local login needs no credential, only this machine: at most 20 sign-ins a minute from one
# address and 60 overall, so a loop cannot mint sessions (and audit rows) without end.
LOCAL_LOGIN_WINDOW = 60
LOCAL_LOGIN_GLOBAL_LIMIT = 60
LOCAL_LOGIN_PER_IP_LIMIT = 20
MAX_EMAIL = 256
# Sort keys of GET /v1/users.
USER_SORTS = ("email", "role", "status", "created_at")


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    DEVELOPER = "developer"
    QA_VIEWER = "qa_viewer"


_RANK = {Role.QA_VIEWER: 0, Role.DEVELOPER: 1, Role.ADMIN: 2, Role.OWNER: 3}


def outranks(a: Role, b: Role) -> bool:
    """True when role ``a`` is strictly above role ``b``."""
    return _RANK[a] > _RANK[b]


def lower_role(a: Role, b: Role) -> Role:
    """The lower of two roles."""
    return b if outranks(a, b) else a


def assignable_role(text: str) -> Role:
    """A role the API may give a user (never owner); else 400 ``invalid_role``."""
    if text not in (Role.ADMIN.value, Role.DEVELOPER.value, Role.QA_VIEWER.value):
        raise InvalidInput("invalid_role", "Role must be admin, developer or qa_viewer")
    return Role(text)


def check_invite_email(email: str) -> str:
    """An invitation address as given (not trimmed or lower-cased); else ``invalid_email``."""
    if not email or "@" not in email or len(email) > MAX_EMAIL:
        raise InvalidInput("invalid_email", "Email must contain @ and be at most 256 characters")
    if (problem := name_problem(email, max_chars=MAX_EMAIL)) is not None:
        raise InvalidInput("invalid_email", f"Email {problem}")
    return email


class UserStatus(StrEnum):
    ACTIVE = "active"
    INVITED = "invited"
    DISABLED = "disabled"


@dataclass(frozen=True)
class User:
    id: str
    email: str
    display_name: str | None
    role: Role
    status: UserStatus
    oidc_subject: str
    avatar_url: str | None
    created_at: int
    updated_at: int

    def to_json(self) -> dict[str, object]:
        """The wire shape; optional fields are omitted when empty."""
        body: dict[str, object] = {"id": self.id, "email": self.email}
        if self.display_name:
            body["display_name"] = self.display_name
        body["role"] = self.role.value
        body["status"] = self.status.value
        if self.avatar_url:
            body["avatar_url"] = self.avatar_url
        body["created_at"] = self.created_at
        body["updated_at"] = self.updated_at
        return body


@dataclass(frozen=True)
class Session:
    """An authenticated credential (user active, not expired): a session or an API token.

    For an API token, ``user.role`` is already the effective role (the lower of the
    token's and the creator's current role) and ``expires_at`` is None when the token
    never expires.
    """

    token_hash: str
    user: User
    expires_at: int | None
    via_api_token: bool = False

    def capped(self, at: int) -> int:
        """``at``, or the credential's expiry when that comes first."""
        return at if self.expires_at is None else min(at, self.expires_at)


def manage_target(caller: User, target: User, *, owner_code: str) -> None:
    """The shared gates of changing another user (§2.4): never the owner, and an admin
    target needs the owner; 403 ``owner_code`` / ``insufficient_role``."""
    if target.role is Role.OWNER:
        raise Forbidden(owner_code, "The owner cannot be changed through the API")
    if target.role is Role.ADMIN and caller.role is not Role.OWNER:
        raise Forbidden("insufficient_role", "Only the owner may change an admin")


def local_subject(email: str) -> str:
    """The identity subject of a user created by local login."""
    return f"local::{email}"
