"""The setup steps after the bootstrap token (contract §2.2, §3) and the trusted-proxy
sign-in (§7.6). Each step checks in the contract's order: setup state first (409
``already_configured`` once ready, before any credential is looked at), then the setup
session, then the step's own rules; the store re-checks the state under its row lock."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oore.domain.crypto import SecretBox
from oore.domain.network import (
    TrustedProxySettings,
    check_secret,
    email_header,
    normalise_email,
    normalise_header_name,
    parse_cidrs,
    proxied_email,
)
from oore.domain.rbac import require_instance_admin
from oore.domain.setup import (
    RemoteAuthMode,
    RuntimeMode,
    SetupState,
    chosen_preferences,
    ensure_before_owner,
    ensure_not_ready,
    owner_email,
    require_local,
    require_remote,
    require_state,
    trusted_proxy_subject,
)
from oore.domain.tokens import hash_token, new_token
from oore.domain.users import USER_SESSION_TTL, User, local_subject
from oore.errors import Conflict, Forbidden, InternalError, InvalidInput, Unauthorized
from oore.services.clock import WallClock
from oore.services.identity import AuditSink, Identity, LoginResult
from oore.store import AuditEntry, Store

BEFORE_OWNER = (SetupState.BOOTSTRAP_PENDING, SetupState.IDP_CONFIGURED)


def _no_key() -> InternalError:
    return InternalError("encryption_error", "No encryption key is configured")


class Setup:
    """First-run setup over a setup session, and signing in through a trusted proxy."""

    def __init__(
        self, store: Store, clock: WallClock, audit: AuditSink, identity: Identity
    ) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._identity = identity

    @property
    def _secrets(self) -> SecretBox:
        if self._identity.secrets is None:
            raise _no_key()
        return self._identity.secrets

    def _decrypt(self, stored: str) -> str:
        return self._secrets.decrypt(stored)

    async def _record(
        self,
        action: str,
        *,
        client_ip: str | None,
        user: User | None = None,
        resource_type: str = "instance",
        details: dict[str, Any] | None = None,
    ) -> None:
        await self._audit.submit_one(
            AuditEntry.by(
                user,
                action,
                resource_type,
                user.id if user and resource_type == "user" else None,
                details=details,
                client_ip=client_ip,
                created_at=self._clock.now(),
            )
        )

    async def choose_preferences(
        self,
        authorization: str | None,
        runtime_mode: RuntimeMode,
        remote_auth_mode: RemoteAuthMode | None,
        client_ip: str | None,
    ) -> dict[str, Any]:
        """``POST /v1/setup/preferences``: only before an owner exists."""
        ensure_before_owner(await self._store.instance.get())
        expires_at = await self._identity.check_setup_session(authorization)
        chosen = chosen_preferences(
            runtime_mode, remote_auth_mode, await self._store.instance.preferences()
        )
        erased = await self._store.instance.save_setup_preferences(chosen, self._clock.now())
        await self._record(
            "setup_preferences_set",
            client_ip=client_ip,
            details={
                "runtime_mode": chosen.runtime_mode.value,
                "remote_auth_mode": chosen.remote_auth_mode.value,
                "oidc_config_erased": erased,
            },
        )
        return {
            "runtime_mode": chosen.runtime_mode.value,
            "remote_auth_mode": chosen.remote_auth_mode.value,
            "session_expires_at": expires_at,
        }

    async def create_local_owner(
        self, authorization: str | None, email: str, client_ip: str | None
    ) -> dict[str, Any]:
        """``POST /v1/setup/local-owner/create``: local mode names its owner."""
        instance = await self._store.instance.get()
        ensure_not_ready(instance)
        require_local(await self._store.instance.preferences())
        require_state(instance, *BEFORE_OWNER)
        expires_at = await self._identity.check_setup_session(authorization)
        address = owner_email(email)
        await self._store.instance.record_owner(
            BEFORE_OWNER, email=address, subject=local_subject(address), now=self._clock.now()
        )
        await self._record(
            "local_owner_created", client_ip=client_ip, details={"owner_email": address}
        )
        return {
            "state": SetupState.OWNER_CREATED.value,
            "owner_email": address,
            "session_expires_at": expires_at,
        }

    async def configure_trusted_proxy(
        self,
        authorization: str | None,
        *,
        user_email_header: str | None,
        setup_owner_email: str | None,
        trusted_proxy_cidrs: list[str],
        shared_secret: str | None,
        client_ip: str | None,
    ) -> dict[str, Any]:
        """``POST /v1/setup/trusted-proxy/configure`` (remote + trusted_proxy)."""
        ensure_before_owner(await self._store.instance.get())
        expires_at = await self._identity.check_setup_session(authorization)
        require_remote(await self._store.instance.preferences(), RemoteAuthMode.TRUSTED_PROXY)
        owner: str | None = None
        if setup_owner_email is not None and setup_owner_email.strip():
            owner = normalise_email(setup_owner_email)
            if owner is None:
                raise InvalidInput("invalid_input", "setup_owner_email is not a valid email")
        cidrs = parse_cidrs(trusted_proxy_cidrs)
        secret = check_secret(shared_secret, "shared_secret")
        encrypted = None if secret is None else self._secrets.encrypt(secret)
        saved = await self._store.settings.configure_trusted_proxy_for_setup(
            TrustedProxySettings(email_header(user_email_header), owner, cidrs, encrypted),
            self._clock.now(),
        )
        await self._record(
            "trusted_proxy_configured",
            client_ip=client_ip,
            details={
                "user_email_header": saved.user_email_header,
                "trusted_proxy_cidrs": list(saved.trusted_proxy_cidrs),
                "has_shared_secret": saved.has_shared_secret,
            },
        )
        body: dict[str, Any] = {"state": SetupState.IDP_CONFIGURED.value}
        if saved.setup_owner_email is not None:
            body["setup_owner_email"] = saved.setup_owner_email
        body["has_shared_secret"] = saved.has_shared_secret
        body["configured_at"] = saved.configured_at
        body["session_expires_at"] = expires_at
        return body

    async def claim_trusted_proxy(
        self,
        authorization: str | None,
        peer: str | None,
        headers: Mapping[str, str],
        client_ip: str | None,
    ) -> dict[str, Any]:
        """``POST /v1/setup/owner/claim-trusted-proxy``: whoever the proxy vouches for
        becomes the owner (``headers`` has lower-cased names; ``peer`` is the raw peer)."""
        instance = await self._store.instance.get()
        ensure_not_ready(instance)
        require_state(instance, SetupState.IDP_CONFIGURED)
        expires_at = await self._identity.check_setup_session(authorization)
        require_remote(await self._store.instance.preferences(), RemoteAuthMode.TRUSTED_PROXY)
        settings = await self._configured_proxy()
        email = proxied_email(settings, peer, headers, self._decrypt)
        if settings.setup_owner_email is not None and settings.setup_owner_email != email:
            raise Forbidden(
                "trusted_proxy_owner_email_mismatch",
                "This identity is not the owner email chosen during setup",
            )
        await self._store.instance.record_owner(
            (SetupState.IDP_CONFIGURED,),
            email=email,
            subject=trusted_proxy_subject(email),
            now=self._clock.now(),
        )
        await self._record(
            "trusted_proxy_owner_claimed", client_ip=client_ip, details={"owner_email": email}
        )
        return {
            "state": SetupState.OWNER_CREATED.value,
            "owner_email": email,
            "session_expires_at": expires_at,
        }

    async def _configured_proxy(self) -> TrustedProxySettings:
        settings = await self._store.settings.trusted_proxy()
        if settings is None:
            raise Conflict("trusted_proxy_not_configured", "The trusted proxy is not configured")
        return settings

    async def complete(self, authorization: str | None, client_ip: str | None) -> dict[str, Any]:
        """``POST /v1/setup/complete``: the owner becomes a user and setup is ``ready``."""
        instance = await self._store.instance.get()
        ensure_not_ready(instance)
        require_state(instance, SetupState.OWNER_CREATED)
        await self._identity.check_setup_session(authorization)
        method = (await self._store.instance.preferences()).remote_with
        if method is RemoteAuthMode.OIDC and await self._store.oidc.get() is None:
            raise Conflict("remote_auth_not_configured", "Configure an OIDC provider first")
        if method is RemoteAuthMode.TRUSTED_PROXY:
            proxy = await self._store.settings.trusted_proxy()
            if proxy is None:
                raise Conflict("remote_auth_not_configured", "Configure the trusted proxy first")
            if normalise_header_name(proxy.user_email_header) is None:
                raise Conflict(
                    "trusted_proxy_config_invalid", "The trusted proxy email header is invalid"
                )
        done, _owner = await self._store.instance.complete(self._clock.now(), client_ip)
        return {"state": SetupState.READY.value, "instance_id": done.instance_id}

    async def summary(self, authorization: str | None) -> dict[str, Any]:
        """``GET /v1/setup/summary``: what setup has recorded so far.

        For the setup session, and afterwards for the owner and admins signed in (the
        setup session ends with setup). 403 ``insufficient_role`` for other users; a
        credential that is neither gets the setup session's 401.
        """
        try:
            await self._identity.check_setup_session(authorization)
        except Unauthorized as refused:
            try:
                session = await self._identity.authenticate(authorization)
            except Unauthorized:
                raise refused from None
            require_instance_admin(session.user.role)
        instance = await self._store.instance.get()
        oidc = await self._store.oidc.get()
        body: dict[str, Any] = {"instance_id": instance.instance_id, "state": instance.state.value}
        if oidc is not None:
            body["issuer_url"] = oidc.issuer_url
            body["client_id"] = oidc.client_id
        body["has_client_secret"] = oidc is not None and oidc.has_client_secret
        if instance.owner_email is not None:
            body["owner_email"] = instance.owner_email
        return body

    async def trusted_proxy_login(
        self, peer: str | None, headers: Mapping[str, str], client_ip: str | None
    ) -> LoginResult:
        """``POST /v1/auth/trusted-proxy/login``: a 24-hour session for the vouched-for user;
        an invited user is activated on first sign-in."""
        if (await self._store.instance.get()).state is not SetupState.READY:
            raise Conflict("setup_incomplete", "Setup is not complete")
        require_remote(await self._store.instance.preferences(), RemoteAuthMode.TRUSTED_PROXY)
        settings = await self._configured_proxy()
        email = proxied_email(settings, peer, headers, self._decrypt)
        token = new_token()
        now = self._clock.now()
        expires_at = now + USER_SESSION_TTL
        user, activated = await self._store.settings.trusted_proxy_sign_in(
            email=email,
            subject=trusted_proxy_subject(email),
            token_hash=hash_token(token),
            now=now,
            expires_at=expires_at,
        )
        await self._record(
            "user_signed_in",
            client_ip=client_ip,
            user=user,
            resource_type="user",
            details={"method": "trusted_proxy", "activated": activated},
        )
        return LoginResult(token, expires_at, user)
