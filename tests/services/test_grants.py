"""Changes that may take read access away reach the other daemons sharing the database.

(What a viewer sees when its access ends is tested with the streams:
``tests/http/test_build_logs.py`` and ``tests/http/test_events_stream.py``.)"""

from __future__ import annotations

from pathlib import Path

from tests.services.test_settings_sync import NEVER, daemon, owner, until


async def test_a_change_on_one_daemon_is_told_to_the_others(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        daemon(database_url, tmp_path / "a", settings_poll_every=NEVER) as (store, a),
        daemon(database_url, tmp_path / "b", settings_poll_every=NEVER) as (_, b),
    ):
        await until(lambda: b.notices.listening)
        session = await owner(store)
        minted = await a.api_tokens.create(
            session, name="x", role="developer", expires_at=None, client_ip=None
        )
        before, here = b.logs.grants.value, a.logs.grants.value
        await a.api_tokens.revoke(session, minted.token.id, client_ip=None)
        assert a.logs.grants.value == here + 1  # at once where it was made
        await until(lambda: b.logs.grants.value > before)
