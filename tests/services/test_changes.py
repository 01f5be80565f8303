"""Another daemon's writes reach this daemon's kept answers by notice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.http.test_shared_settings import bearer, daemon, login, until


def _kept_hits(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("oore_answers_kept_hits_total "):
            return float(line.split()[1])
    raise AssertionError("no kept-answer hits in /metrics")


async def test_a_runner_registered_on_one_daemon_shows_in_the_others_kept_list(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        daemon(database_url, tmp_path / "a") as a,
        daemon(database_url, tmp_path / "b") as b,
        httpx.AsyncClient(timeout=10) as client,
        httpx.AsyncClient(timeout=10) as reader,
    ):
        # the reader's connections carry only the hot reads, so the lean listener keeps
        # them (a connection goes to Quart for good at its first other request)
        token = await login(client, a)
        seen: dict[str, Any] = {}

        async def read() -> int:
            found: dict[str, Any] = (
                await reader.get(f"{b}/v1/runners", headers=bearer(token))
            ).json()
            seen.update(found)
            return int(found["total"])

        async def kept_on_b() -> bool:
            # the login's own changes may reach b meanwhile, and drop what it kept
            hits = _kept_hits((await client.get(f"{b}/metrics")).text)
            await read()
            return _kept_hits((await client.get(f"{b}/metrics")).text) > hits

        await until(kept_on_b)
        before = int(seen["total"])
        made = await client.post(
            f"{a}/v1/runners/register", json={"name": "elsewhere"}, headers=bearer(token)
        )
        assert made.status_code == 200, made.text

        async def registered() -> bool:
            return await read() == before + 1

        await until(registered)
        assert [runner["name"] for runner in seen["runners"]] == ["elsewhere"]
