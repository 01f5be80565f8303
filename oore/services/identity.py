"""Setup status, bootstrap tokens, local login and session authentication."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import trio

from oore.domain.api_tokens import token_session
from oore.domain.client_ip import is_loopback
from oore.domain.crypto import KEY_BYTES, SecretBox
from oore.domain.rate_limit import GUESS_LIMIT, GuessLimiter, LimitStatistics, WindowLimiter
from oore.domain.setup import (
    BOOTSTRAP_MAX_WRONG_GUESSES,
    LOCAL_OWNER_EMAIL,
    RuntimeMode,
    SetupState,
    SetupStatus,
)
from oore.domain.tokens import (
    hash_token,
    looks_like_token,
    missing_auth,
    new_token,
    parse_bearer,
    presents_bearer,
)
from oore.domain.users import (
    LOCAL_LOGIN_GLOBAL_LIMIT,
    LOCAL_LOGIN_PER_IP_LIMIT,
    LOCAL_LOGIN_WINDOW,
    USER_SESSION_TTL,
    Session,
    User,
    UserStatus,
    local_subject,
)
from oore.errors import Forbidden, InvalidInput, TooManyRequests, Unauthorized
from oore.live.fanout import GrantEpoch
from oore.services.clock import WallClock
from oore.services.shared_reads import SharedReads
from oore.store import AuditEntry, Store


class AuditSink(Protocol):
    """Where audit entries go; ``submit_one`` returns once the entry is durable."""

    async def submit_one(self, row: AuditEntry) -> None: ...


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: int


@dataclass(frozen=True)
class LoginResult:
    session_token: str
    expires_at: int
    user: User

    def to_json(self) -> dict[str, object]:
        user: dict[str, object] = {
            "email": self.user.email,
            "oidc_subject": self.user.oidc_subject,
            "user_id": self.user.id,
            "role": self.user.role.value,
        }
        if self.user.avatar_url:
            user["avatar_url"] = self.user.avatar_url
        return {"session_token": self.session_token, "expires_at": self.expires_at, "user": user}


# How long a credential found good is taken on trust without asking the database again,
# unless a change that may take access away (the grant epoch) came first; and how many
# credentials are remembered at most.
CREDENTIAL_TRUST_SECONDS = 5.0
CREDENTIAL_CACHE_SIZE = 10_000


class _Vouched(NamedTuple):
    session: Session
    epoch: int  # the grant epoch before the lookup that found it
    until: float  # trio clock
    wall_until: int  # and by the wall clock (whichever says it is over first)


class CredentialCache:
    """Credentials found good lately, so that a client sending many requests is not looked
    up in the database for each (one lookup was a third of a hot read's database work).

    An entry holds while the :class:`GrantEpoch` has not moved since the lookup began (any
    change that may end a credential moves it: a logout, a token revoked, a user disabled
    or demoted, a sign-in policy change; on this daemon at once, on the others by notice),
    for at most :data:`CREDENTIAL_TRUST_SECONDS` (a change that adds access, such as a
    promotion, is seen by then), and never past the credential's own expiry.

    A credential is looked up once for all the requests that present it meanwhile
    (:meth:`find`): 200 clients of one API token starting at once, or arriving as its
    entry ends, make one lookup, not 200 (each touching the token's row).
    """

    def __init__(
        self,
        epoch: GrantEpoch,
        *,
        trust_seconds: float = CREDENTIAL_TRUST_SECONDS,
        size: int = CREDENTIAL_CACHE_SIZE,
    ) -> None:
        self._epoch = epoch
        self._trust = trust_seconds
        self._size = size
        self._known: dict[str, _Vouched] = {}
        self._looking: SharedReads[Session | None] = SharedReads(lambda: epoch.value)

    async def find(
        self, token_hash: str, now: int, look_up: Callable[[], Awaitable[Session | None]]
    ) -> Session | None:
        """The session of a credential: remembered, else what ``look_up`` finds (None:
        no such credential), once for every caller presenting it while no change that
        may end a credential came."""
        session = self.get(token_hash, now)
        if session is not None:
            return session
        began = self._epoch.value

        async def look(since: int) -> Session | None:
            found = await look_up()
            # what a change overtook would never be trusted: not remembered
            if found is not None and since == self._epoch.value:
                self.put(found, since, now)
            return found

        # another caller's lookup serves only while no change came since this one asked
        return await self._looking.read(token_hash, look, lambda _: self._epoch.value == began)

    def get(self, token_hash: str, now: int) -> Session | None:
        known = self._known.get(token_hash)
        if known is None:
            return None
        session = known.session
        if (
            known.epoch != self._epoch.value
            or known.until <= trio.current_time()
            or known.wall_until <= now
            or (session.expires_at is not None and session.expires_at <= now)
        ):
            del self._known[token_hash]
            return None
        return session

    def put(self, session: Session, epoch: int, now: int) -> None:
        if len(self._known) >= self._size:
            self._known.clear()  # a flood of distinct credentials: start again
        until = trio.current_time() + self._trust
        wall_until = now + math.ceil(self._trust)
        self._known[session.token_hash] = _Vouched(session, epoch, until, wall_until)


class Identity:
    """Who may do what first: setup, local sign-in and session checks."""

    def __init__(
        self,
        store: Store,
        clock: WallClock,
        audit: AuditSink,
        secrets: SecretBox | None = None,
        *,
        access_changed: Callable[[], None],
        grant_epoch: GrantEpoch,
        guess_limit: int = GUESS_LIMIT,
    ) -> None:
        self._store = store
        self._credentials = CredentialCache(grant_epoch)
        self._clock = clock
        self._audit = audit
        # Told of every session ended (what it gave access to has ended).
        self.access_changed = access_changed
        self.secrets = secrets
        self._local_logins = WindowLimiter(
            LOCAL_LOGIN_WINDOW,
            LOCAL_LOGIN_GLOBAL_LIMIT,
            LOCAL_LOGIN_PER_IP_LIMIT,
            "local_login_rate_limited",
            "Too many local sign-ins; try again in a minute",
        )
        self._bootstrap_refused = 0
        # Every failed credential check of the daemon is counted here (the HTTP layer and
        # the lean listener); the checks below vouch for credentials that pass.
        self.guesses = GuessLimiter(clock.now, limit=guess_limit)

    def rate_limits(self) -> list[LimitStatistics]:
        """The local-login and bootstrap-token limits, for ``/metrics``."""
        return [
            self._local_logins.statistics("local_login"),
            LimitStatistics(
                "bootstrap", BOOTSTRAP_MAX_WRONG_GUESSES, None, self._bootstrap_refused
            ),
        ]

    @property
    def can_encrypt(self) -> bool:
        """A 32-byte key is loaded: secrets can be stored (``/readyz`` ``encryption``)."""
        return self.secrets is not None and self.secrets.key_size == KEY_BYTES

    async def _record(
        self,
        action: str,
        *,
        user: User | None = None,
        resource_type: str = "instance",
        client_ip: str | None = None,
        now: int,
    ) -> None:
        await self._audit.submit_one(
            AuditEntry.by(
                user,
                action,
                resource_type,
                user.id if user and resource_type == "user" else None,
                client_ip=client_ip,
                created_at=now,
            )
        )

    async def setup_status(self) -> SetupStatus:
        instance = await self._store.instance.get()
        prefs = await self._store.instance.preferences()
        return SetupStatus(
            instance.instance_id, instance.state, prefs.runtime_mode, prefs.remote_auth_mode
        )

    async def mint_bootstrap_token(self, ttl_seconds: int) -> IssuedToken:
        """A new single-use bootstrap token (out of band only: never over HTTP)."""
        now = self._clock.now()
        token = new_token()
        expires_at = now + ttl_seconds
        await self._store.instance.mint_bootstrap_token(hash_token(token), expires_at, now)
        await self._record("bootstrap_token_minted", now=now)
        return IssuedToken(token, expires_at)

    async def verify_bootstrap_token(self, token: str, client_ip: str | None) -> IssuedToken:
        """Exchange a bootstrap token for a setup session (30 min, sliding)."""
        session = new_token()
        now = self._clock.now()
        try:
            expires_at = await self._store.instance.verify_bootstrap_token(
                hash_token(token), hash_token(session), now
            )
        except TooManyRequests:
            self._bootstrap_refused += 1
            raise
        await self._record("bootstrap_token_verified", client_ip=client_ip, now=now)
        return IssuedToken(session, expires_at)

    async def local_login(
        self, *, email: str | None, recovery_capability: str | None, client_ip: str | None
    ) -> LoginResult:
        """Sign in from this machine; before setup is complete, this completes it as owner.
        429 ``local_login_rate_limited`` past the local-login limits."""
        prefs = await self._store.instance.preferences()
        instance = await self._store.instance.get()
        if prefs.runtime_mode is RuntimeMode.LOCAL and not is_loopback(client_ip):
            raise Forbidden(
                "local_login_loopback_required", "Local login is only allowed from this machine"
            )
        now = self._clock.now()
        self._local_logins.admit(client_ip, now)
        token = new_token()
        expires_at = now + USER_SESSION_TTL
        if instance.state is not SetupState.READY:
            if prefs.runtime_mode is not RuntimeMode.LOCAL:
                raise Forbidden("mode_restricted", "Local login is not available in remote mode")
            owner_email = instance.owner_email or LOCAL_OWNER_EMAIL
            owner = await self._store.users.complete_local_setup(
                email=owner_email,
                subject=instance.owner_subject or local_subject(owner_email),
                token_hash=hash_token(token),
                now=now,
                expires_at=expires_at,
                client_ip=client_ip,
            )
            if owner is not None:
                return LoginResult(token, expires_at, owner)
            # Someone else completed setup meanwhile: sign in as a ready instance would.
        if prefs.runtime_mode is RuntimeMode.REMOTE:
            # Recovery capabilities are minted over the operator socket; none is valid here yet.
            if not recovery_capability:
                raise Forbidden(
                    "local_recovery_capability_required",
                    "Local login on a remote instance needs a recovery capability",
                )
            raise Forbidden(
                "local_recovery_capability_invalid", "Recovery capability is invalid or used"
            )
        user = await self._pick_local_user(email)
        await self._store.users.create_session(hash_token(token), user.id, now, expires_at)
        await self._record(
            "local_login", user=user, resource_type="user", client_ip=client_ip, now=now
        )
        return LoginResult(token, expires_at, user)

    async def _pick_local_user(self, email: str | None) -> User:
        wanted = email.strip() if email and email.strip() else None
        users = await self._store.users.active_users(wanted)
        if wanted is None and len(users) > 1:
            raise InvalidInput("email_required", "Several users exist; say which email to use")
        if not users or users[0].status is not UserStatus.ACTIVE:
            raise Forbidden("user_not_found", "No active local user for this identity")
        return users[0]

    async def authenticate(self, authorization: str | None) -> Session:
        """The user session or API token named by an Authorization header, or 401 (§0.2).

        Sessions are looked up first, then API tokens (unrevoked, unexpired, creator
        active); an API token's Session carries the effective role.
        """
        presented = self._presented(authorization)
        now = self._clock.now()

        async def look_up() -> Session | None:
            found = await self._store.api_tokens.credential(presented, now)
            if found is None or isinstance(found, Session):
                return found
            token, creator = found
            return token_session(presented, token, creator)

        session = await self._credentials.find(presented, now, look_up)
        if session is None:
            raise Unauthorized("invalid_session", "Session token is invalid")
        self.guesses.succeeded(authorization)
        return session

    async def authenticate_session(self, authorization: str | None) -> Session:
        """Like :meth:`authenticate` but user sessions only: an API token is 401
        ``invalid_session`` (logout, the SSE header path)."""
        presented = self._presented(authorization)
        session = await self._store.users.session(presented, self._clock.now())
        if session is None:
            raise Unauthorized("invalid_session", "Session token is invalid")
        self.guesses.succeeded(authorization)
        return session

    async def recheck(self, credential_hash: str, *, via_api_token: bool) -> Session | None:
        """The credential behind an earlier authentication, if it is still good now
        (session live, or API token unrevoked with an active creator and current role)."""
        now = self._clock.now()
        if via_api_token:
            return await self._api_token_session(credential_hash, now, touch=False)
        return await self._store.users.session(credential_hash, now)

    def _presented(self, authorization: str | None) -> str:
        """The hash of a well-formed bearer token; 401 otherwise."""
        if not presents_bearer(authorization):
            raise missing_auth()
        bearer = parse_bearer(authorization)
        if bearer is None or not looks_like_token(bearer):
            raise Unauthorized("invalid_session", "Session token is invalid")
        return hash_token(bearer)

    async def _api_token_session(self, token_hash: str, now: int, *, touch: bool) -> Session | None:
        found = await self._store.api_tokens.holder(token_hash, now, touch=touch)
        if found is None:
            return None
        token, creator = found
        return token_session(token_hash, token, creator)

    async def check_setup_session(self, authorization: str | None) -> int:
        """Validate the setup session named by an Authorization header and slide it forward.

        Returns the session's new expiry (echoed as ``session_expires_at``). A missing or
        malformed header counts as a wrong token: 401 ``no_session`` when no setup session
        is open at all, else ``invalid_session``; ``session_expired`` once it lapsed.
        """
        bearer = parse_bearer(authorization)
        presented = hash_token(bearer) if bearer is not None else None
        expires_at = await self._store.instance.touch_setup_session(presented, self._clock.now())
        self.guesses.succeeded(authorization)
        return expires_at

    async def logout(self, session: Session, client_ip: str | None) -> None:
        """End a user session (never an API token) and record it."""
        await self._store.users.delete_session(session.token_hash)
        self.access_changed()
        await self._record(
            "logout",
            user=session.user,
            resource_type="user",
            client_ip=client_ip,
            now=self._clock.now(),
        )
