"""Another daemon's writes reach this daemon's kept answers by notice."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from tests.http.test_shared_settings import BOUND, bearer, daemon, login


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
        with trio.fail_after(BOUND):  # until b answers from memory (the login's own
            while True:  # changes may reach it meanwhile, and drop what it kept)
                hits = _kept_hits((await client.get(f"{b}/metrics")).text)
                before = (await reader.get(f"{b}/v1/runners", headers=bearer(token))).json()
                if _kept_hits((await client.get(f"{b}/metrics")).text) > hits:
                    break
                await trio.sleep(0.02)
        made = await client.post(
            f"{a}/v1/runners/register", json={"name": "elsewhere"}, headers=bearer(token)
        )
        assert made.status_code == 200, made.text
        with trio.fail_after(BOUND):
            while True:
                seen = (await reader.get(f"{b}/v1/runners", headers=bearer(token))).json()
                if seen["total"] == before["total"] + 1:
                    break
                await trio.sleep(0.02)
        assert [runner["name"] for runner in seen["runners"]] == ["elsewhere"]
