"""A runner's report: answered from what the daemon holds, or as the build now is."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from oore.domain.builds import BuildStatus, Transition
from oore.errors import Forbidden
from oore.store import Store
from tests.scheduling.kit import BOUND, CLOCK, claimed_here


async def test_a_report_of_a_build_changed_behind_the_daemons_back_is_answered_as_it_is(
    store: Store, tmp_path: Path
) -> None:
    async with claimed_here(store, tmp_path) as (rt, runner, build_id):
        with trio.fail_after(BOUND):
            running, events = await rt.builds.report(
                runner, build_id, status="running", exit_code=None, error_message=None, steps=None
            )
            assert running.status is BuildStatus.RUNNING
            assert [e.to_status for e in events][-1] is BuildStatus.RUNNING
            assert rt.scheduling.held(build_id, runner.id) is not None
            # canceled by a write this daemon never hears of (no notice): what it holds
            # is out of date, and the commit finds it so
            await store.builds.transition(
                Transition(
                    build_id,
                    BuildStatus.RUNNING,
                    BuildStatus.CANCELED,
                    "user:o",
                    "canceled by user",
                    CLOCK.now(),
                )
            )
            with pytest.raises(Forbidden) as refused:
                await rt.builds.report(
                    runner,
                    build_id,
                    status="succeeded",
                    exit_code=0,
                    error_message=None,
                    steps=None,
                )
            assert refused.value.code == "runner_mismatch"
            assert refused.value.details == "canceled"
            assert rt.scheduling.held(build_id, runner.id) is None
