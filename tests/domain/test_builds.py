"""Build wording that users and runners read: waiting reasons and how a build ended."""

from __future__ import annotations

from oore.domain.builds import (
    BuildStatus,
    ending_for_runner,
    runner_policy_block,
    waiting_reason,
)


def test_a_build_waits_when_no_online_runner_holds_all_its_labels() -> None:
    assert waiting_reason((), anyone_online=True, labels_held=True) is None
    assert waiting_reason(("linux",), anyone_online=True, labels_held=True) is None
    nobody = waiting_reason((), anyone_online=False, labels_held=False)
    assert nobody is not None
    assert nobody.to_json() == {"code": "no_runner_online", "message": "no runner is online"}
    missing = waiting_reason(("macos", "gpu", "gpu"), anyone_online=True, labels_held=False)
    assert missing is not None and missing.to_json() == {
        "code": "no_runner_with_labels",
        "message": "no online runner has the labels gpu, macos",
    }


def test_a_runner_hears_how_its_build_ended() -> None:
    by_user = ending_for_runner(BuildStatus.CANCELED, "owner@local", "canceled by user")
    assert by_user == "The build was canceled by owner@local"
    superseded = ending_for_runner(BuildStatus.CANCELED, "system", "superseded by new build")
    assert superseded == "The build was canceled (superseded by new build)"
    assert ending_for_runner(BuildStatus.TIMED_OUT, None, None) == "The build timed out"


def test_the_runner_pause_blocks_a_build_only_paused_runners_could_take() -> None:
    assert runner_policy_block(paused=True, macos_held=True, other_held=False) == (
        "instance_paused"
    )
    assert runner_policy_block(paused=True, macos_held=True, other_held=True) is None
    assert runner_policy_block(paused=False, macos_held=True, other_held=False) is None
    # No runner online at all: waiting_reason says so; the pause is not why it waits.
    assert runner_policy_block(paused=True, macos_held=False, other_held=False) is None
