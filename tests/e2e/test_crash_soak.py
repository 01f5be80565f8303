"""SIGKILL ``oored`` five times at seeded random moments while three real ``oore runner``
agents build (numbered log lines, an uploaded artifact); every build ends succeeded exactly
once with its whole log in order and its artifact downloadable byte for byte.

The scenario and its invariants are ``bench/crash.py`` (``python -m bench crash`` runs it
with 20 kills); a broken invariant raises with the build and what broke.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.crash import Plan, soak

KILLS = 5


@pytest.mark.timeout(300)  # about 35 s alone; a loaded machine needs headroom
def test_sigkilled_daemon_under_real_runners_loses_nothing_and_ends_each_build_once(
    initialised_cluster: Path, tmp_path: Path
) -> None:
    plan = Plan(kills=KILLS, runners=3, lines=200, seed=21)
    figures = soak(plan, tmp_path / "soak", cluster=initialised_cluster, say=lambda _: None)
    assert figures.kills == KILLS
    # The queue is topped up to one build more than the runners before each kill (how
    # many end between kills depends on the machine's speed).
    assert figures.builds >= plan.runners + 1
    assert figures.artifacts == figures.builds
    assert figures.lines >= figures.builds * plan.lines
    # Each restart found the killed daemon's PostgreSQL running and adopted it.
    assert figures.adopted_postgres == KILLS
