"""Instance preferences and external-access settings after setup (contract §10.2, §10.3).

Reads need ``instance_settings:read`` (owner/admin); writes ``instance_settings:write``,
and the external-access writes are the owner's alone. In local mode those writes must come
from this machine (the effective client IP, forwarding headers considered)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from oore.domain.client_ip import is_loopback
from oore.domain.crypto import SecretBox
from oore.domain.network import (
    Preflight,
    TrustedProxySettings,
    check_network_update,
    check_secret,
    email_header,
    parse_cidrs,
    run_preflight,
    warpgate_ticket,
)
from oore.domain.rbac import Action, Resource, require
from oore.domain.setup import (
    KEY_STORAGE_MODE,
    Preferences,
    RemoteAuthMode,
    RuntimeMode,
    SetupState,
    decide_preferences,
)
from oore.domain.users import Role, Session
from oore.errors import Forbidden, InternalError, InvalidInput
from oore.services.clock import WallClock
from oore.services.identity import AuditSink, Identity
from oore.services.network import Network
from oore.store import AuditEntry, Store


def _require_owner(session: Session, what: str) -> None:
    if session.user.role is not Role.OWNER:
        raise Forbidden("external_access_owner_required", f"Only the owner can change {what}")


class WarpgateTickets:
    """The Warpgate access ticket in force (contract §7.2, §10.3): saved encrypted through
    the trusted-proxy settings, else ``OORE_WARPGATE_TICKET``; used only in remote mode
    signed in through the trusted proxy."""

    def __init__(self, store: Store, secrets: SecretBox | None, network: Network) -> None:
        self._store = store
        self._secrets = secrets
        self._network = network

    @property
    def environment(self) -> str | None:
        return self._network.environment_warpgate_ticket

    async def in_force(self) -> str | None:
        """The ticket to append to iOS install and download URLs, or None (two small
        reads; asked only for IPA artifacts)."""
        prefs = await self._store.instance.preferences()
        settings = await self._store.settings.trusted_proxy()
        return warpgate_ticket(prefs.remote_with, settings, self.environment, self._decrypt)

    def _decrypt(self, stored: str) -> str:
        if self._secrets is None:
            raise InternalError("decryption_error", "No encryption key is configured")
        return self._secrets.decrypt(stored)


class TrustedProxyView:
    """The trusted-proxy settings as the API shows them (with the ticket's source)."""

    def __init__(self, settings: TrustedProxySettings, environment_ticket: str | None) -> None:
        self.settings = settings
        self._environment_ticket = environment_ticket

    def to_json(self) -> dict[str, Any]:
        return self.settings.to_json(self._environment_ticket)


class InstanceSettings:
    """``/v1/settings/preferences`` and ``/v1/settings/external-access/...`` (not OIDC)."""

    def __init__(
        self,
        store: Store,
        clock: WallClock,
        audit: AuditSink,
        identity: Identity,
        network: Network,
        *,
        pause_saved: Callable[[bool], None],
    ) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._identity = identity
        self._network = network
        self._pause_saved = pause_saved  # applies a saved runner pause, here and elsewhere

    async def _record(
        self,
        session: Session,
        action: str,
        resource_id: str,
        details: dict[str, Any] | None,
        client_ip: str | None,
    ) -> None:
        await self._audit.submit_one(
            AuditEntry.by(
                session.user,
                action,
                "instance_settings",
                resource_id,
                details=details,
                client_ip=client_ip,
                created_at=self._clock.now(),
            )
        )

    async def _require_external_write(
        self, session: Session, what: str, client_ip: str | None
    ) -> Preferences:
        require(session.user.role, Resource.INSTANCE_SETTINGS, Action.WRITE)
        _require_owner(session, what)
        prefs = await self._store.instance.preferences()
        if prefs.runtime_mode is RuntimeMode.LOCAL and not is_loopback(client_ip):
            raise Forbidden(
                "external_access_loopback_required",
                f"In local mode {what} can only be changed from this machine",
            )
        return prefs

    # -- preferences ----------------------------------------------------------------------

    async def preferences(self, session: Session) -> Preferences:
        require(session.user.role, Resource.INSTANCE_SETTINGS, Action.READ)
        return await self._store.instance.preferences()

    async def update_preferences(
        self,
        session: Session,
        *,
        key_storage_mode: str,
        runtime_mode: RuntimeMode | None,
        remote_auth_mode: RemoteAuthMode | None,
        direct_macos_runner_paused: bool | None,
        client_ip: str | None,
    ) -> Preferences:
        """Save the preferences; switching the sign-in policy to remote must pass the
        preflight, and any sign-in policy change ends every session, the caller's too.
        A change of the runner pause holds for claims on every daemon once saved."""
        require(session.user.role, Resource.INSTANCE_SETTINGS, Action.WRITE)
        if key_storage_mode != KEY_STORAGE_MODE:
            raise InvalidInput("unsupported_key_storage_mode", "Only file key storage is supported")
        seen = await self._store.instance.preferences()
        change = decide_preferences(
            seen,
            runtime_mode=runtime_mode,
            remote_auth_mode=remote_auth_mode,
            direct_macos_runner_paused=direct_macos_runner_paused,
            is_owner=session.user.role is Role.OWNER,
        )
        if change.needs_preflight:
            failure = (await self.evaluate_preflight(change.new.remote_auth_mode)).failure()
            if failure is not None:
                await self._record(
                    session,
                    "external_access_enable_blocked",
                    "external_access",
                    {"failure_code": failure.code},
                    client_ip,
                )
                raise failure
        now = self._clock.now()
        revoked = await self._store.instance.update_preferences(
            seen, change.new, revoke_sessions=change.auth_policy_changed, now=now
        )
        if change.auth_policy_changed:
            self._identity.access_changed()  # every session ended
        saved = Preferences(
            change.new.runtime_mode,
            change.new.remote_auth_mode,
            change.new.direct_macos_runner_paused,
            now,
        )
        await self._record(
            session,
            "preferences_updated",
            "preferences",
            {
                "runtime_mode": saved.runtime_mode.value,
                "remote_auth_mode": saved.remote_auth_mode.value,
                "direct_macos_runner_paused": saved.direct_macos_runner_paused,
            },
            client_ip,
        )
        if saved.direct_macos_runner_paused != seen.direct_macos_runner_paused:
            self._pause_saved(saved.direct_macos_runner_paused)
            await self._record(
                session,
                "direct_macos_runner_pause_updated",
                "preferences",
                {
                    "previous": seen.direct_macos_runner_paused,
                    "paused": saved.direct_macos_runner_paused,
                },
                client_ip,
            )
        if change.auth_policy_changed:
            await self._record(
                session,
                "sessions_revoked",
                "sessions",
                {
                    "reason": "auth_policy_changed",
                    "from": [seen.runtime_mode.value, seen.remote_auth_mode.value],
                    "to": [saved.runtime_mode.value, saved.remote_auth_mode.value],
                    "revoked_sessions": revoked,
                },
                client_ip,
            )
        return saved

    # -- the preflight --------------------------------------------------------------------

    async def preflight(self, session: Session) -> Preflight:
        require(session.user.role, Resource.INSTANCE_SETTINGS, Action.READ)
        prefs = await self._store.instance.preferences()
        return await self.evaluate_preflight(prefs.remote_auth_mode)

    async def evaluate_preflight(self, auth_mode: RemoteAuthMode) -> Preflight:
        """The remote-mode checks for ``auth_mode``, on the network settings in force."""
        instance = await self._store.instance.get()
        if auth_mode is RemoteAuthMode.OIDC:
            configured = await self._store.oidc.get() is not None
        else:
            proxy = await self._store.settings.trusted_proxy()
            configured = proxy is not None and proxy.usable
        return run_preflight(
            setup_ready=instance.state is SetupState.READY,
            auth_mode=auth_mode,
            auth_configured=configured,
            public_url=self._network.public_url,
            allowed_origins=self._network.allowed_origins,
        )

    # -- network --------------------------------------------------------------------------

    def network(self, session: Session) -> dict[str, Any]:
        require(session.user.role, Resource.INSTANCE_SETTINGS, Action.READ)
        return self._network.to_json()

    async def update_network(
        self,
        session: Session,
        *,
        public_url: str | None,
        artifact_delivery_url: str | None,
        allowed_origins: list[str],
        client_ip: str | None,
    ) -> dict[str, Any]:
        """Validate and save; CORS, redirect checks and local storage URLs follow at once."""
        await self._require_external_write(session, "network settings", client_ip)
        settings = check_network_update(public_url, artifact_delivery_url, allowed_origins)
        await self._network.save(settings, self._clock.now())
        await self._record(
            session,
            "network_settings_updated",
            "external_access",
            {
                "public_url": settings.public_url,
                "artifact_delivery_url": settings.artifact_delivery_url,
                "allowed_origins": list(settings.allowed_origins),
            },
            client_ip,
        )
        return self._network.to_json()

    # -- trusted proxy --------------------------------------------------------------------

    async def trusted_proxy(self, session: Session) -> TrustedProxyView:
        require(session.user.role, Resource.INSTANCE_SETTINGS, Action.READ)
        stored = await self._store.settings.trusted_proxy() or TrustedProxySettings()
        return TrustedProxyView(stored, self._network.environment_warpgate_ticket)

    async def update_trusted_proxy(
        self,
        session: Session,
        *,
        user_email_header: str | None,
        trusted_proxy_cidrs: list[str] | None,
        shared_secret: str | None,
        warpgate_ticket: str | None,
        client_ip: str | None,
    ) -> TrustedProxyView:
        """Header and CIDRs are replaced on every call. An omitted secret or Warpgate ticket
        keeps the stored one and a blank one clears it (the secret not while trusted-proxy
        sign-in is active); either above 1024 characters is 400 ``invalid_input``."""
        prefs = await self._require_external_write(session, "trusted proxy settings", client_ip)
        cidrs = parse_cidrs(trusted_proxy_cidrs or [])
        stored = await self._store.settings.trusted_proxy() or TrustedProxySettings()
        secret = None if shared_secret is None else check_secret(shared_secret, "shared_secret")
        ticket = (
            None if warpgate_ticket is None else check_secret(warpgate_ticket, "warpgate_ticket")
        )
        encrypted = stored.shared_secret_enc
        if shared_secret is not None:
            encrypted = None if secret is None else self._encrypt(secret)
        if prefs.remote_with is RemoteAuthMode.TRUSTED_PROXY and encrypted is None:
            raise InvalidInput(
                "trusted_proxy_shared_secret_required",
                "A shared secret is required while trusted-proxy sign-in is active",
            )
        ticket_enc = stored.warpgate_ticket_enc
        if warpgate_ticket is not None:
            ticket_enc = None if ticket is None else self._encrypt(ticket)
        saved = await self._store.settings.save_trusted_proxy(
            TrustedProxySettings(
                email_header(user_email_header),
                stored.setup_owner_email,
                cidrs,
                encrypted,
                stored.configured_at,
                warpgate_ticket_enc=ticket_enc,
            ),
            self._clock.now(),
        )
        view = TrustedProxyView(saved, self._network.environment_warpgate_ticket)
        await self._record(
            session,
            "trusted_proxy_settings_updated",
            "external_access",
            {
                "user_email_header": saved.user_email_header,
                "trusted_proxy_cidrs": list(saved.trusted_proxy_cidrs),
                "has_shared_secret": saved.has_shared_secret,
                "has_warpgate_ticket": view.to_json()["has_warpgate_ticket"],
            },
            client_ip,
        )
        return view

    def _encrypt(self, plain: str) -> str:
        if self._identity.secrets is None:
            raise InternalError("encryption_error", "No encryption key is configured")
        return self._identity.secrets.encrypt(plain)
