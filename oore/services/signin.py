"""OpenID Connect: the setup steps (configure, owner start/verify), public sign-in (start,
callback) and the external-access OIDC settings (contract §2.2, §2.3, §7.3, §7.4, §10.3).

Pending authorization requests live in the database, so a callback may reach another
daemon than its start (``oore/services/pending_signins.py``); the start rate limiter
lives in memory, one per runtime.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

import trio
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from oore.domain.crypto import SecretBox, decryption_error, encryption_error
from oore.domain.oidc import (
    DEFAULT_REDIRECT_URI,
    ClientSettings,
    IdentityClaims,
    OidcConfig,
    PendingRequest,
    ProviderMetadata,
    Reservation,
    SetupBinding,
    StartLimiter,
    authorization_url,
    check_client_settings,
    check_issuer_url,
    check_redirect_uri,
    setup_fingerprint,
)
from oore.domain.rbac import Action, Resource, require
from oore.domain.setup import RemoteAuthMode, RuntimeMode, SetupState, ensure_not_ready
from oore.domain.tokens import hash_token, new_token, parse_bearer
from oore.domain.users import USER_SESSION_TTL, Role, Session
from oore.errors import (
    ApiError,
    BadGateway,
    Conflict,
    Forbidden,
    InternalError,
    InvalidInput,
    NotFound,
)
from oore.services.clock import WallClock
from oore.services.identity import Identity, LoginResult
from oore.services.network import Network
from oore.services.oidc import ProviderClient, verify_id_token
from oore.services.pending_signins import PendingSignIns
from oore.store import Store
from oore.store.oidc import Actor, ConfigWrite

log = logging.getLogger(__name__)

RELEASE_SECONDS = 5.0  # for giving a failed start's reservation back


@dataclass(frozen=True)
class Started:
    authorization_url: str
    state: str

    def to_json(self) -> dict[str, object]:
        return {"authorization_url": self.authorization_url, "state": self.state}


@dataclass(frozen=True)
class Configured:
    discovered_issuer: str
    session_expires_at: int

    def to_json(self) -> dict[str, object]:
        return {
            "state": SetupState.IDP_CONFIGURED.value,
            "discovered_issuer": self.discovered_issuer,
            "session_expires_at": self.session_expires_at,
        }


@dataclass(frozen=True)
class OwnerVerified:
    owner_email: str
    oidc_subject: str
    session_expires_at: int

    def to_json(self) -> dict[str, object]:
        return {
            "state": SetupState.OWNER_CREATED.value,
            "owner_email": self.owner_email,
            "oidc_subject": self.oidc_subject,
            "session_expires_at": self.session_expires_at,
        }


def _as_settings_failure(exc: BadGateway) -> InvalidInput:
    """Discovery while configuring is the owner's input going wrong: 400, not 502 (§2.2)."""
    return InvalidInput("oidc_discovery_failed", f"OIDC discovery failed: {exc.message}")


def _new_request(redirect_uri: str, now: int, setup: SetupBinding | None) -> PendingRequest:
    return PendingRequest(
        state=secrets.token_urlsafe(32),
        verifier=secrets.token_urlsafe(64),
        nonce=secrets.token_urlsafe(32),
        redirect_uri=redirect_uri,
        created_at=now,
        setup=setup,
    )


