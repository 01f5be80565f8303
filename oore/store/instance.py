"""SQL for the instance row: setup state, bootstrap token, setup session, owner, preferences."""

from __future__ import annotations

from typing import Any

from oore.domain.ids import new_id
from oore.domain.setup import (
    SETUP_SESSION_TTL,
    BootstrapAccepted,
    Instance,
    Preferences,
    RemoteAuthMode,
    RuntimeMode,
    SetupState,
    ensure_before_owner,
    ensure_not_ready,
    erases_oidc,
    judge_bootstrap,
    judge_setup_session,
    require_state,
)
from oore.domain.users import User
from oore.errors import ApiError, Conflict
from oore.store.audit import AuditEntry, insert_audit
from oore.store.database import Connection, Database
from oore.store.users import _upsert_owner


def _instance(row: Any) -> Instance:
    return Instance(
        instance_id=str(row["instance_id"]),
        state=SetupState(row["state"]),
        bootstrap_token_hash=row["bootstrap_token_hash"],
        bootstrap_expires_at=row["bootstrap_expires_at"],
        bootstrap_consumed_at=row["bootstrap_consumed_at"],
        bootstrap_failed_attempts=row["bootstrap_failed_attempts"],
        owner_email=row["owner_email"],
        owner_subject=row["owner_subject"],
        setup_session_hash=row["setup_session_hash"],
        setup_session_expires_at=row["setup_session_expires_at"],
        setup_generation=row["setup_generation"],
    )


async def _ensure(conn: Connection, now: int) -> Instance:
    await conn.execute(
        """INSERT INTO instance (instance_id, state, created_at, updated_at)
           VALUES ($1, 'bootstrap_pending', $2, $2) ON CONFLICT (singleton) DO NOTHING""",
        new_id(),
        now,
    )
    return _instance(await conn.fetchrow("SELECT * FROM instance"))


async def _locked(conn: Connection) -> Instance:
    return _instance(await conn.fetchrow("SELECT * FROM instance FOR UPDATE"))


async def _get(conn: Connection) -> Instance:
    return _instance(await conn.fetchrow("SELECT * FROM instance"))


def _preferences_of(row: Any) -> Preferences:
    if row is None:
        return Preferences()
    return Preferences(
        RuntimeMode(row["runtime_mode"]),
        RemoteAuthMode(row["remote_auth_mode"]),
        row["direct_macos_runner_paused"],
        row["updated_at"],
    )


async def _preferences(conn: Connection) -> Preferences:
    return _preferences_of(await conn.fetchrow("SELECT * FROM instance_preferences"))


async def _set_preferences(conn: Connection, prefs: Preferences, now: int) -> None:
    await conn.execute(
        """INSERT INTO instance_preferences
               (runtime_mode, remote_auth_mode, direct_macos_runner_paused, updated_at)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (singleton) DO UPDATE SET runtime_mode = EXCLUDED.runtime_mode,
               remote_auth_mode = EXCLUDED.remote_auth_mode,
               direct_macos_runner_paused = EXCLUDED.direct_macos_runner_paused,
               updated_at = EXCLUDED.updated_at""",
        prefs.runtime_mode.value,
        prefs.remote_auth_mode.value,
        prefs.direct_macos_runner_paused,
        now,
    )


async def _save_setup_preferences(conn: Connection, chosen: Preferences, now: int) -> bool:
    instance = await _locked(conn)
    ensure_before_owner(instance)
    erase = erases_oidc(instance.state, chosen)
    if erase:
        await conn.execute("DELETE FROM oidc_config")
    await _set_preferences(conn, chosen, now)
    # Pending setup sign-ins remember the generation they started under: now stale.
    await conn.execute(
        "UPDATE instance SET setup_generation = setup_generation + 1, updated_at = $1", now
    )
    return erase


async def _record_owner(
    conn: Connection, allowed: tuple[SetupState, ...], email: str, subject: str, now: int
) -> None:
    instance = await _locked(conn)
    ensure_not_ready(instance)
    require_state(instance, *allowed)
    await conn.execute(
        """UPDATE instance SET state = 'owner_created', owner_email = $1, owner_subject = $2,
               updated_at = $3""",
        email,
        subject,
        now,
    )


async def _complete(conn: Connection, now: int, client_ip: str | None) -> tuple[Instance, User]:
    instance = await _locked(conn)
    ensure_not_ready(instance)
    require_state(instance, SetupState.OWNER_CREATED)
    if instance.owner_email is None or instance.owner_subject is None:
        raise Conflict("invalid_state", "No owner has been recorded")
    owner = await _upsert_owner(conn, instance.owner_email, instance.owner_subject, now)
    await conn.execute(
        """UPDATE instance SET state = 'ready', setup_session_hash = NULL,
               setup_session_expires_at = NULL, updated_at = $1""",
        now,
    )
    await insert_audit(
        conn,
        [
            AuditEntry(
                owner.id, owner.email, "owner_created", "user", owner.id, None, client_ip, now
            ),
            AuditEntry(
                owner.id, owner.email, "setup_completed", "instance", None, None, client_ip, now
            ),
        ],
    )
    return instance, owner


