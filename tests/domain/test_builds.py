"""Build wording that users and runners read: waiting reasons and how a build ended."""

from __future__ import annotations

from oore.domain.builds import BuildStatus, ending_for_runner, waiting_reason


def test_a_build_waits_when_no_online_runner_holds_all_its_labels() -> None:
    linux, gpu_linux = frozenset({"linux"}), frozenset({"gpu", "linux"})
    assert waiting_reason((), [frozenset()]) is None
    assert waiting_reason(("linux",), [linux]) is None
    assert waiting_reason(("gpu", "linux"), [linux, gpu_linux]) is None
    none_online = waiting_reason((), [])
    assert none_online is not None
    assert none_online.to_json() == {"code": "no_runner_online", "message": "no runner is online"}
    missing = waiting_reason(("macos", "gpu"), [linux, gpu_linux])
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
