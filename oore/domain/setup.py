"""The setup state machine and the bootstrap-token rules (contract §2.2, §3)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from oore.domain.tokens import same_hash
from oore.errors import Conflict, Gone, InternalError, TooManyRequests, Unauthorized

BOOTSTRAP_TTL_MIN = 1
BOOTSTRAP_TTL_MAX = 3600
BOOTSTRAP_TTL_DEFAULT = 15 * 60
BOOTSTRAP_MAX_WRONG_GUESSES = 5
SETUP_SESSION_TTL = 30 * 60
LOCAL_OWNER_EMAIL = "owner@local"


class SetupState(StrEnum):
    UNINITIALIZED = "uninitialized"
    BOOTSTRAP_PENDING = "bootstrap_pending"
    IDP_CONFIGURED = "idp_configured"
    OWNER_CREATED = "owner_created"
    READY = "ready"


class RuntimeMode(StrEnum):
    LOCAL = "local"
    REMOTE = "remote"


class RemoteAuthMode(StrEnum):
    OIDC = "oidc"
    TRUSTED_PROXY = "trusted_proxy"


@dataclass(frozen=True)
class Instance:
    """The persisted instance row, as the domain sees it."""

    instance_id: str
    state: SetupState
    bootstrap_token_hash: str | None
    bootstrap_expires_at: int | None
    bootstrap_consumed_at: int | None
    bootstrap_failed_attempts: int
    owner_email: str | None
    owner_subject: str | None
    setup_session_hash: str | None = None
    setup_session_expires_at: int | None = None
    setup_generation: int = 0


@dataclass(frozen=True)
class Preferences:
    runtime_mode: RuntimeMode = RuntimeMode.LOCAL
    remote_auth_mode: RemoteAuthMode = RemoteAuthMode.OIDC


@dataclass(frozen=True)
class SetupStatus:
    instance_id: str
    state: SetupState
    runtime_mode: RuntimeMode
    remote_auth_mode: RemoteAuthMode

    def to_json(self) -> dict[str, object]:
        return {
            "instance_id": self.instance_id,
            "state": self.state.value,
            "runtime_mode": self.runtime_mode.value,
            "remote_auth_mode": self.remote_auth_mode.value,
            "setup_mode": self.state is not SetupState.READY,
            "is_configured": self.state is SetupState.READY,
        }


def parse_ttl(text: str) -> int:
    """Parse a TTL like ``15m``, ``90s``, ``1h`` or bare seconds, within 1 s..1 h."""
    text = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    scale = 1
    if text and text[-1] in units:
        scale = units[text[-1]]
        text = text[:-1]
    if not text.isdigit():
        raise ValueError("TTL must be a whole number with an optional s, m or h suffix")
    seconds = int(text) * scale
    if not BOOTSTRAP_TTL_MIN <= seconds <= BOOTSTRAP_TTL_MAX:
        raise ValueError("TTL must be between 1s and 1h")
    return seconds


def ensure_not_ready(instance: Instance) -> None:
    """Every setup mutation is refused once setup is complete."""
    if instance.state is SetupState.READY:
        raise Conflict("already_configured", "Setup is already complete")


def judge_setup_session(instance: Instance, presented_hash: str | None, now: int) -> int:
    """The setup session's new expiry (slid to now + 30 min), or the 401 the contract names:
    ``no_session`` when none is open, ``invalid_session`` for another token,
    ``session_expired`` once it lapsed."""
    if instance.setup_session_hash is None:
        raise Unauthorized("no_session", "No active setup session exists")
    if presented_hash is None or not same_hash(instance.setup_session_hash, presented_hash):
        raise Unauthorized("invalid_session", "Setup session token is invalid")
    if instance.setup_session_expires_at is None or now >= instance.setup_session_expires_at:
        raise Unauthorized("session_expired", "Setup session has expired")
    return now + SETUP_SESSION_TTL


@dataclass(frozen=True)
class BootstrapAccepted:
    """The token matched: consume it and open a setup session."""


@dataclass(frozen=True)
class BootstrapRejected:
    """The token did not match: record the attempt, then answer with ``error``."""

    failed_attempts: int
    error: Unauthorized | TooManyRequests


def judge_bootstrap(
    instance: Instance, presented_hash: str, now: int
) -> BootstrapAccepted | BootstrapRejected:
    """Decide a verification attempt, raising for the answers that change nothing."""
    ensure_not_ready(instance)
    if instance.bootstrap_token_hash is None:
        raise InternalError("no_bootstrap_token", "No bootstrap token has been minted")
    if instance.bootstrap_consumed_at is not None:
        raise Gone("token_consumed", "Bootstrap token has already been used")
    if instance.bootstrap_expires_at is None or now >= instance.bootstrap_expires_at:
        raise Gone("token_expired", "Bootstrap token has expired")
    if same_hash(instance.bootstrap_token_hash, presented_hash):
        return BootstrapAccepted()
    attempts = instance.bootstrap_failed_attempts + 1
    if attempts > BOOTSTRAP_MAX_WRONG_GUESSES:
        return BootstrapRejected(
            attempts, TooManyRequests("too_many_attempts", "Too many bootstrap attempts")
        )
    return BootstrapRejected(attempts, Unauthorized("invalid_token", "Bootstrap token is invalid"))