class SignIn:
    """OIDC setup, sign-in and settings, with the pending requests of every daemon."""

    def __init__(
        self,
        store: Store,
        clock: WallClock,
        identity: Identity,
        network: Network,
        provider: ProviderClient | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._identity = identity
        self._network = network
        self._provider = (provider or ProviderClient()).session
        self.pending = PendingSignIns(store.pending_signins, lambda: identity.secrets)
        self.limiter = StartLimiter()

    # -- shared pieces --------------------------------------------------------------------

    def _box(self) -> SecretBox | None:
        return self._identity.secrets

    def _encrypt(self, plaintext: str) -> str:
        box = self._box()
        if box is None:
            raise encryption_error()
        return box.encrypt(plaintext)

    def _secret(self, config: OidcConfig) -> str | None:
        """The stored client secret in clear; 500 ``decryption_error`` when it won't open."""
        if config.client_secret_enc is None:
            return None
        box = self._box()
        if box is None:
            raise decryption_error()
        return box.decrypt(config.client_secret_enc)

    def _write(self, settings: ClientSettings, discovered_issuer: str) -> ConfigWrite:
        keep = settings.client_secret is None and not settings.clear_client_secret
        encrypted = (
            None if settings.client_secret is None else self._encrypt(settings.client_secret)
        )
        return ConfigWrite(discovered_issuer, settings.client_id, encrypted, keep_secret=keep)

    async def _discover_for_settings(self, issuer_url: str) -> ProviderMetadata:
        try:
            async with self._provider() as idp:
                return await idp.discover(issuer_url)
        except BadGateway as exc:
            raise _as_settings_failure(exc) from None

    def _authorization_url(
        self, metadata: ProviderMetadata, config: OidcConfig, request: PendingRequest
    ) -> str:
        return authorization_url(
            metadata.authorization_endpoint,
            client_id=config.client_id,
            redirect_uri=request.redirect_uri,
            state=request.state,
            nonce=request.nonce,
            code_challenge=create_s256_code_challenge(request.verifier),
        )

    async def _identify(
        self, config: OidcConfig, secret: str | None, request: PendingRequest, code: str
    ) -> IdentityClaims:
        """Discovery, code exchange and ID-token verification for one callback."""
        async with self._provider() as idp:
            metadata = await idp.discover(config.issuer_url)
            id_token = await idp.exchange_code(
                metadata,
                client_id=config.client_id,
                client_secret=secret,
                code=code,
                redirect_uri=request.redirect_uri,
                verifier=request.verifier,
            )
        return verify_id_token(
            metadata,
            id_token,
            client_id=config.client_id,
            nonce=request.nonce,
            now=self._clock.now(),
        )

    # -- setup ----------------------------------------------------------------------------

    async def configure_setup(
        self,
        body: ClientSettings,
        authorization: str | None,
        client_ip: str | None,
    ) -> Configured:
        """``POST /v1/setup/oidc/configure``: 400 ``invalid_input`` before the state gate,
        then 409s, session 401s, discovery (400 ``oidc_discovery_failed``) (§2.2)."""
        settings = check_client_settings(
            body.issuer_url, body.client_id, body.client_secret, body.clear_client_secret
        )
        instance = await self._store.instance.get()
        ensure_not_ready(instance)
        if instance.state not in (SetupState.BOOTSTRAP_PENDING, SetupState.IDP_CONFIGURED):
            raise Conflict("invalid_state", "The identity provider can no longer be configured")
        expires_at = await self._identity.check_setup_session(authorization)
        metadata = await self._discover_for_settings(settings.issuer_url)
        write = self._write(settings, metadata.issuer)
        await self._store.oidc.configure_setup(
            write, self._clock.now(), Actor(None, None, client_ip)
        )
        await self.pending.drop_setup()
        return Configured(metadata.issuer, expires_at)

    async def start_setup(self, redirect_uri: str, authorization: str | None) -> Started:
        """``POST /v1/setup/owner/start-oidc`` (order of checks: §2.2)."""
        check_redirect_uri(redirect_uri, self._network.allowed_origins)
        instance = await self._store.instance.get()
        ensure_not_ready(instance)
        if instance.state is not SetupState.IDP_CONFIGURED:
            raise Conflict("invalid_state", "Configure the identity provider first")
        await self._identity.check_setup_session(authorization)
        bearer = parse_bearer(authorization)
        assert bearer is not None  # the session check refuses a missing bearer
        prefs = await self._store.instance.preferences()
        if (prefs.runtime_mode, prefs.remote_auth_mode) != (
            RuntimeMode.REMOTE,
            RemoteAuthMode.OIDC,
        ):
            raise Forbidden("mode_restricted", "Owner sign-in with OIDC needs remote + oidc mode")
        config = await self._store.oidc.get()
        if config is None:
            raise Conflict("oidc_not_configured", "No OpenID Provider is configured")
        async with self._provider() as idp:
            metadata = await idp.discover(config.issuer_url)
        now = self._clock.now()
        binding = SetupBinding(
            hash_token(bearer), instance.setup_generation, setup_fingerprint(config, prefs)
        )
        request = _new_request(redirect_uri, now, binding)
        await self.pending.add(request, now)
        return Started(self._authorization_url(metadata, config, request), request.state)

    async def verify_setup(self, code: str, state: str, client_ip: str | None) -> OwnerVerified:
        """``POST /v1/setup/owner/verify-oidc``; the Authorization header is not read: the
        setup session bound at start must still be the current one (§2.2)."""
        ensure_not_ready(await self._store.instance.get())
        request = await self.pending.take(state)
        if request is None:
            raise InvalidInput("invalid_state", "Unknown or already used sign-in state")
        if request.expired(self._clock.now()):
            raise InvalidInput("auth_expired", "The sign-in request has expired")
        binding = request.setup
        if binding is None:
            raise InvalidInput("invalid_state", "This state belongs to the sign-in flow")
        instance = await self._store.instance.get()
        ensure_not_ready(instance)
        if instance.state is not SetupState.IDP_CONFIGURED or instance.owner_email is not None:
            raise Conflict("invalid_state", "The owner cannot be verified in this setup state")
        expires_at = await self._store.instance.touch_setup_session(
            binding.session_hash, self._clock.now()
        )
        config = await self._store.oidc.get()
        prefs = await self._store.instance.preferences()
        if (
            config is None
            or instance.setup_generation != binding.generation
            or setup_fingerprint(config, prefs) != binding.fingerprint
            or not self._still_allowed(request.redirect_uri)
        ):
            raise Conflict("stale_oidc_setup", "Setup changed since this sign-in was started")
        try:
            secret = self._secret(config)
        except InternalError:
            raise InternalError(
                "oidc_config_error", "The stored OIDC configuration is unusable"
            ) from None
        claims = await self._identify(config, secret, request, code)
        await self._store.oidc.verify_owner(
            claims, binding.generation, self._clock.now(), client_ip
        )
        return OwnerVerified(claims.email, claims.subject, expires_at)

    def _still_allowed(self, redirect_uri: str) -> bool:
        try:
            check_redirect_uri(redirect_uri, self._network.allowed_origins)
        except ApiError:
            return False
        return True

    # -- public sign-in -------------------------------------------------------------------

    async def _ready_config(self) -> tuple[OidcConfig, str | None]:
        instance = await self._store.instance.get()
        if instance.state is not SetupState.READY:
            raise Conflict("setup_incomplete", "Setup is not complete")
        config = await self._store.oidc.get()
        if config is None:
            raise Conflict("oidc_not_configured", "No OpenID Provider is configured")
        return config, self._secret(config)

    async def start(self, redirect_uri: str | None, client_ip: str | None) -> Started:
        """``GET /v1/auth/oidc/start`` (order of checks: §2.3)."""
        config, _ = await self._ready_config()
        redirect = check_redirect_uri(
            redirect_uri or DEFAULT_REDIRECT_URI, self._network.allowed_origins
        )
        reservation = await self.pending.reserve(self._clock.now())
        try:
            self.limiter.admit(client_ip, self._clock.now())
            async with self._provider() as idp:
                metadata = await idp.discover(config.issuer_url)
        except BaseException:
            await self._release(reservation)
            raise
        now = self._clock.now()
        request = _new_request(redirect, now, None)
        await self.pending.fulfil(reservation, request, now)
        return Started(self._authorization_url(metadata, config, request), request.state)

    async def _release(self, reservation: Reservation) -> None:
        """Give a failed start's slot back, even while cancelled; should that fail, the
        reservation lapses after 600 s and makes room then."""
        with trio.move_on_after(RELEASE_SECONDS, shield=True):
            try:
                await self.pending.release(reservation)
            except ApiError:
                log.warning("a sign-in reservation could not be released; it will lapse")

    async def callback(self, code: str, state: str, client_ip: str | None) -> LoginResult:
        """``POST /v1/auth/oidc/callback``: sign in an active user or activate an invited one."""
        request = await self.pending.take(state)
        if request is None or request.setup is not None:
            raise InvalidInput("invalid_state", "Unknown or already used sign-in state")
        if request.expired(self._clock.now()):
            raise InvalidInput("auth_expired", "The sign-in request has expired")
        config, secret = await self._ready_config()
        claims = await self._identify(config, secret, request, code)
        token = new_token()
        now = self._clock.now()
        expires_at = now + USER_SESSION_TTL
        user, _ = await self._store.oidc.sign_in(
            claims,
            token_hash=hash_token(token),
            now=now,
            expires_at=expires_at,
            client_ip=client_ip,
        )
        return LoginResult(token, expires_at, user)

    # -- settings after setup -------------------------------------------------------------

    @staticmethod
    def _require_owner(session: Session) -> None:
        require(session.user.role, Resource.INSTANCE_SETTINGS, Action.WRITE)
        if session.user.role is not Role.OWNER:
            raise Forbidden(
                "external_access_owner_required", "Only the owner may change external access"
            )

    async def settings(self, session: Session) -> dict[str, object]:
        """``GET /v1/settings/external-access/oidc``: the stored and discovered settings."""
        require(session.user.role, Resource.INSTANCE_SETTINGS, Action.READ)
        instance = await self._store.instance.get()
        if instance.state is not SetupState.READY:
            raise Conflict("invalid_state", "Setup is not complete")
        config = await self._store.oidc.get()
        if config is None:
            raise NotFound("oidc_not_configured", "No OpenID Provider is configured")
        async with self._provider() as idp:
            metadata = await idp.discover(config.issuer_url)
        body: dict[str, object] = {
            "issuer_url": config.issuer_url,
            "client_id": config.client_id,
            "has_client_secret": config.has_client_secret,
            "authorization_endpoint": metadata.authorization_endpoint,
            "token_endpoint": metadata.token_endpoint,
        }
        if metadata.userinfo_endpoint:
            body["userinfo_endpoint"] = metadata.userinfo_endpoint
        body["jwks_uri"] = metadata.jwks_uri
        body["configured_at"] = config.configured_at
        return body

    async def update_settings(
        self, session: Session, body: ClientSettings, client_ip: str | None
    ) -> dict[str, object]:
        """``PUT /v1/settings/external-access/oidc`` (owner); an omitted secret keeps the
        stored one. Drops every pending sign-in."""
        self._require_owner(session)
        settings = check_client_settings(body.issuer_url, body.client_id, body.client_secret)
        metadata = await self._discover_for_settings(settings.issuer_url)
        write = self._write(settings, metadata.issuer)
        actor = Actor(session.user.id, session.user.email, client_ip)
        config = await self._store.oidc.configure_ready(write, self._clock.now(), actor)
        await self.pending.drop_all()
        return {
            "discovered_issuer": config.issuer_url,
            "has_client_secret": config.has_client_secret,
            "configured_at": config.configured_at,
        }

    async def test_connection(self, session: Session, issuer_url: str) -> dict[str, object]:
        """``POST .../oidc/test-connection``: discovery only, nothing stored."""
        self._require_owner(session)
        metadata = await self._discover_for_settings(check_issuer_url(issuer_url))
        return {"success": True, **metadata.connection_json()}
