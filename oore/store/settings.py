"""SQL for the external-access settings rows: the trusted proxy and the network settings,
the trusted-proxy sign-in that turns a vouched-for email into a session, and the rows a
daemon holds in memory, read together for its fallback poll."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oore.domain.artifact_storage import StoredStorageSettings
from oore.domain.network import NetworkSettings, TrustedProxySettings
from oore.domain.setup import SetupState, ensure_before_owner
from oore.domain.users import User, UserStatus
from oore.errors import Forbidden
from oore.store.artifacts import _settings as _storage_settings
from oore.store.database import Connection, Database
from oore.store.instance import _locked
from oore.store.users import _insert_session, user_from_row


def _trusted_proxy_of(row: Any) -> TrustedProxySettings:
    return TrustedProxySettings(
        user_email_header=row["user_email_header"],
        setup_owner_email=row["setup_owner_email"],
        trusted_proxy_cidrs=tuple(row["trusted_proxy_cidrs"]),
        shared_secret_enc=row["shared_secret_enc"],
        configured_at=row["configured_at"],
        updated_at=row["updated_at"],
        warpgate_ticket_enc=row["warpgate_ticket_enc"],
    )


async def _trusted_proxy(conn: Connection) -> TrustedProxySettings | None:
    row = await conn.fetchrow("SELECT * FROM trusted_proxy_settings")
    return None if row is None else _trusted_proxy_of(row)


async def _upsert_trusted_proxy(
    conn: Connection, settings: TrustedProxySettings, now: int
) -> TrustedProxySettings:
    """Write every column; ``configured_at`` is kept from the first save."""
    row = await conn.fetchrow(
        """INSERT INTO trusted_proxy_settings (user_email_header, setup_owner_email,
               trusted_proxy_cidrs, shared_secret_enc, warpgate_ticket_enc, configured_at,
               updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $6)
           ON CONFLICT (singleton) DO UPDATE SET
               user_email_header = EXCLUDED.user_email_header,
               setup_owner_email = EXCLUDED.setup_owner_email,
               trusted_proxy_cidrs = EXCLUDED.trusted_proxy_cidrs,
               shared_secret_enc = EXCLUDED.shared_secret_enc,
               warpgate_ticket_enc = EXCLUDED.warpgate_ticket_enc,
               updated_at = EXCLUDED.updated_at
           RETURNING *""",
        settings.user_email_header,
        settings.setup_owner_email,
        list(settings.trusted_proxy_cidrs),
        settings.shared_secret_enc,
        settings.warpgate_ticket_enc,
        now,
    )
    return _trusted_proxy_of(row)


async def _configure_for_setup(
    conn: Connection, settings: TrustedProxySettings, now: int
) -> TrustedProxySettings:
    instance = await _locked(conn)
    ensure_before_owner(instance)
    await conn.execute(
        "UPDATE instance SET state = $1, updated_at = $2", SetupState.IDP_CONFIGURED.value, now
    )
    # Setup (re)configures from scratch, so the configuration time moves with it.
    await conn.execute("DELETE FROM trusted_proxy_settings")
    return await _upsert_trusted_proxy(conn, settings, now)


async def _network(conn: Connection) -> NetworkSettings | None:
    row = await conn.fetchrow("SELECT * FROM external_access_network")
    if row is None:
        return None
    return NetworkSettings(
        public_url=row["public_url"],
        artifact_delivery_url=row["artifact_delivery_url"],
        allowed_origins=tuple(row["allowed_origins"]),
        updated_at=row["updated_at"],
    )


async def _save_network(conn: Connection, settings: NetworkSettings, now: int) -> None:
    await conn.execute(
        """INSERT INTO external_access_network
               (public_url, artifact_delivery_url, allowed_origins, updated_at)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (singleton) DO UPDATE SET public_url = EXCLUDED.public_url,
               artifact_delivery_url = EXCLUDED.artifact_delivery_url,
               allowed_origins = EXCLUDED.allowed_origins, updated_at = EXCLUDED.updated_at""",
        settings.public_url,
        settings.artifact_delivery_url,
        list(settings.allowed_origins),
        now,
    )


@dataclass(frozen=True)
class HeldRows:
    """The settings rows a daemon keeps a copy of in memory (None: no row saved)."""

    network: NetworkSettings | None
    artifact_storage: StoredStorageSettings | None
    # The instance preferences' runner pause (false while no preferences are saved).
    direct_macos_runner_paused: bool = False


async def _held(conn: Connection) -> HeldRows:
    paused = await conn.fetchval("SELECT direct_macos_runner_paused FROM instance_preferences")
    return HeldRows(await _network(conn), await _storage_settings(conn), bool(paused))


async def _proxy_sign_in(
    conn: Connection, email: str, subject: str, token_hash: str, now: int, expires_at: int
) -> tuple[User, bool]:
    row = await conn.fetchrow(
        """SELECT * FROM users WHERE lower(email) = $1
           ORDER BY (status = 'active') DESC, (status = 'invited') DESC, created_at
           LIMIT 1 FOR UPDATE""",
        email,
    )
    if row is None:
        raise Forbidden("user_not_found", "No account exists for this identity")
    user = user_from_row(row)
    if user.status is UserStatus.DISABLED:
        raise Forbidden("user_disabled", "This account is disabled")
    activated = user.status is UserStatus.INVITED
    if activated:
        row = await conn.fetchrow(
            """UPDATE users SET status = 'active', oidc_subject = $2, updated_at = $3
               WHERE id = $1 RETURNING *""",
            row["id"],
            subject,
            now,
        )
        user = user_from_row(row)
    await _insert_session(conn, token_hash, user.id, now, expires_at)
    return user, activated


class SettingsStore:
    """The trusted-proxy and external-access network rows."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def trusted_proxy(self) -> TrustedProxySettings | None:
        """The saved trusted-proxy settings, or None before any were saved."""
        return await self._db.run(_trusted_proxy)

    async def save_trusted_proxy(
        self, settings: TrustedProxySettings, now: int
    ) -> TrustedProxySettings:
        return await self._db.run(_upsert_trusted_proxy, settings, now)

    async def configure_trusted_proxy_for_setup(
        self, settings: TrustedProxySettings, now: int
    ) -> TrustedProxySettings:
        """Replace the row and move setup to ``idp_configured`` (409 once an owner exists)."""
        return await self._db.transaction(_configure_for_setup, settings, now)

    async def network(self) -> NetworkSettings | None:
        """The saved network settings, or None while the environment or defaults apply."""
        return await self._db.run(_network)

    async def save_network(self, settings: NetworkSettings, now: int) -> None:
        await self._db.run(_save_network, settings, now)

    async def held_rows(self) -> HeldRows:
        """The network and artifact storage rows and the runner pause, read on one
        connection (three small single-row reads: cheap enough to run every second)."""
        return await self._db.run(_held)

    async def trusted_proxy_sign_in(
        self, *, email: str, subject: str, token_hash: str, now: int, expires_at: int
    ) -> tuple[User, bool]:
        """A session for the user with this email (case-insensitive); an invited user is
        activated with ``subject`` (returned True). 403 ``user_not_found`` / ``user_disabled``."""
        return await self._db.transaction(
            _proxy_sign_in, email, subject, token_hash, now, expires_at
        )
