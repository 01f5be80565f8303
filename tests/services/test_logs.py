"""A runner's first append of an attempt: from the build as claimed here, or as stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from oore.domain.builds import BuildStatus, Transition
from oore.domain.logs import LogLine
from oore.errors import Forbidden
from oore.store import Store
from tests.scheduling.kit import BOUND, CLOCK, claimed_here


def _lines(start: int, count: int) -> list[LogLine]:
    return [LogLine(n, f"line {n}", "stdout") for n in range(start, start + count)]


def _counting_reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the builds read one by one from now on."""
    read: list[str] = []
    get = store.builds.get

    async def counted(build_id: str) -> Any:
        read.append(build_id)
        return await get(build_id)

    monkeypatch.setattr(store.builds, "get", counted)
    return read


async def test_the_first_append_after_a_claim_here_reads_no_build(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with claimed_here(store, tmp_path) as (rt, runner, build_id):
        with trio.fail_after(BOUND):
            read = _counting_reads(store, monkeypatch)
            assert await rt.logs.append(runner, build_id, _lines(0, 3)) == 3
            assert await rt.logs.append(runner, build_id, _lines(3, 2), attempt=1) == 2
            assert read == []
            lines, total = await store.builds.logs(build_id, attempt=1, after=-1, limit=None)
            assert [line.sequence for line in lines] == [0, 1, 2, 3, 4]
            assert total == 5


async def test_the_first_append_after_a_claim_here_reads_nothing_to_mask_its_lines(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The claim read the variables the runner was given and the pipeline's sealed signing
    # passwords (none are fetched: signing is off); the first append masks from those.
    async with claimed_here(store, tmp_path) as (rt, runner, build_id):
        with trio.fail_after(BOUND):
            reads: list[str] = []
            for_build, sealed = store.variables.for_build, store.signing.sealed_passwords

            async def variables_read(*args: Any) -> Any:
                reads.append("variables")
                return await for_build(*args)

            async def passwords_read(*args: Any) -> Any:
                reads.append("signing")
                return await sealed(*args)

            monkeypatch.setattr(store.variables, "for_build", variables_read)
            monkeypatch.setattr(store.signing, "sealed_passwords", passwords_read)
            assert await rt.logs.append(runner, build_id, _lines(0, 3)) == 3
            assert reads == []


async def test_a_first_append_to_a_build_changed_behind_the_daemons_back_is_refused_as_it_is(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with claimed_here(store, tmp_path) as (rt, runner, build_id):
        with trio.fail_after(BOUND):
            # canceled by a write this daemon never hears of (no notice): the build as
            # claimed is out of date, and the commit finds it so
            await store.builds.transition(
                Transition(
                    build_id,
                    BuildStatus.ASSIGNED,
                    BuildStatus.CANCELED,
                    "user:o",
                    "canceled by user",
                    CLOCK.now(),
                )
            )
            read = _counting_reads(store, monkeypatch)
            with pytest.raises(Forbidden) as refused:
                await rt.logs.append(runner, build_id, _lines(0, 3))
            assert refused.value.code == "runner_mismatch"
            assert refused.value.details == "canceled"
            assert read == [build_id]
            assert await store.builds.logs(build_id, attempt=1, after=-1, limit=None) == ([], 0)
