"""Users, roles and sessions as the API shows them (contract §2.4, §7.5)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

USER_SESSION_TTL = 24 * 60 * 60


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    DEVELOPER = "developer"
    QA_VIEWER = "qa_viewer"


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
    """A user session that has been authenticated (user active, not expired)."""

    token_hash: str
    user: User
    expires_at: int


def local_subject(email: str) -> str:
    """The identity subject of a user created by local login."""
    return f"local::{email}"
