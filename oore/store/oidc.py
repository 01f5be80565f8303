"""SQL for OpenID Connect: the provider configuration row, the setup transitions it causes,
and what an OIDC sign-in writes (invite activation, avatar, the new session)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oore.domain.oidc import (
    IdentityClaims,
    OidcConfig,
    secret_reentry_needed,
    secret_reentry_required,
    sign_in_target,
)
from oore.domain.setup import SetupState
from oore.domain.users import User, UserStatus
from oore.errors import Conflict
from oore.store.audit import AuditEntry, insert_audit
from oore.store.database import Connection, Database
from oore.store.users import user_from_row


@dataclass(frozen=True)
class ConfigWrite:
    """A configuration to store. With ``keep_secret`` the stored secret stays as it is
    (refused with 400 ``oidc_secret_reentry_required`` when the issuer or client changes);
    otherwise ``client_secret_enc`` replaces it (None clears it)."""

    issuer_url: str
    client_id: str
    client_secret_enc: str | None
    keep_secret: bool


@dataclass(frozen=True)
class Actor:
    """Who caused a write, for the audit log."""

    user_id: str | None
    email: str | None
    client_ip: str | None


def _config(row: Any) -> OidcConfig:
    return OidcConfig(
        issuer_url=row["issuer_url"],
        client_id=row["client_id"],
        client_secret_enc=row["client_secret_enc"],
        configured_at=row["configured_at"],
        updated_at=row["updated_at"],
    )


async def _get(conn: Connection) -> OidcConfig | None:
    row = await conn.fetchrow("SELECT * FROM oidc_config")
    return None if row is None else _config(row)


async def _upsert(conn: Connection, write: ConfigWrite, now: int) -> OidcConfig:
    stored = await _get(conn)
    if secret_reentry_needed(
        stored, write.issuer_url, write.client_id, keeps_secret=write.keep_secret
    ):
        raise secret_reentry_required()
    row = await conn.fetchrow(
        """INSERT INTO oidc_config (issuer_url, client_id, client_secret_enc, configured_at,
                                    updated_at)
           VALUES ($1, $2, CASE WHEN $4 THEN NULL ELSE $3 END, $5, $5)
           ON CONFLICT (singleton) DO UPDATE
               SET issuer_url = EXCLUDED.issuer_url, client_id = EXCLUDED.client_id,
                   client_secret_enc = CASE WHEN $4 THEN oidc_config.client_secret_enc
                                            ELSE $3 END,
                   configured_at = EXCLUDED.configured_at, updated_at = EXCLUDED.updated_at
           RETURNING *""",
        write.issuer_url,
        write.client_id,
        write.client_secret_enc,
        write.keep_secret,
        now,
    )
    return _config(row)


@dataclass(frozen=True)
class _SetupRow:
    state: SetupState
    owner_email: str | None
    generation: int


async def _lock_instance(conn: Connection) -> _SetupRow:
    """The instance's setup fields, locked; 409 ``already_configured`` once ready."""
    row = await conn.fetchrow(
        "SELECT state, owner_email, setup_generation FROM instance FOR UPDATE"
    )
    found = _SetupRow(SetupState(row["state"]), row["owner_email"], row["setup_generation"])
    if found.state is SetupState.READY:
        raise Conflict("already_configured", "Setup is already complete")
    return found


def _audit(action: str, actor: Actor, now: int, *, target: str | None = None) -> AuditEntry:
    return AuditEntry(
        actor_id=actor.user_id,
        actor_email=actor.email,
        action=action,
        resource_type="user" if target else "instance",
        resource_id=target,
        details=None,
        client_ip=actor.client_ip,
        created_at=now,
    )


async def _configure_setup(
    conn: Connection, write: ConfigWrite, now: int, actor: Actor
) -> OidcConfig:
    instance = await _lock_instance(conn)
    if instance.state not in (SetupState.BOOTSTRAP_PENDING, SetupState.IDP_CONFIGURED):
        raise Conflict("invalid_state", "The identity provider can no longer be configured")
    config = await _upsert(conn, write, now)
    await conn.execute(
        """UPDATE instance SET state = 'idp_configured', setup_generation = setup_generation + 1,
               updated_at = $1""",
        now,
    )
    await insert_audit(conn, [_audit("oidc_configured", actor, now)])
    return config


async def _configure_ready(
    conn: Connection, write: ConfigWrite, now: int, actor: Actor
) -> OidcConfig:
    state = await conn.fetchval("SELECT state FROM instance FOR UPDATE")
    if state != SetupState.READY.value:
        raise Conflict("invalid_state", "Setup is not complete")
    config = await _upsert(conn, write, now)
    await insert_audit(conn, [_audit("oidc_settings_updated", actor, now)])
    return config