async def _update_preferences(
    conn: Connection, seen: Preferences, new: Preferences, revoke_sessions: bool, now: int
) -> int:
    current = _preferences_of(await conn.fetchrow("SELECT * FROM instance_preferences FOR UPDATE"))
    if current != seen:
        raise Conflict("preferences_changed", "Preferences were changed meanwhile; reload them")
    inserted = await conn.fetchval(
        """INSERT INTO instance_preferences
               (runtime_mode, remote_auth_mode, direct_macos_runner_paused, updated_at)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (singleton) DO UPDATE SET runtime_mode = EXCLUDED.runtime_mode,
               remote_auth_mode = EXCLUDED.remote_auth_mode,
               direct_macos_runner_paused = EXCLUDED.direct_macos_runner_paused,
               updated_at = EXCLUDED.updated_at
           WHERE instance_preferences.updated_at IS NOT DISTINCT FROM $5
           RETURNING true""",
        new.runtime_mode.value,
        new.remote_auth_mode.value,
        new.direct_macos_runner_paused,
        now,
        seen.updated_at,
    )
    if inserted is not True:  # a first row was inserted concurrently
        raise Conflict("preferences_changed", "Preferences were changed meanwhile; reload them")
    if not revoke_sessions:
        return 0
    revoked: int = await conn.fetchval(
        "WITH gone AS (DELETE FROM sessions RETURNING 1) SELECT count(*) FROM gone"
    )
    return revoked


async def _mint(conn: Connection, token_hash: str, expires_at: int, now: int) -> Instance:
    instance = await _locked(conn)
    ensure_not_ready(instance)
    await conn.execute(
        """UPDATE instance SET bootstrap_token_hash = $1, bootstrap_expires_at = $2,
               bootstrap_consumed_at = NULL, bootstrap_failed_attempts = 0, updated_at = $3""",
        token_hash,
        expires_at,
        now,
    )
    return instance


async def _verify(
    conn: Connection, presented_hash: str, session_hash: str, now: int
) -> ApiError | int:
    instance = await _locked(conn)
    verdict = judge_bootstrap(instance, presented_hash, now)
    if isinstance(verdict, BootstrapAccepted):
        expires_at = now + SETUP_SESSION_TTL
        await conn.execute(
            """UPDATE instance SET bootstrap_consumed_at = $1, setup_session_hash = $2,
                   setup_session_expires_at = $3, updated_at = $1""",
            now,
            session_hash,
            expires_at,
        )
        return expires_at
    await conn.execute(
        "UPDATE instance SET bootstrap_failed_attempts = $1, updated_at = $2",
        verdict.failed_attempts,
        now,
    )
    # The attempt counter must be committed, so the error is returned, not raised.
    return verdict.error


async def _touch_setup_session(conn: Connection, presented_hash: str | None, now: int) -> int:
    expires_at = judge_setup_session(await _locked(conn), presented_hash, now)
    await conn.execute(
        "UPDATE instance SET setup_session_expires_at = $1, updated_at = $2", expires_at, now
    )
    return expires_at


async def _record_key_fingerprint(conn: Connection, fingerprint: str) -> str:
    recorded: str = await conn.fetchval(
        """UPDATE instance SET key_fingerprint = COALESCE(key_fingerprint, $1)
           RETURNING key_fingerprint""",
        fingerprint,
    )
    return recorded


class InstanceStore:
    """The single instance row."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def ensure(self, now: int) -> Instance:
        """Create the row in ``bootstrap_pending`` with a new instance id if missing."""
        return await self._db.transaction(_ensure, now)

    async def get(self) -> Instance:
        return await self._db.run(_get)

    async def record_key_fingerprint(self, fingerprint: str) -> str:
        """Record the encryption key's fingerprint if none is yet (the first daemon on this
        database); returns the one recorded, to compare with this daemon's own. Call after
        :meth:`ensure`."""
        return await self._db.run(_record_key_fingerprint, fingerprint)

    async def preferences(self) -> Preferences:
        return await self._db.run(_preferences)

    async def set_preferences(self, prefs: Preferences, now: int) -> None:
        await self._db.run(_set_preferences, prefs, now)

    async def save_setup_preferences(self, chosen: Preferences, now: int) -> bool:
        """Store the setup-time choice and make pending setup sign-ins stale; in
        ``idp_configured`` a provider the choice no longer uses is erased (returns True).
        409 ``already_configured`` / ``invalid_state`` once an owner exists."""
        return await self._db.transaction(_save_setup_preferences, chosen, now)

    async def record_owner(
        self, allowed: tuple[SetupState, ...], *, email: str, subject: str, now: int
    ) -> None:
        """Move to ``owner_created`` with this owner, if setup is in one of ``allowed``."""
        await self._db.transaction(_record_owner, allowed, email, subject, now)

    async def complete(self, now: int, client_ip: str | None) -> tuple[Instance, User]:
        """Atomically: the recorded owner upserted by email and promoted, audit
        ``owner_created`` + ``setup_completed``, state ``ready``, setup session cleared."""
        return await self._db.transaction(_complete, now, client_ip)

    async def update_preferences(
        self, seen: Preferences, new: Preferences, *, revoke_sessions: bool, now: int
    ) -> int:
        """Replace the preferences read as ``seen`` (409 ``preferences_changed`` if they moved
        meanwhile); with ``revoke_sessions`` every user session ends in the same transaction.
        Returns how many sessions were deleted."""
        return await self._db.transaction(_update_preferences, seen, new, revoke_sessions, now)

    async def mint_bootstrap_token(self, token_hash: str, expires_at: int, now: int) -> None:
        """Replace any bootstrap token; resets consumption and the wrong-guess budget."""
        await self._db.transaction(_mint, token_hash, expires_at, now)

    async def verify_bootstrap_token(self, presented_hash: str, session_hash: str, now: int) -> int:
        """Consume the token and open a setup session; returns the session expiry."""
        outcome = await self._db.transaction(_verify, presented_hash, session_hash, now)
        if isinstance(outcome, ApiError):
            raise outcome
        return outcome

    async def touch_setup_session(self, presented_hash: str | None, now: int) -> int:
        """Validate the setup session and slide it forward; returns its new expiry.

        401 ``no_session`` / ``invalid_session`` / ``session_expired`` (contract §2.2).
        """
        return await self._db.transaction(_touch_setup_session, presented_hash, now)
