"""The runner masks secrets before a log line leaves the machine."""

from __future__ import annotations

from oore.domain.logs import MASK
from oore.domain.pipeline_config import EnvVar
from oore.domain.variables import BuildVariable
from oore.runner.client import LogChunk
from oore.runner.variables import LogMask, file_secrets, pipeline_env, server_secrets


def test_server_and_file_secrets_are_masked_also_across_lines() -> None:
    mask = LogMask(server_secrets([BuildVariable("K", "server-secret", True)]))
    mask.add(file_secrets([EnvVar("F", "file-secret", True), EnvVar("P", "plain-value")]))
    chunks = [
        LogChunk(0, "a server-secret b", "stdout"),
        LogChunk(1, "file-se", "stderr"),
        LogChunk(2, "cret plain-value", "stderr"),
    ]
    assert [(c.sequence, c.content, c.stream) for c in mask(chunks)] == [
        (0, f"a {MASK} b", "stdout"),
        (1, MASK, "stderr"),
        (2, f"{MASK} plain-value", "stderr"),
    ]


def test_the_ui_env_applies_even_when_the_build_runs_a_file() -> None:
    snapshot = {"ui_execution_config": {"env": [{"key": "UI", "value": "ui"}]}}
    variables, merged = pipeline_env(
        snapshot, [BuildVariable("S", "s-value", True)], [EnvVar("S", "f"), EnvVar("F", "f")]
    )
    assert {var.key: var.value for var in variables} == {"UI": "ui", "S": "s-value", "F": "f"}
    assert merged.kept_secrets == ("S",)


def test_the_lines_that_may_begin_a_secret_are_held_back() -> None:
    mask = LogMask(["hunter2-secret"])

    def line(sequence: int, text: str) -> LogChunk:
        return LogChunk(sequence, text, "stdout")

    assert mask.held_back([line(0, "nothing here"), line(1, "at all")]) == 0
    assert mask.held_back([line(0, "plain"), line(1, "the key is hun")]) == 1
    assert mask.held_back([line(0, "key: hu"), line(1, "nt"), line(2, "er")]) == 3
    # A whole secret at the end is masked in this batch: nothing waits for it.
    assert mask.held_back([line(0, "hunter2-secret")]) == 0
    assert LogMask([]).held_back([line(0, "h")]) == 0
