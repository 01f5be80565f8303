"""The setup state machine and the bootstrap-token rules (contract §2.2, §3)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from oore.domain.text import name_problem
from oore.domain.tokens import same_hash
from oore.errors import (
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    TooManyRequests,
    Unauthorized,
)

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


KEY_STORAGE_MODE = "file"


@dataclass(frozen=True)
class Preferences:
    """The instance preferences row; the defaults stand in while none is saved."""

    runtime_mode: RuntimeMode = RuntimeMode.LOCAL
    remote_auth_mode: RemoteAuthMode = RemoteAuthMode.OIDC
    direct_macos_runner_paused: bool = False
    updated_at: int | None = None

    @property
    def auth_policy(self) -> tuple[RuntimeMode, RemoteAuthMode]:
        """What decides how people sign in; changing it ends every session."""
        return self.runtime_mode, self.remote_auth_mode

    @property
    def remote_with(self) -> RemoteAuthMode | None:
        """The remote sign-in method in force, or None in local mode."""
        return self.remote_auth_mode if self.runtime_mode is RuntimeMode.REMOTE else None

    def to_json(self) -> dict[str, object]:
        """The settings API shape (contract §10.2); ``restart_required`` is always false."""
        body: dict[str, object] = {
            "key_storage_mode": KEY_STORAGE_MODE,
            "runtime_mode": self.runtime_mode.value,
            "remote_auth_mode": self.remote_auth_mode.value,
            "direct_macos_runner_paused": self.direct_macos_runner_paused,
            "restart_required": False,
        }
        if self.updated_at is not None:
            body["updated_at"] = self.updated_at
        return body


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


def require_state(instance: Instance, *allowed: SetupState) -> None:
    """409 ``invalid_state`` unless setup is in one of ``allowed``."""
    if instance.state not in allowed:
        raise Conflict("invalid_state", f"Not allowed while setup is {instance.state.value}")


def ensure_before_owner(instance: Instance) -> None:
    """The setup steps that choose how the owner signs in end once an owner exists."""
    ensure_not_ready(instance)
    if instance.state is SetupState.OWNER_CREATED:
        raise Conflict("invalid_state", "An owner has already been created")


def require_remote(prefs: Preferences, method: RemoteAuthMode) -> None:
    """403 ``mode_restricted`` unless the instance runs remote with this sign-in method."""
    if prefs.remote_with is not method:
        raise Forbidden(
            "mode_restricted", f"Only available in remote mode with {method.value} sign-in"
        )


def require_local(prefs: Preferences) -> None:
    if prefs.runtime_mode is not RuntimeMode.LOCAL:
        raise Forbidden("mode_restricted", "Only available in local mode")


def chosen_preferences(
    runtime_mode: RuntimeMode, remote_auth_mode: RemoteAuthMode | None, current: Preferences
) -> Preferences:
    """What ``POST /v1/setup/preferences`` stores: local forces oidc, remote defaults to it."""
    auth = RemoteAuthMode.OIDC
    if runtime_mode is RuntimeMode.REMOTE and remote_auth_mode is not None:
        auth = remote_auth_mode
    return Preferences(runtime_mode, auth, current.direct_macos_runner_paused)


def erases_oidc(state: SetupState, chosen: Preferences) -> bool:
    """A configured provider is dropped when the new choice no longer signs in with it."""
    return state is SetupState.IDP_CONFIGURED and chosen.remote_with is not RemoteAuthMode.OIDC


MAX_OWNER_EMAIL = 256


def owner_email(raw: str) -> str:
    """The owner's email, trimmed and lower-cased; 400 ``invalid_input`` without an ``@``."""
    email = raw.strip().lower()
    if "@" not in email or name_problem(email, max_chars=MAX_OWNER_EMAIL) is not None:
        raise InvalidInput("invalid_input", "A valid email address is required")
    return email


def trusted_proxy_subject(email: str) -> str:
    """The identity subject of a user signed in through the trusted proxy."""
    return f"trusted-proxy::{email}"


@dataclass(frozen=True)
class PreferencesChange:
    """A decided ``PUT /v1/settings/preferences``: the new row and what else it implies."""

    new: Preferences
    auth_policy_changed: bool

    @property
    def needs_preflight(self) -> bool:
        return self.auth_policy_changed and self.new.runtime_mode is RuntimeMode.REMOTE


def decide_preferences(
    current: Preferences,
    *,
    runtime_mode: RuntimeMode | None,
    remote_auth_mode: RemoteAuthMode | None,
    direct_macos_runner_paused: bool | None,
    is_owner: bool,
) -> PreferencesChange:
    """Omitted fields keep their values; an auth-policy change is the owner's alone."""
    new = Preferences(
        runtime_mode or current.runtime_mode,
        remote_auth_mode or current.remote_auth_mode,
        current.direct_macos_runner_paused
        if direct_macos_runner_paused is None
        else direct_macos_runner_paused,
        current.updated_at,
    )
    changed = new.auth_policy != current.auth_policy
    if changed and not is_owner:
        raise Forbidden(
            "external_access_owner_required",
            "Only the owner can change the runtime or remote sign-in mode",
        )
    return PreferencesChange(new, changed)


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
        raise Unauthorized("no_bootstrap_token", "No bootstrap token has been minted")
    if instance.bootstrap_consumed_at is not None:
        raise Gone("token_consumed", "Bootstrap token has already been used")
    if instance.bootstrap_expires_at is None or now >= instance.bootstrap_expires_at:
        raise Gone("token_expired", "Bootstrap token has expired")
    attempts = instance.bootstrap_failed_attempts
    if attempts >= BOOTSTRAP_MAX_WRONG_GUESSES:
        # Locked: not even the right token opens a session until a new one is minted, so
        # the answer says nothing about the guess.
        return BootstrapRejected(
            attempts, TooManyRequests("too_many_attempts", "Too many bootstrap attempts")
        )
    if same_hash(instance.bootstrap_token_hash, presented_hash):
        return BootstrapAccepted()
    return BootstrapRejected(
        attempts + 1, Unauthorized("invalid_token", "Bootstrap token is invalid")
    )
