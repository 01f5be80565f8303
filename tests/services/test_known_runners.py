"""The runner token cache: a lookup that raced with a change of its runner is not kept;
changes of other runners (other daemons tell of one or more per claim) do not stop it."""

from __future__ import annotations

from oore.domain.runners import Runner, RunnerStatus
from oore.services.runners import FORGOTTEN, KnownRunners


def runner(runner_id: str) -> Runner:
    return Runner(runner_id, runner_id, RunnerStatus.ONLINE, None, (), 1, False, None, None, 0, 0)


def test_a_lookup_is_kept_while_other_runners_change() -> None:
    known = KnownRunners()
    began = known.epoch
    for i in range(100):
        known.forget(f"other-{i}")
    known.remember("hash-a", runner("a"), began)
    assert known.get("hash-a") == runner("a")


def test_a_lookup_that_raced_with_a_change_of_its_runner_is_not_kept() -> None:
    known = KnownRunners()
    began = known.epoch
    known.forget("a")  # renamed or drained meanwhile: what the lookup read may be stale
    known.remember("hash-a", runner("a"), began)
    assert known.get("hash-a") is None
    again = known.epoch  # a lookup after the change is kept
    known.remember("hash-a", runner("a"), again)
    assert known.get("hash-a") == runner("a")


def test_a_lookup_older_than_what_is_remembered_of_changes_is_not_kept() -> None:
    known = KnownRunners()
    began = known.epoch
    known.forget("a")
    for i in range(FORGOTTEN):  # so many changes that the one of "a" is no longer held
        known.forget(f"other-{i}")
    known.remember("hash-a", runner("a"), began)
    assert known.get("hash-a") is None
