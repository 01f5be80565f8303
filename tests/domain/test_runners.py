"""Which runners the runner pause holds back: those reporting a macOS ``os``."""

from __future__ import annotations

import pytest

from oore.domain.runners import is_direct_macos


@pytest.mark.parametrize(
    ("capabilities", "mac"),
    [
        ({"os": "darwin", "agent": "oore-runner"}, True),  # oore's own agent on a Mac
        ({"os": "macos", "protocol_version": 4}, True),  # the Rust runner
        ({"os": " Darwin "}, True),
        ({"os": "linux"}, False),
        ({"os": "windows"}, False),
        ({}, False),
        (None, False),
        (["darwin"], False),
        ({"os": 1}, False),
    ],
)
def test_a_direct_macos_runner_is_one_reporting_a_macos_os(capabilities: object, mac: bool) -> None:
    assert is_direct_macos(capabilities) is mac
