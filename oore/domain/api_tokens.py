"""Personal API tokens: naming, role and expiry rules, and the effective role (contract §0.2)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from oore.domain.text import name_problem
from oore.domain.tokens import new_token
from oore.domain.users import Role, Session, User, lower_role, outranks
from oore.errors import Forbidden, InvalidInput

MAX_NAME = 256
PREFIX_LENGTH = 8
LIST_DEFAULT = 20
LIST_MAX = 100


@dataclass(frozen=True)
class ApiToken:
    """A stored token (never its text): who made it, what it may do, until when."""

    id: str
    user_id: str
    name: str
    prefix: str
    role: Role
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None

    def to_json(self) -> dict[str, object]:
        """The listed shape; ``expires_at`` and ``last_used_at`` are always present."""
        return {
            "id": self.id,
            "user_id": self.user_id,
            "name": self.name,
            "prefix": self.prefix,
            "role": self.role.value,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "last_used_at": self.last_used_at,
        }


@dataclass(frozen=True)
class TokenRequest:
    """A validated creation request."""

    name: str
    role: Role
    expires_at: int | None


def check_request(
    creator: Role, *, name: str, role: str, expires_at: int | None, now: int
) -> TokenRequest:
    """Creation rules, in order: 400 ``invalid_name``, 400 ``invalid_role``,
    403 ``role_escalation`` (above the creator's role), 400 ``invalid_input`` (expiry
    not in the future)."""
    trimmed = name.strip()
    if not trimmed or len(trimmed) > MAX_NAME:
        raise InvalidInput("invalid_name", "Name must be 1..256 characters")
    if (problem := name_problem(trimmed, max_chars=MAX_NAME)) is not None:
        raise InvalidInput("invalid_name", f"Name {problem}")
    try:
        wanted = Role(role)
    except ValueError:
        raise InvalidInput(
            "invalid_role", "Role must be owner, admin, developer or qa_viewer"
        ) from None
    if outranks(wanted, creator):
        raise Forbidden("role_escalation", "A token cannot have a role above your own")
    if expires_at is not None and expires_at <= now:
        raise InvalidInput("invalid_input", "expires_at must be in the future")
    return TokenRequest(trimmed, wanted, expires_at)


@dataclass(frozen=True)
class NewSecret:
    """A freshly minted token text and the prefix shown for it later."""

    token: str
    prefix: str


def mint() -> NewSecret:
    token = new_token()
    return NewSecret(token, token[:PREFIX_LENGTH])


def token_session(token_hash: str, token: ApiToken, creator: User) -> Session:
    """The credential as a Session whose user carries the effective role: the lower of
    the token's role and the creator's current role."""
    effective = replace(creator, role=lower_role(token.role, creator.role))
    return Session(token_hash, effective, token.expires_at, via_api_token=True)
