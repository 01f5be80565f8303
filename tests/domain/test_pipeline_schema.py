"""The published JSON Schema and the validator agree on a corpus of pipeline files."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from oore.domain.pipeline_config import (
    parse_concurrency,
    parse_execution_config,
    parse_repository_yaml,
    parse_runner_labels,
    parse_trigger_config,
)
from oore.domain.pipeline_schema import (
    concurrency_schema,
    execution_config_schema,
    pipeline_file_schema,
    runner_labels_schema,
    trigger_config_schema,
)

SHELL = """\
version: 1
steps:
  - name: test
    run: make test
"""

FLUTTER = """\
version: 1
platforms: [android, ios]
flutter_version: "3.22.1"
commands:
  pre_build: [flutter pub get]
  post_build: ["ls build"]
platform_build_args:
  android: [--release]
platform_commands:
  ios: flutter build ipa --no-codesign
env:
  - {key: API_URL, value: https://example.test}
artifacts:
  patterns: ["build/**/*.apk", "*.ipa"]
"""

FULL_STEPS = """\
version: 1
runner_labels: [linux, "docker:yes"]
timeout: 1800
env:
  - {key: CI_MODE, value: strict}
steps:
  - name: install
    run: |
      python -m venv .venv
      .venv/bin/pip install -e .[test]
    timeout: 600
  - name: lint
    run: .venv/bin/ruff check .
    continue_on_error: true
  - name: test
    run: .venv/bin/pytest
    env:
      - {key: PYTHONHASHSEED, value: "0"}
  - name: report
    run: echo failed
    if: failure()
  - name: clean
    run: rm -rf .venv
    if: always()
    continue_on_error:
    timeout:
artifacts:
  patterns: [dist/*.whl]
"""

GOOD = [
    SHELL,
    FLUTTER,
    FULL_STEPS,
    "version: 1\nplatforms: [android]\n",
    "version: 1\nplatforms: [macos]\nflutter_version:\ncommands:\nenv:\nartifacts:\n",
    "version: 1\nplatforms: [ios]\nartifacts:\n  patterns: []\n",
    "version: 1\nplatforms: [android]\nsteps: [{name: a, run: b}]\n",
    "version: 1\nplatforms:\nsteps: [{name: a, run: b}]\n",
    "version: 1\nsteps: [{name: a, run: b}]\ncommands:\nplatform_commands:\n",
    "version: 1\nsteps: [{name: a, run: b, if: success()}]\n",
    "version: 1\nplatforms: [android]\ncommands:\n  build: [make]\n  pre_build:\n",
    "version: 1\nplatforms: [android]\nplatform_build_args:\n  ios: []\n  android:\n",
    "version: 1\nplatforms: [android]\nenv:\n  - {key: _X1, value: ''}\n",
    "version: 1\nplatforms: [android]\nartifacts:\n  patterns: ['  out/*.zip  ', 'a?b', '**/x*']\n",
    "version: 1\nplatforms: [android]\nartifacts:\n  patterns: ['a/ ./b*', 'x/...*']\n",
    SHELL + "timeout: 1\n",
    SHELL + f"timeout: {86400}\n",
    SHELL + "runner_labels: []\n",
    "version: 1\nsteps:\n  - name: s\n    run: x\n    timeout: 86400\n",
    "version: 1\nplatforms: [android]\nflutter_version: '" + "9" * 64 + "'\n",
    "version: 1\nplatforms: [android]\nenv:\n  - {key: K, value: '" + "v" * 4096 + "'}\n",
    "version: 1\nsteps:\n  - name: '" + "n" * 128 + "'\n    run: x\n",
]

BAD = [
    "",
    "# only a comment\n",
    "- version: 1\n",
    "version: 1\n",
    "version: 2\nplatforms: [android]\n",
    "version: '1'\nplatforms: [android]\n",
    "version: true\nplatforms: [android]\n",
    "platforms: [android]\n",
    "version:\nplatforms: [android]\n",
    "version: 1\nplatforms: []\n",
    "version: 1\nplatforms: [web]\n",
    "version: 1\nplatforms: [android, android]\n",
    "version: 1\nplatforms: android\n",
    "version: 1\nplatforms:\n",
    "version: 1\nplatforms: [android]\ndeploy: true\n",
    "version: 1\nplatforms: [android]\nflutter_version: ' '\n",
    "version: 1\nplatforms: [android]\nflutter_version: 3.10\n",
    "version: 1\nplatforms: [android]\nflutter_version: '" + "9" * 65 + "'\n",
    "version: 1\nplatforms: [android]\ncommands:\n  build: ['']\n",
    "version: 1\nplatforms: [android]\ncommands:\n  deploy: [x]\n",
    "version: 1\nplatforms: [android]\ncommands:\n  build: make\n",
    "version: 1\nplatforms: [android]\ncommands:\n  build: [1]\n",
    "version: 1\nplatforms: [android]\ncommands:\n  build: ['" + "x" * 2049 + "']\n",
    "version: 1\nplatforms: [android]\ncommands:\n  build: [" + "x, " * 129 + "]\n",
    "version: 1\nplatforms: [android]\nplatform_build_args:\n  web: []\n",
    "version: 1\nplatforms: [android]\nplatform_commands:\n  ios: ['x']\n",
    "version: 1\nplatforms: [android]\nplatform_commands:\n  ios: '  '\n",
    "version: 1\nplatforms: [android]\nenv:\n  - {key: bad-key, value: x}\n",
    "version: 1\nplatforms: [android]\nenv:\n  - {key: '1X', value: x}\n",
    "version: 1\nplatforms: [android]\nenv:\n  - {key: 'X\n', value: x}\n",
    "version: 1\nplatforms: [android]\nenv:\n  - {key: X, value: 1}\n",
    "version: 1\nplatforms: [android]\nenv:\n  - {key: X}\n",
    "version: 1\nplatforms: [android]\nenv:\n  - {key: X, value:}\n",
    "version: 1\nplatforms: [android]\nenv:\n  - {key: X, value: x, other: y}\n",
    "version: 1\nplatforms: [android]\nenv:\n  - {key: K, value: '" + "v" * 4097 + "'}\n",
    "version: 1\nplatforms: [android]\nenv:\n  - {key: '" + "K" * 129 + "', value: v}\n",
    "version: 1\nplatforms: [android]\nenv: {A: b}\n",
    "version: 1\nplatforms: [android]\nartifacts: {}\n",
    "version: 1\nplatforms: [android]\nartifacts:\n  patterns:\n",
    "version: 1\nplatforms: [android]\nartifacts:\n  patterns: [out/app.apk]\n",
    "version: 1\nplatforms: [android]\nartifacts:\n  patterns: ['   ']\n",
    "version: 1\nplatforms: [android]\nartifacts:\n  patterns: [/abs/*.apk]\n",
    "version: 1\nplatforms: [android]\nartifacts:\n  patterns: [' /abs/*.apk']\n",
    "version: 1\nplatforms: [android]\nartifacts:\n  patterns: ['a\\b*']\n",
    "version: 1\nplatforms: [android]\nartifacts:\n  patterns: [../*.apk]\n",
    "version: 1\nplatforms: [android]\nartifacts:\n  patterns: [' ./*.apk']\n",
    "version: 1\nplatforms: [android]\nartifacts:\n  patterns: [a/./*.apk]\n",
    "version: 1\nplatforms: [android]\nartifacts:\n  patterns: ['*/.. ']\n",
    "version: 1\nplatforms: [android]\nartifacts:\n  patterns: [a//*.apk]\n",
    "version: 1\nplatforms: [android]\nartifacts:\n  patterns: ['out*/']\n",
    "version: 1\nplatforms: [android]\nartifacts:\n  patterns: ['" + "a" * 512 + "*']\n",
    "version: 1\nplatforms: [android]\nartifacts:\n  patterns: [1]\n",
    "version: 1\nsteps: []\n",
    "version: 1\nsteps:\n",
    "version: 1\nsteps: [{name: a}]\n",
    "version: 1\nsteps: [{run: a}]\n",
    "version: 1\nsteps: [{name: '', run: a}]\n",
    "version: 1\nsteps: [{name: a, run: ' '}]\n",
    "version: 1\nsteps: [{name: a, run: b, shell: bash}]\n",
    "version: 1\nsteps: [{name: a, run: b, if: failure}]\n",
    "version: 1\nsteps: [{name: a, run: b, if: ' failure()'}]\n",
    "version: 1\nsteps: [{name: a, run: b, continue_on_error: 'yes'}]\n",
    "version: 1\nsteps: [{name: a, run: b, timeout: 0}]\n",
    "version: 1\nsteps: [{name: a, run: b, timeout: 86401}]\n",
    "version: 1\nsteps: [{name: a, run: b, timeout: '10m'}]\n",
    "version: 1\nsteps: [{name: a, run: b, timeout: true}]\n",
    "version: 1\nsteps: [{name: a, run: b, env: [{key: 1, value: x}]}]\n",
    "version: 1\nsteps: [a]\n",
    "version: 1\nsteps: {name: a, run: b}\n",
    "version: 1\nsteps: [{name: a, run: b}]\ncommands:\n  build: [make]\n",
    "version: 1\nsteps: [{name: a, run: b}]\nplatform_commands: {android: x}\n",
    "version: 1\nsteps: [{name: a, run: b}]\nplatform_build_args: {}\n",
    SHELL + "timeout: 0\n",
    SHELL + "timeout: -5\n",
    SHELL + "timeout: 1h\n",
    SHELL + "runner_labels: linux\n",
    SHELL + "runner_labels: ['has space']\n",
    SHELL + "runner_labels: ['']\n",
    SHELL + "runner_labels: ['" + "l" * 65 + "']\n",
    SHELL + "runner_labels: ['l\n']\n",
    SHELL + "runner_labels: [" + ", ".join(f"l{i}" for i in range(33)) + "]\n",
    "version: 1\nsteps:\n  - name: '" + "n" * 129 + "'\n    run: x\n",
    "version: 1\nsteps: [" + "{name: a, run: b}, " * 129 + "]\n",
]

# What JSON Schema cannot say: the validator alone refuses these (see pipeline_schema).
VALIDATOR_ONLY = [
    "version: 1.0\nplatforms: [android]\n",
    SHELL + "timeout: 60.0\n",
    "version: 1\nplatforms: [android]\nenv:\n  - {key: A, value: x}\n  - {key: A, value: y}\n",
    "version: 1\nsteps: [{name: a, run: b}, {name: a, run: c}]\n",
    "version: 1\nplatforms: [android]\nplatforms: [ios]\n",
]


def schema_accepts(text: str) -> bool:
    validator = jsonschema.Draft202012Validator(pipeline_file_schema())
    return bool(validator.is_valid(yaml.safe_load(text)))


def validator_accepts(text: str) -> bool:
    config, problems = parse_repository_yaml(text)
    return config is not None and not problems


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(pipeline_file_schema())


@pytest.mark.parametrize("text", GOOD)
def test_both_accept(text: str) -> None:
    assert validator_accepts(text), parse_repository_yaml(text)[1]
    assert schema_accepts(text)


@pytest.mark.parametrize("text", BAD)
def test_both_refuse(text: str) -> None:
    assert not validator_accepts(text)
    assert not schema_accepts(text)


@pytest.mark.parametrize("text", VALIDATOR_ONLY)
def test_what_only_the_validator_refuses(text: str) -> None:
    assert not validator_accepts(text)
    assert schema_accepts(text)


def test_the_schema_lists_every_key_the_validator_knows() -> None:
    schema: dict[str, Any] = pipeline_file_schema()
    top = set(schema["properties"])
    assert top == {
        "version",
        "platforms",
        "flutter_version",
        "commands",
        "platform_build_args",
        "platform_commands",
        "env",
        "artifacts",
        "steps",
        "runner_labels",
        "timeout",
    }
    for key in top - {"version"}:
        # An unknown neighbour makes the file invalid; the key itself is known.
        assert not validator_accepts(f"version: 1\nsteps: [{{name: a, run: b}}]\n{key}x: 1\n")


# What the validator alone says about a file JSON Schema cannot judge (see VALIDATOR_ONLY).
SCHEMA_BLIND = ("duplicate key", "duplicate step name", "got 1.0")


def existing_corpus() -> list[str]:
    """Every multi-line text of the validator's own tests that is YAML (the classic corpus)."""
    source = Path(__file__).with_name("test_pipeline_config.py").read_text()
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "\n" in node.value:
            try:
                yaml.safe_load(node.value)
            except yaml.YAMLError:
                continue
            found.append(node.value)
    return sorted(set(found))


def test_schema_and_validator_agree_on_the_classic_corpus() -> None:
    corpus = existing_corpus()
    assert len(corpus) > 30
    for text in corpus:
        config, problems = parse_repository_yaml(text)
        if (config is not None) == schema_accepts(text):
            continue
        assert config is None and problems, text
        assert all(any(blind in p for blind in SCHEMA_BLIND) for p in problems), (text, problems)


# -- the API's config parts, as the OpenAPI document describes them -------------------------

API_PARTS = [
    (
        execution_config_schema,
        parse_execution_config,
        [
            {},
            {"platforms": ["ios"], "commands": {"build": ["make"]}, "flutter_version": "3.22"},
            {"env": [{"key": "A_1", "value": "x"}], "artifact_patterns": ["*.apk"]},
            {"platform_commands": {"android": "make apk"}, "platform_build_args": {"ios": []}},
        ],
        [
            {"platforms": ["linux"]},
            {"env": [{"key": "1A", "value": "x"}]},
            {"env": [{"key": "A", "value": "x", "secret": True}]},
            {"artifact_patterns": ["/abs/*.apk"]},
            {"unknown": 1},
        ],
    ),
    (
        trigger_config_schema,
        parse_trigger_config,
        [{}, {"events": ["push", "tag_push"], "branches": ["main", "release/*"]}],
        [{"events": ["deploy"]}, {"branches": [" "]}, {"other": []}],
    ),
    (
        concurrency_schema,
        parse_concurrency,
        [{}, {"cancel_previous": True, "max_concurrent": 3}, {"max_concurrent": None}],
        [{"max_concurrent": 0}, {"max_concurrent": 101}, {"cancel_previous": "yes"}],
    ),
    (
        runner_labels_schema,
        parse_runner_labels,
        [[], ["macos", "arm64", "team/ios"]],
        [["has space"], [""]],
    ),
]


@pytest.mark.parametrize(("schema", "parse", "accepted", "refused"), API_PARTS)
def test_the_api_config_schemas_agree_with_the_rules(
    schema: Any, parse: Any, accepted: list[Any], refused: list[Any]
) -> None:
    validator = jsonschema.Draft202012Validator(schema())
    for value in accepted:
        assert validator.is_valid(value), value
        assert parse(value)[1] == [], value
    for value in refused:
        assert not validator.is_valid(value), value
        assert parse(value)[1], value