async def _clear(conn: Connection) -> bool:
    return await conn.fetchval("DELETE FROM oidc_config RETURNING true") is True


async def _verify_owner(
    conn: Connection, claims: IdentityClaims, generation: int, now: int, client_ip: str | None
) -> None:
    instance = await _lock_instance(conn)
    if instance.state is not SetupState.IDP_CONFIGURED or instance.owner_email is not None:
        raise Conflict("invalid_state", "The owner cannot be verified in this setup state")
    if instance.generation != generation:
        raise Conflict("stale_oidc_setup", "Setup changed since this sign-in was started")
    await conn.execute(
        """UPDATE instance SET state = 'owner_created', owner_email = $1, owner_subject = $2,
               updated_at = $3""",
        claims.email,
        claims.subject,
        now,
    )
    actor = Actor(None, claims.email, client_ip)
    await insert_audit(conn, [_audit("owner_verified", actor, now)])


async def _sign_in(
    conn: Connection,
    claims: IdentityClaims,
    token_hash: str,
    now: int,
    expires_at: int,
    client_ip: str | None,
) -> tuple[User, bool]:
    row = await conn.fetchrow(
        "SELECT * FROM users WHERE oidc_subject = $1 FOR UPDATE", claims.subject
    )
    by_subject = None if row is None else user_from_row(row)
    invited = None
    if by_subject is None or by_subject.status is not UserStatus.ACTIVE:
        row = await conn.fetchrow(
            """SELECT * FROM users WHERE status = 'invited' AND lower(email) = lower($1)
               ORDER BY created_at, id LIMIT 1 FOR UPDATE""",
            claims.email,
        )
        invited = None if row is None else user_from_row(row)
    target = sign_in_target(by_subject, claims, invited)
    user = target.user
    if target.activates:
        row = await conn.fetchrow(
            """UPDATE users SET status = 'active', oidc_subject = $2,
                   avatar_url = COALESCE($3, avatar_url), updated_at = $4
               WHERE id = $1 RETURNING *""",
            user.id,
            claims.subject,
            claims.picture,
            now,
        )
        user = user_from_row(row)
    elif claims.picture is not None and claims.picture != user.avatar_url:
        row = await conn.fetchrow(
            "UPDATE users SET avatar_url = $2, updated_at = $3 WHERE id = $1 RETURNING *",
            user.id,
            claims.picture,
            now,
        )
        user = user_from_row(row)
    await conn.execute(
        """INSERT INTO sessions (token_hash, user_id, created_at, expires_at)
           VALUES ($1, $2, $3, $4)""",
        token_hash,
        user.id,
        now,
        expires_at,
    )
    actor = Actor(user.id, user.email, client_ip)
    entries = [_audit("user_signed_in", actor, now, target=user.id)]
    if target.activates:
        entries.insert(0, _audit("user_activated", actor, now, target=user.id))
    await insert_audit(conn, entries)
    return user, target.activates


class OidcStore:
    """The single OIDC configuration row and the writes OIDC sign-in causes."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self) -> OidcConfig | None:
        """The stored configuration, or None before any was saved."""
        return await self._db.run(_get)

    async def configure_setup(self, write: ConfigWrite, now: int, actor: Actor) -> OidcConfig:
        """Setup step: store the configuration, move to ``idp_configured`` and bump the setup
        generation, in one transaction. 409 ``already_configured`` / ``invalid_state``."""
        return await self._db.transaction(_configure_setup, write, now, actor)

    async def configure_ready(self, write: ConfigWrite, now: int, actor: Actor) -> OidcConfig:
        """Settings: replace the configuration of a ready instance; 409 ``invalid_state``."""
        return await self._db.transaction(_configure_ready, write, now, actor)

    async def clear(self) -> bool:
        """Erase the configuration and its secret; True if there was one."""
        return await self._db.run(_clear)

    async def verify_owner(
        self, claims: IdentityClaims, generation: int, now: int, client_ip: str | None
    ) -> None:
        """``idp_configured`` without owner -> ``owner_created`` with the ID token's email and
        subject; 409 ``invalid_state`` / ``stale_oidc_setup`` when setup moved on."""
        await self._db.transaction(_verify_owner, claims, generation, now, client_ip)

    async def sign_in(
        self,
        claims: IdentityClaims,
        *,
        token_hash: str,
        now: int,
        expires_at: int,
        client_ip: str | None,
    ) -> tuple[User, bool]:
        """Find the account (activating an invitation), refresh its avatar and open a session,
        in one transaction. Returns the user and whether this sign-in activated them."""
        return await self._db.transaction(_sign_in, claims, token_hash, now, expires_at, client_ip)
