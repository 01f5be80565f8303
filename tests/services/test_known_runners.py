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


def test_a_heartbeat_updates_the_status_and_capabilities_kept() -> None:
    """What the runner pause decides by (a Mac) is as the last heartbeat reported it."""
    known = KnownRunners()
    known.remember("hash-a", runner("a"), known.epoch)
    assert not known.get("hash-a").direct_macos  # type: ignore[union-attr]
    known.set_status("a", RunnerStatus.BUSY, {"os": "darwin"})
    kept = known.get("hash-a")
    assert kept is not None and kept.status is RunnerStatus.BUSY and kept.direct_macos
    known.set_status("a", RunnerStatus.ONLINE, {})  # no capabilities: the last ones stay
    kept = known.get("hash-a")
    assert kept is not None and kept.status is RunnerStatus.ONLINE and kept.direct_macos
