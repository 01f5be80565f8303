"""How server-side variables, the UI env and a repository file's env make a build's env."""

from __future__ import annotations

import pytest

from oore.domain.pipeline_config import EnvVar, Step
from oore.domain.variables import (
    BuildVariable,
    build_variables,
    check_input,
    keep_secrets_in_steps,
    maskable,
    merge_env,
    parse_build_variables,
)
from oore.errors import InvalidInput


def test_pipeline_variables_override_the_projects() -> None:
    merged = build_variables(
        [BuildVariable("A", "project", False), BuildVariable("B", "project-b", True)],
        [BuildVariable("A", "pipeline", True)],
    )
    assert merged == (BuildVariable("A", "pipeline", True), BuildVariable("B", "project-b", True))


def test_the_file_overrides_plain_values_but_never_a_secret() -> None:
    merged = merge_env(
        [("UI", "ui"), ("PLAIN", "ui-plain")],
        [BuildVariable("PLAIN", "server", False), BuildVariable("KEY", "secret!", True)],
        [("PLAIN", "file"), ("KEY", "file-key"), ("UI", "file-ui"), ("NEW", "n")],
    )
    assert merged.env == {"UI": "file-ui", "PLAIN": "file", "KEY": "secret!", "NEW": "n"}
    assert merged.kept_secrets == ("KEY",)


def test_without_a_file_server_variables_override_the_ui_env() -> None:
    merged = merge_env([("A", "ui")], [BuildVariable("A", "server", False)], None)
    assert merged.env == {"A": "server"} and merged.kept_secrets == ()


def test_only_values_of_four_characters_or_more_are_masked() -> None:
    assert maskable(["abc", "  ab  ", "abcd", "longer-value", "abcd"]) == ("longer-value", "abcd")


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [("9A", "v", False), ("A-B", "v", False), ("A", "x" * 4097, False), ("A", "v", 1)],
)
def test_bad_input_is_refused(name: object, value: object, secret: object) -> None:
    with pytest.raises(InvalidInput):
        check_input(name, value, secret)


def test_the_claim_answer_is_read_strictly() -> None:
    assert parse_build_variables([{"name": "A", "value": "v", "secret": True}]) == (
        BuildVariable("A", "v", True),
    )
    assert parse_build_variables([{"name": "A", "value": 3, "secret": True}]) is None
    assert parse_build_variables({"A": "v"}) is None


def test_a_steps_env_keeps_its_plain_values_but_not_a_secrets_name() -> None:
    steps = [
        Step("a", "true", env=(EnvVar("KEY", "step"), EnvVar("PLAIN", "p"))),
        Step("b", "true", env=(EnvVar("PLAIN", "q"),)),
    ]
    kept, dropped = keep_secrets_in_steps(steps, frozenset({"KEY"}))
    assert [step.env for step in kept] == [(EnvVar("PLAIN", "p"),), (EnvVar("PLAIN", "q"),)]
    assert dropped == [("a", "KEY")]
    assert kept[1] is steps[1]
