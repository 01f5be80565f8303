"""SQL for the instance row: setup state, bootstrap token, setup session, preferences."""

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
    ensure_not_ready,
    judge_bootstrap,
    judge_setup_session,
)
from oore.errors import ApiError
from oore.store.database import Connection, Database


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


async def _preferences(conn: Connection) -> Preferences:
    row = await conn.fetchrow("SELECT runtime_mode, remote_auth_mode FROM instance_preferences")
    if row is None:
        return Preferences()
    return Preferences(RuntimeMode(row["runtime_mode"]), RemoteAuthMode(row["remote_auth_mode"]))


async def _set_preferences(conn: Connection, prefs: Preferences, now: int) -> None:
    await conn.execute(
        """INSERT INTO instance_preferences (runtime_mode, remote_auth_mode, updated_at)
           VALUES ($1, $2, $3)
           ON CONFLICT (singleton) DO UPDATE SET runtime_mode = EXCLUDED.runtime_mode,
               remote_auth_mode = EXCLUDED.remote_auth_mode, updated_at = EXCLUDED.updated_at""",
        prefs.runtime_mode.value,
        prefs.remote_auth_mode.value,
        now,
    )


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


class InstanceStore:
    """The single instance row."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def ensure(self, now: int) -> Instance:
        """Create the row in ``bootstrap_pending`` with a new instance id if missing."""
        return await self._db.transaction(_ensure, now)

    async def get(self) -> Instance:
        return await self._db.run(_get)

    async def preferences(self) -> Preferences:
        return await self._db.run(_preferences)

    async def set_preferences(self, prefs: Preferences, now: int) -> None:
        await self._db.run(_set_preferences, prefs, now)

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
