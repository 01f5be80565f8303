from __future__ import annotations

from typing import Any

import pytest

from oore.domain.pipeline_config import (
    MAX_PROBLEMS,
    MAX_REPOSITORY_YAML_BYTES,
    PLATFORMS,
    Concurrency,
    EnvVar,
    ExecutionConfig,
    Step,
    TriggerConfig,
    artifact_pattern_matches,
    default_execution_config,
    parse_concurrency,
    parse_execution_config,
    parse_repository_yaml,
    parse_runner_labels,
    parse_trigger_config,
    plan_steps,
    validate_artifact_pattern,
    validate_config_path,
)

DEFAULT_JSON: dict[str, Any] = {
    "platforms": ["android"],
    "flutter_version": None,
    "commands": {"pre_build": [], "build": [], "post_build": []},
    "platform_build_args": {"android": [], "ios": [], "macos": []},
    "platform_commands": {"android": None, "ios": None, "macos": None},
    "env": [],
    "artifact_patterns": ["build/app/outputs/flutter-apk/*.apk"],
}

FULL_JSON: dict[str, Any] = {
    "platforms": ["android", "ios"],
    "flutter_version": "3.22.1",
    "commands": {
        "pre_build": ["flutter pub get"],
        "build": [],
        "post_build": ["echo done", "ls build"],
    },
    "platform_build_args": {"android": ["--release", "--flavor=prod"], "ios": [], "macos": []},
    "platform_commands": {"android": None, "ios": "flutter build ipa --no-codesign", "macos": None},
    "env": [{"key": "API_URL", "value": "https://example.test"}, {"key": "EMPTY", "value": ""}],
    "artifact_patterns": ["build/**/*.apk", "*.ipa"],
}


def problems_of(data: object) -> list[str]:
    config, problems = parse_execution_config(data)
    assert config is None
    assert problems
    return problems


def yaml_problems(text: str) -> list[str]:
    config, problems = parse_repository_yaml(text)
    assert config is None
    assert problems
    return problems


def parsed(data: object) -> ExecutionConfig:
    config, problems = parse_execution_config(data)
    assert problems == []
    assert config is not None
    return config


def parsed_yaml(text: str) -> ExecutionConfig:
    config, problems = parse_repository_yaml(text)
    assert problems == []
    assert config is not None
    return config


# -- execution_config: defaults and wire shape ------------------------------------------------


def test_default_config_has_the_contract_wire_shape() -> None:
    assert default_execution_config().to_json() == DEFAULT_JSON


def test_a_full_config_round_trips_through_its_wire_shape() -> None:
    config = parsed(FULL_JSON)
    assert config.to_json() == FULL_JSON
    assert parsed(config.to_json()) == config


def test_parsed_config_exposes_every_platform_in_its_mappings() -> None:
    config = parsed({"platform_build_args": {"ios": ["--debug"]}})
    assert config.platform_build_args == {"android": (), "ios": ("--debug",), "macos": ()}
    assert config.platform_commands == {"android": None, "ios": None, "macos": None}


def test_redacted_hides_every_env_value_but_keeps_the_keys() -> None:
    config = parsed(FULL_JSON)
    hidden = config.redacted()
    assert hidden.env == (EnvVar("API_URL", "[REDACTED]"), EnvVar("EMPTY", "[REDACTED]"))
    assert hidden.to_json()["env"] == [
        {"key": "API_URL", "value": "[REDACTED]"},
        {"key": "EMPTY", "value": "[REDACTED]"},
    ]
    assert config.env[0].value == "https://example.test"
    assert hidden.to_json() | {"env": []} == config.to_json() | {"env": []}


@pytest.mark.parametrize(
    ("data", "changed"),
    [
        ({}, {}),
        ({"platforms": ["ios"]}, {"platforms": ["ios"]}),
        ({"flutter_version": None}, {}),
        ({"flutter_version": "stable"}, {"flutter_version": "stable"}),
        (
            {"commands": {"build": ["make"]}},
            {"commands": {"pre_build": [], "build": ["make"], "post_build": []}},
        ),
        (
            {"platform_commands": {"macos": "make mac", "ios": None}},
            {"platform_commands": {"android": None, "ios": None, "macos": "make mac"}},
        ),
        ({"artifact_patterns": []}, {"artifact_patterns": []}),
        ({"env": [{"key": "_X1", "value": ""}]}, {"env": [{"key": "_X1", "value": ""}]}),
    ],
)
def test_partial_objects_take_defaults_for_missing_keys(
    data: dict[str, Any], changed: dict[str, Any]
) -> None:
    assert parsed(data).to_json() == {**DEFAULT_JSON, **changed}


def test_values_right_at_the_limits_are_accepted() -> None:
    config = parsed(
        {
            "platforms": list(PLATFORMS),
            "flutter_version": "v" * 64,
            "commands": {"pre_build": ["x" * 2048] * 128, "build": ["b"] * 128},
            "platform_build_args": {p: ["a" * 2048] * 64 for p in PLATFORMS},
            "platform_commands": {p: "c" * 2048 for p in PLATFORMS},
            "env": [{"key": f"K{i}", "value": "v" * 4096} for i in range(127)]
            + [{"key": "K" * 128, "value": ""}],
            "artifact_patterns": [f"out/{i}/*" for i in range(63)] + ["*" + "a" * 511],
        }
    )
    assert len(config.env) == 128
    assert len(config.pre_build) == 128


def test_artifact_patterns_are_stored_trimmed() -> None:
    assert parsed({"artifact_patterns": ["  out/*.zip "]}).artifact_patterns == ("out/*.zip",)


# -- execution_config: every rule rejects with a path --------------------------------------


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (["android"], "execution_config: must be an object, got a list"),
        (None, "execution_config: must be an object, got null"),
        ({"bogus": 1}, "execution_config.bogus: unknown field"),
        # platforms
        ({"platforms": []}, "execution_config.platforms: must list at least one of"),
        ({"platforms": "android"}, "execution_config.platforms: must be a list of platforms"),
        ({"platforms": ["linux"]}, "execution_config.platforms[0]: must be one of android, ios"),
        ({"platforms": ["ios", 7]}, "execution_config.platforms[1]: must be one of"),
        ({"platforms": ["ios", "ios"]}, "execution_config.platforms[1]: duplicate platform 'ios'"),
        # flutter_version
        ({"flutter_version": ""}, "execution_config.flutter_version: must not be blank"),
        ({"flutter_version": "  "}, "execution_config.flutter_version: must not be blank"),
        ({"flutter_version": "v" * 65}, "execution_config.flutter_version: must be at most 64"),
        ({"flutter_version": 3.1}, "execution_config.flutter_version: must be a string"),
        # commands
        ({"commands": []}, "execution_config.commands: must be an object"),
        ({"commands": {"deploy": []}}, "execution_config.commands.deploy: unknown field"),
        ({"commands": {"build": "make"}}, "execution_config.commands.build: must be a list"),
        ({"commands": {"build": ["a", " "]}}, "execution_config.commands.build[1]: must not be"),
        ({"commands": {"pre_build": [1]}}, "execution_config.commands.pre_build[0]: must be a str"),
        (
            {"commands": {"post_build": ["x" * 2049]}},
            "execution_config.commands.post_build[0]: must be at most 2048 characters (got 2049)",
        ),
        (
            {"commands": {"build": ["x"] * 129}},
            "execution_config.commands.build: must have at most 128 commands (got 129)",
        ),
        # platform_build_args
        (
            {"platform_build_args": {"linux": []}},
            "execution_config.platform_build_args.linux: unknown field",
        ),
        (
            {"platform_build_args": {"ios": ["-v"] * 65}},
            "execution_config.platform_build_args.ios: must have at most 64 arguments (got 65)",
        ),
        (
            {"platform_build_args": {"android": [""]}},
            "execution_config.platform_build_args.android[0]: must not be blank",
        ),
        (
            {"platform_build_args": {"macos": ["a" * 2049]}},
            "execution_config.platform_build_args.macos[0]: must be at most 2048",
        ),
        # platform_commands
        (
            {"platform_commands": {"ios": " "}},
            "execution_config.platform_commands.ios: must not be blank",
        ),
        (
            {"platform_commands": {"ios": ["a"]}},
            "execution_config.platform_commands.ios: must be a string, got a list",
        ),
        (
            {"platform_commands": {"android": "c" * 2049}},
            "execution_config.platform_commands.android: must be at most 2048",
        ),
        (
            {"platform_commands": {"windows": "x"}},
            "execution_config.platform_commands.windows: unknown field",
        ),
        # env
        ({"env": {"A": "b"}}, "execution_config.env: must be a list of entries, got an object"),
        ({"env": ["A=b"]}, "execution_config.env[0]: must be an object, got a string"),
        ({"env": [{"value": "b"}]}, "execution_config.env[0].key: required"),
        ({"env": [{"key": "A"}]}, "execution_config.env[0].value: required"),
        ({"env": [{"key": "", "value": "b"}]}, "execution_config.env[0].key: must not be empty"),
        ({"env": [{"key": "9LIVES", "value": "b"}]}, "execution_config.env[0].key: must be let"),
        ({"env": [{"key": "A-B", "value": "b"}]}, "execution_config.env[0].key: must be letters"),
        ({"env": [{"key": "A\n", "value": "b"}]}, "execution_config.env[0].key: must be letters"),
        (
            {"env": [{"key": "K" * 129, "value": "b"}]},
            "execution_config.env[0].key: must be at most 128 characters",
        ),
        (
            {"env": [{"key": "A", "value": "1"}, {"key": "A", "value": "2"}]},
            "execution_config.env[1].key: duplicate key 'A' (also at execution_config.env[0])",
        ),
        (
            {"env": [{"key": "A", "value": "v" * 4097}]},
            "execution_config.env[0].value: must be at most 4096 characters",
        ),
        ({"env": [{"key": "A", "value": 1}]}, "execution_config.env[0].value: must be a string"),
        (
            {"env": [{"key": "A", "value": "b", "secret": True}]},
            "execution_config.env[0].secret: unknown field",
        ),
        (
            {"env": [{"key": f"K{i}", "value": ""} for i in range(129)]},
            "execution_config.env: must have at most 128 entries (got 129)",
        ),
        # artifact_patterns
        (
            {"artifact_patterns": ["*"] * 65},
            "execution_config.artifact_patterns: must have at most 64 patterns (got 65)",
        ),
        (
            {"artifact_patterns": ["app.apk"]},
            "execution_config.artifact_patterns[0]: must contain a wildcard",
        ),
        (
            {"artifact_patterns": ["ok/*", "/abs/*.apk"]},
            "execution_config.artifact_patterns[1]: must be a relative path",
        ),
        ({"artifact_patterns": [3]}, "execution_config.artifact_patterns[0]: must be a string"),
    ],
)
def test_each_rule_rejects_with_a_path_prefixed_problem(data: object, problem: str) -> None:
    problems = problems_of(data)
    assert any(p.startswith(problem) for p in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of(
        {
            "platforms": ["linux", "ios", "ios"],
            "commands": {"build": ["ok", ""], "deploy": []},
            "env": [{"key": "1X", "value": "a"}, {"key": "Y"}],
            "artifact_patterns": ["a.apk"],
            "colour": "blue",
        }
    )
    assert problems == [
        "execution_config.colour: unknown field (expected one of: platforms, flutter_version,"
        " commands, platform_build_args, platform_commands, env, artifact_patterns)",
        "execution_config.platforms[0]: must be one of android, ios, macos, got 'linux'",
        "execution_config.platforms[2]: duplicate platform 'ios'",
        "execution_config.commands.deploy: unknown field"
        " (expected one of: pre_build, build, post_build)",
        "execution_config.commands.build[1]: must not be blank",
        "execution_config.env[0].key: must be letters, digits and underscores,"
        " not starting with a digit, got '1X'",
        "execution_config.env[1].value: required",
        "execution_config.artifact_patterns[0]: must contain a wildcard (* or ?)",
    ]


# -- the repository file ------------------------------------------------------------------------

FULL_YAML = """\
version: 1
platforms: [android, ios]
flutter_version: "3.22.1"
commands:
  pre_build:
    - flutter pub get
  post_build:
    - echo done
platform_build_args:
  android: ["--release", "--dart-define=MODE=prod build"]
platform_commands:
  ios: flutter build ipa --no-codesign
env:
  - key: PORT
    value: "8080"
  - key: GREETING
    value: hello world
artifacts:
  patterns:
    - build/**/*.apk
"""


def test_a_full_repository_file_is_read() -> None:
    config = parsed_yaml(FULL_YAML)
    assert config.to_json() == {
        "platforms": ["android", "ios"],
        "flutter_version": "3.22.1",
        "commands": {"pre_build": ["flutter pub get"], "build": [], "post_build": ["echo done"]},
        "platform_build_args": {
            "android": ["--release", "--dart-define=MODE=prod build"],
            "ios": [],
            "macos": [],
        },
        "platform_commands": {
            "android": None,
            "ios": "flutter build ipa --no-codesign",
            "macos": None,
        },
        "env": [{"key": "PORT", "value": "8080"}, {"key": "GREETING", "value": "hello world"}],
        "artifact_patterns": ["build/**/*.apk"],
    }


@pytest.mark.parametrize(
    ("platforms", "patterns"),
    [
        (
            "[android]",
            ["build/app/outputs/flutter-apk/*.apk", "build/app/outputs/bundle/**/*.aab"],
        ),
        ("[ios]", ["build/ios/ipa/*.ipa"]),
        ("[macos]", ["build/macos/Build/Products/Release/*.app"]),
        (
            "[macos, android, ios]",
            [
                "build/macos/Build/Products/Release/*.app",
                "build/app/outputs/flutter-apk/*.apk",
                "build/app/outputs/bundle/**/*.aab",
                "build/ios/ipa/*.ipa",
            ],
        ),
    ],
)
def test_without_artifacts_patterns_follow_the_platforms(
    platforms: str, patterns: list[str]
) -> None:
    config = parsed_yaml(f"version: 1\nplatforms: {platforms}\n")
    assert list(config.artifact_patterns) == patterns


def test_a_minimal_file_has_empty_stages_and_no_overrides() -> None:
    config = parsed_yaml("version: 1\nplatforms:\n  - android\n")
    assert config.to_json() == {
        **DEFAULT_JSON,
        "artifact_patterns": [
            "build/app/outputs/flutter-apk/*.apk",
            "build/app/outputs/bundle/**/*.aab",
        ],
    }


def test_an_empty_artifacts_list_collects_nothing() -> None:
    config = parsed_yaml("version: 1\nplatforms: [ios]\nartifacts:\n  patterns: []\n")
    assert config.artifact_patterns == ()


def test_an_empty_optional_key_counts_as_absent() -> None:
    config = parsed_yaml("version: 1\nplatforms: [ios]\nflutter_version:\ncommands:\n")
    assert config.flutter_version is None
    assert config.build == ()


def test_a_yaml_syntax_error_is_one_problem_naming_line_and_column() -> None:
    problems = yaml_problems("version: 1\nplatforms: [android\ncommands: {}\n")
    assert len(problems) == 1
    assert problems[0].startswith("YAML syntax error at line 3, column 9:")


def test_bad_indentation_names_its_line() -> None:
    (problem,) = yaml_problems("version: 1\nplatforms:\n  - ios\n - android\n")
    assert problem.startswith("YAML syntax error at line 4, column 2:")


def test_more_than_one_document_is_refused() -> None:
    (problem,) = yaml_problems("version: 1\nplatforms: [ios]\n---\nversion: 1\n")
    assert "single document" in problem


def test_python_tags_are_refused_not_run() -> None:
    (problem,) = yaml_problems("version: !!python/object/apply:os.system ['true']\n")
    assert problem.startswith("YAML syntax error at line 1")


def test_hostile_nesting_is_one_problem() -> None:
    assert yaml_problems("[" * 5000) == ["YAML syntax error: the document is nested too deeply"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "the file is empty"),
        ("# only a comment\n", "the file is empty"),
        ("- android\n", "the file must be a mapping of keys such as version and platforms"),
        ("platforms: [ios]\n", "version: required"),
        ("version: 2\nplatforms: [ios]\n", "version: must be 1, got 2"),
        ("version: '1'\nplatforms: [ios]\n", "version: must be 1, got '1'"),
        ("version: 1.0\nplatforms: [ios]\n", "version: must be 1, got 1.0"),
        ("version: true\nplatforms: [ios]\n", "version: must be 1, got True"),
        ("version: 1\n", "platforms: required"),
        ("version: 1\nplatforms: []\n", "platforms: must list at least one of"),
        ("version: 1\nplatforms: ios\n", "platforms: must be a list of platforms, got a string"),
        ("version: 1\nplatforms: [web]\n", "platforms[0]: must be one of android, ios, macos"),
        ("version: 1\nplatforms: [ios, ios]\n", "platforms[1]: duplicate platform 'ios'"),
        ("version: 1\nplatforms: [ios]\nname: app\n", "name: unknown field"),
        ("version: 1\nplatforms: [ios]\n1: x\n", "1: unknown field"),
        (
            "version: 1\nplatforms: [ios]\ncommands:\n  deploy: [x]\n",
            "commands.deploy: unknown field",
        ),
        (
            "version: 1\nplatforms: [ios]\ncommands:\n  build: flutter build ipa\n",
            "commands.build: must be a list of commands, got a string",
        ),
        (
            "version: 1\nplatforms: [ios]\ncommands:\n  build: ['  ']\n",
            "commands.build[0]: must not be blank",
        ),
        (
            "version: 1\nplatforms: [ios]\ncommands:\n  build: ['a', '']\n",
            "commands.build[1]: must not be blank",
        ),
        (
            "version: 1\nplatforms: [ios]\ncommands:\n  build:\n" + "    - echo\n" * 129,
            "commands.build: must have at most 128 commands (got 129)",
        ),
        (
            "version: 1\nplatforms: [ios]\nplatform_build_args:\n  ios: ['']\n",
            "platform_build_args.ios[0]: must not be blank",
        ),
        (
            "version: 1\nplatforms: [ios]\nplatform_build_args:\n  web: []\n",
            "platform_build_args.web: unknown field",
        ),
        (
            "version: 1\nplatforms: [ios]\nplatform_commands:\n  ios: [a, b]\n",
            "platform_commands.ios: must be a string, got a list",
        ),
        (
            "version: 1\nplatforms: [ios]\nplatform_commands:\n  ios: ' '\n",
            "platform_commands.ios: must not be blank",
        ),
        (
            "version: 1\nplatforms: [ios]\nenv:\n  PORT: '80'\n",
            "env: must be a list of entries, got a mapping",
        ),
        (
            "version: 1\nplatforms: [ios]\nenv:\n  - key: 2FA\n    value: x\n",
            "env[0].key: must be letters, digits and underscores",
        ),
        (
            "version: 1\nplatforms: [ios]\nenv:\n  - {key: A, value: x}\n  - {key: A, value: y}\n",
            "env[1].key: duplicate key 'A' (also at env[0])",
        ),
        (
            # The file may mark an env entry secret (masked in the log), with a boolean only.
            "version: 1\nplatforms: [ios]\nenv:\n  - {key: A, value: x, secret: 1}\n",
            "env[0].secret: must be true or false, got a number",
        ),
        (
            "version: 1\nplatforms: [ios]\nenv:\n  - {key: A}\n",
            "env[0].value: required",
        ),
        (
            "version: 1\nplatforms: [ios]\nartifacts:\n  paths: ['*.ipa']\n",
            "artifacts.paths: unknown field",
        ),
        (
            "version: 1\nplatforms: [ios]\nartifacts: {}\n",
            "artifacts.patterns: required",
        ),
        (
            "version: 1\nplatforms: [ios]\nartifacts:\n  patterns: [app.ipa]\n",
            "artifacts.patterns[0]: must contain a wildcard (* or ?)",
        ),
        (
            "version: 1\nplatforms: [ios]\nartifacts:\n  patterns: ['../*.ipa']\n",
            "artifacts.patterns[0]: must not contain empty, '.' or '..' segments",
        ),
        (
            "version: 1\nplatforms: [ios]\nflutter_version: '" + "9" * 65 + "'\n",
            "flutter_version: must be at most 64 characters",
        ),
        (
            "version: 1\nplatforms: [ios]\ncommands:\n  build: [a]\n  build: [b]\n",
            "commands.build: duplicate key (again at line 5)",
        ),
    ],
)
def test_each_file_rule_rejects_with_a_path_prefixed_problem(text: str, problem: str) -> None:
    problems = yaml_problems(text)
    assert any(p.startswith(problem) for p in problems), problems


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("flutter_version: 3.10", "flutter_version: must be a string, got a number (3.1)"),
        ("env: [{key: PORT, value: 8080}]", "env[0].value: must be a string, got a number (8080)"),
        ("env: [{key: DEBUG, value: yes}]", "env[0].value: must be a string, got a boolean (true)"),
        ("env: [{key: D, value: 2024-01-31}]", "env[0].value: must be a string, got a date"),
        ("commands: {build: [true]}", "commands.build[0]: must be a string, got a boolean"),
    ],
)
def test_unquoted_numbers_and_booleans_are_refused_with_a_quoting_hint(
    line: str, problem: str
) -> None:
    (found,) = yaml_problems(f"version: 1\nplatforms: [android]\n{line}\n")
    assert found.startswith(problem)
    assert found.endswith("put the value in quotes")


def test_quoted_scalars_are_kept_as_written() -> None:
    config = parsed_yaml(
        "version: 1\nplatforms: [ios]\nflutter_version: '3.10'\n"
        "env:\n  - {key: PORT, value: '8080'}\n  - {key: DEBUG, value: 'yes'}\n"
    )
    assert config.flutter_version == "3.10"
    assert config.env == (EnvVar("PORT", "8080"), EnvVar("DEBUG", "yes"))


def test_every_file_problem_is_reported_at_once() -> None:
    problems = yaml_problems(
        "platforms: [android, web]\n"
        "commands:\n"
        "  build:\n"
        "    - flutter build apk\n"
        "    - ''\n"
        "env:\n"
        "  - {key: bad-key, value: 1}\n"
        "deploy: true\n"
    )
    assert problems == [
        "deploy: unknown field (expected one of: version, platforms, flutter_version, commands,"
        " platform_build_args, platform_commands, env, artifacts)",
        "version: required (write `version: 1`)",
        "platforms[1]: must be one of android, ios, macos, got 'web'",
        "commands.build[1]: must not be blank",
        "env[0].key: must be letters, digits and underscores, not starting with a digit,"
        " got 'bad-key'",
        "env[0].value: must be a string, got a number (1); put the value in quotes",
    ]


# -- artifact patterns -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        "*.apk",
        "build/app/outputs/flutter-apk/*.apk",
        "build/**/*.aab",
        "out/app-?.zip",
        "  trimmed/*.ipa  ",
        "a" * 511 + "*",
    ],
)
def test_valid_artifact_patterns(pattern: str) -> None:
    assert validate_artifact_pattern(pattern) is None


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("", "must not be blank"),
        ("   ", "must not be blank"),
        ("a" * 512 + "*", "must be at most 512 characters (got 513)"),
        ("build/app.apk", "must contain a wildcard (* or ?)"),
        ("/build/*.apk", "must be a relative path"),
        ("build\\*.apk", "must use / as the separator, not \\"),
        ("build//*.apk", "must not contain empty, '.' or '..' segments"),
        ("build/*.apk/", "must not contain empty, '.' or '..' segments"),
        ("./*.apk", "must not contain empty, '.' or '..' segments"),
        ("build/../*.apk", "must not contain empty, '.' or '..' segments"),
    ],
)
def test_invalid_artifact_patterns(pattern: str, problem: str) -> None:
    assert validate_artifact_pattern(pattern) == problem


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("build/app/outputs/flutter-apk/*.apk", "build/app/outputs/flutter-apk/app.apk", True),
        ("build/app/outputs/flutter-apk/*.apk", "build/app/outputs/flutter-apk/x/app.apk", False),
        ("build/app/outputs/flutter-apk/*.apk", "build/app/outputs/flutter-apk/app.aab", False),
        ("build/app/outputs/bundle/**/*.aab", "build/app/outputs/bundle/release/app.aab", True),
        ("build/app/outputs/bundle/**/*.aab", "build/app/outputs/bundle/app.aab", True),
        ("build/app/outputs/bundle/**/*.aab", "build/app/outputs/bundle/a/b/c/app.aab", True),
        ("build/app/outputs/bundle/**/*.aab", "build/app/outputs/app.aab", False),
        ("**/*.apk", "app.apk", True),
        ("**/*.apk", "a/b/c/app.apk", True),
        ("**/*.apk", "a/b/c/app.apk.sha1", False),
        ("*.apk", "app.apk", True),
        ("*.apk", "deep/nested/dir/app.apk", True),
        ("*.apk", "apk/readme.txt", False),
        ("build/*.apk", "build/x/app.apk", False),
        ("build/*/app.apk", "build/x/app.apk", True),
        ("build/*/app.apk", "build/x/y/app.apk", False),
        ("app-?.apk", "out/app-1.apk", True),
        ("app-?.apk", "out/app-10.apk", False),
        ("app-?.apk", "out/app-.apk", False),
        ("a/**/b/*.txt", "a/b/x.txt", True),
        ("a/**/b/*.txt", "a/x/y/b/x.txt", True),
        ("a/**/b/*.txt", "a/x/y/c/x.txt", False),
        ("out/**", "out/a/b.txt", True),
        ("out/**", "out", False),
        ("out/[ab]*.zip", "out/[ab]1.zip", True),
        ("out/[ab]*.zip", "out/a1.zip", False),
        ("dist/*.zip", "./dist/app.zip", True),
    ],
)
def test_artifact_pattern_matching(pattern: str, path: str, matches: bool) -> None:
    assert artifact_pattern_matches(pattern, path) is matches


def test_hostile_patterns_do_not_hang_the_matcher() -> None:
    assert not artifact_pattern_matches("*a" * 200 + "b", "a" * 250)
    assert not artifact_pattern_matches("/".join(["**"] * 150) + "/*.x", "/".join(["d"] * 200))


# -- config_path ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [".oore.yaml", ".oore.yml", "ci/oore.yaml", "a/b.c/d.yaml"])
def test_valid_config_paths(path: str) -> None:
    assert validate_config_path(path) is None


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("", "config_path: must not be empty"),
        ("  ", "config_path: must not be empty"),
        ("x" * 513, "config_path: must be at most 512 characters (got 513)"),
        ("/etc/oore.yaml", "config_path: must be a relative path"),
        ("ci\\oore.yaml", "config_path: must use / as the separator, not \\"),
        ("ci//oore.yaml", "config_path: must not contain empty, '.' or '..' segments"),
        ("./oore.yaml", "config_path: must not contain empty, '.' or '..' segments"),
        ("../oore.yaml", "config_path: must not contain empty, '.' or '..' segments"),
        ("ci/", "config_path: must not contain empty, '.' or '..' segments"),
    ],
)
def test_invalid_config_paths(path: str, problem: str) -> None:
    assert validate_config_path(path) == problem


# -- triggers ------------------------------------------------------------------------------------


def test_trigger_config_defaults_to_manual_only() -> None:
    assert parse_trigger_config({}) == (TriggerConfig(), [])
    assert TriggerConfig().to_json() == {"events": [], "branches": []}


def test_trigger_config_keeps_events_once_and_trims_branches() -> None:
    trigger, problems = parse_trigger_config(
        {"events": ["push", "tag_push", "push", "pull_request"], "branches": [" main ", "rel/*"]}
    )
    assert problems == []
    assert trigger is not None
    assert trigger.to_json() == {
        "events": ["push", "tag_push", "pull_request"],
        "branches": ["main", "rel/*"],
    }


@pytest.mark.parametrize(
    ("data", "problems"),
    [
        ("push", ["trigger_config: must be an object, got a string"]),
        (
            {"on": ["push"]},
            ["trigger_config.on: unknown field (expected one of: events, branches)"],
        ),
        ({"events": "push"}, ["trigger_config.events: must be a list of events, got a string"]),
        (
            {"events": ["push", "merge", None]},
            [
                "trigger_config.events[1]: must be one of push, pull_request, tag_push,"
                " got 'merge'",
                "trigger_config.events[2]: must be one of push, pull_request, tag_push, got null",
            ],
        ),
        (
            {"branches": ["main", " ", 3]},
            [
                "trigger_config.branches[1]: must not be blank",
                "trigger_config.branches[2]: must be a string, got a number",
            ],
        ),
    ],
)
def test_invalid_trigger_configs(data: object, problems: list[str]) -> None:
    assert parse_trigger_config(data) == (None, problems)


# -- concurrency ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, Concurrency(False, None)),
        ({"cancel_previous": True}, Concurrency(True, None)),
        ({"max_concurrent": 1}, Concurrency(False, 1)),
        ({"cancel_previous": False, "max_concurrent": 100}, Concurrency(False, 100)),
        ({"max_concurrent": None}, Concurrency(False, None)),
    ],
)
def test_valid_concurrency(data: object, expected: Concurrency) -> None:
    assert parse_concurrency(data) == (expected, [])


def test_concurrency_wire_shape() -> None:
    assert Concurrency().to_json() == {"cancel_previous": False, "max_concurrent": None}
    assert Concurrency(True, 3).to_json() == {"cancel_previous": True, "max_concurrent": 3}


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([], "concurrency: must be an object, got a list"),
        ({"max_concurrent": 0}, "concurrency.max_concurrent: must be null or a whole number"),
        ({"max_concurrent": 101}, "concurrency.max_concurrent: must be null or a whole number"),
        ({"max_concurrent": 2.5}, "concurrency.max_concurrent: must be null or a whole number"),
        ({"max_concurrent": True}, "concurrency.max_concurrent: must be null or a whole number"),
        ({"max_concurrent": "3"}, "concurrency.max_concurrent: must be null or a whole number"),
        ({"cancel_previous": "yes"}, "concurrency.cancel_previous: must be a boolean, got a str"),
        ({"cancel_previous": 1}, "concurrency.cancel_previous: must be a boolean, got a number"),
        ({"parallel": 2}, "concurrency.parallel: unknown field"),
    ],
)
def test_invalid_concurrency(data: object, problem: str) -> None:
    config, problems = parse_concurrency(data)
    assert config is None
    assert len(problems) == 1
    assert problems[0].startswith(problem)


def test_concurrency_reports_both_problems() -> None:
    assert parse_concurrency({"cancel_previous": None, "max_concurrent": 0}) == (
        None,
        [
            "concurrency.cancel_previous: must be a boolean, got null",
            "concurrency.max_concurrent: must be null or a whole number from 1 to 100, got 0",
        ],
    )


# -- runner labels -------------------------------------------------------------------------------


def test_runner_labels_are_sorted_without_duplicates() -> None:
    assert parse_runner_labels(["macos", "arm64", "xcode:15.4", "macos"]) == (
        ("arm64", "macos", "xcode:15.4"),
        [],
    )
    assert parse_runner_labels([]) == ((), [])


def test_runner_labels_at_the_limits_are_accepted() -> None:
    labels = [f"l{i:02}" for i in range(31)] + ["x" * 64]
    found, problems = parse_runner_labels(labels)
    assert problems == []
    assert found is not None
    assert len(found) == 32


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("macos", "runner_labels: must be a list of labels, got a string"),
        ([f"l{i}" for i in range(33)], "runner_labels: must have at most 32 labels (got 33)"),
        (["ok", ""], "runner_labels[1]: must be 1 to 64 characters (got 0)"),
        (["x" * 65], "runner_labels[0]: must be 1 to 64 characters (got 65)"),
        (["has space"], "runner_labels[0]: may hold only letters, digits and _ . : / -"),
        (["emoji🙂"], "runner_labels[0]: may hold only letters, digits and _ . : / -"),
        ([7], "runner_labels[0]: must be a string, got a number"),
    ],
)
def test_invalid_runner_labels(data: object, problem: str) -> None:
    found, problems = parse_runner_labels(data)
    assert found is None
    assert any(p.startswith(problem) for p in problems), problems


# -- the step plan -------------------------------------------------------------------------------


def config_with(**fields: Any) -> ExecutionConfig:
    return parsed({**DEFAULT_JSON, **fields})


def test_plan_runs_pre_build_then_build_then_post_build() -> None:
    config = config_with(
        platforms=["android", "ios"],
        commands={"pre_build": ["a", "b"], "build": ["make"], "post_build": ["z"]},
    )
    assert plan_steps(config, None) == [
        Step("pre_build[0]", "a"),
        Step("pre_build[1]", "b"),
        Step("build[0]", "make"),
        Step("post_build[0]", "z"),
    ]


def test_explicit_build_commands_replace_the_platform_commands() -> None:
    config = config_with(
        commands={"pre_build": [], "build": ["make one", "make two"], "post_build": []},
        platform_commands={"android": "never", "ios": None, "macos": None},
    )
    assert plan_steps(config, ["android"]) == [
        Step("build[0]", "make one"),
        Step("build[1]", "make two"),
    ]


def test_without_build_commands_each_platform_gets_its_flutter_command() -> None:
    config = config_with(
        platforms=["android", "ios", "macos"],
        commands={"pre_build": ["flutter pub get"], "build": [], "post_build": ["ls"]},
    )
    assert plan_steps(config, None) == [
        Step("pre_build[0]", "flutter pub get"),
        Step("build:android", "flutter build apk"),
        Step("build:ios", "flutter build ipa"),
        Step("build:macos", "flutter build macos"),
        Step("post_build[0]", "ls"),
    ]


def test_platform_build_args_are_shell_quoted() -> None:
    config = config_with(
        platform_build_args={
            "android": ["--release", "--dart-define=GREETING=hello world", "it's"],
            "ios": [],
            "macos": [],
        }
    )
    assert plan_steps(config, None) == [
        Step(
            "build:android",
            "flutter build apk --release '--dart-define=GREETING=hello world' 'it'\"'\"'s'",
        )
    ]


def test_a_platform_command_replaces_the_default_and_its_args() -> None:
    config = config_with(
        platforms=["android", "ios"],
        platform_build_args={"android": ["--release"], "ios": ["--debug"], "macos": []},
        platform_commands={"android": None, "ios": "fastlane beta", "macos": None},
    )
    assert plan_steps(config, None) == [
        Step("build:android", "flutter build apk --release"),
        Step("build:ios", "fastlane beta"),
    ]


@pytest.mark.parametrize(
    ("selected", "names"),
    [
        (None, ["build:android", "build:ios"]),
        (["ios"], ["build:ios"]),
        (["ios", "android"], ["build:ios", "build:android"]),
        (["macos"], ["build:macos"]),
        (["ios", "ios"], ["build:ios"]),
        ([], []),
    ],
)
def test_selected_platforms_choose_the_build_steps(
    selected: list[str] | None, names: list[str]
) -> None:
    config = config_with(platforms=["android", "ios"])
    assert [step.name for step in plan_steps(config, selected)] == names


def test_an_unknown_platform_cannot_be_planned() -> None:
    with pytest.raises(ValueError, match="windows"):
        plan_steps(default_execution_config(), ["windows"])


def test_plan_of_a_repository_file() -> None:
    config = parsed_yaml(FULL_YAML)
    assert plan_steps(config, None) == [
        Step("pre_build[0]", "flutter pub get"),
        Step("build:android", "flutter build apk --release '--dart-define=MODE=prod build'"),
        Step("build:ios", "flutter build ipa --no-codesign"),
        Step("post_build[0]", "echo done"),
    ]


def test_a_file_over_128_kib_is_one_problem_and_is_not_parsed() -> None:
    # Unparsable YAML past the bound: the size is the only problem reported.
    text = "version: 1\nplatforms: [android\n" + "#" * MAX_REPOSITORY_YAML_BYTES
    (problem,) = yaml_problems(text)
    assert problem.startswith(f"the file is {len(text):,} bytes;")
    assert "at most 131,072 bytes" in problem
    # The bound counts UTF-8 bytes, not characters.
    wide = "version: 1\nplatforms: [android]\n# " + "é" * (MAX_REPOSITORY_YAML_BYTES // 2)
    (problem,) = yaml_problems(wide)
    assert "at most 131,072 bytes" in problem


def test_a_huge_list_costs_one_problem_and_is_not_read_past_its_bound() -> None:
    # A 2 MiB body can hold a million entries; reading each one held the event loop.
    _, problems = parse_execution_config(
        {"platforms": ["android"], "commands": {"build": [1] * 1_000_000}}
    )
    assert problems[0].startswith("execution_config.commands.build: must have at most 128")
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[-1] == "more problems not listed (the first 100 are)"


def test_trigger_lists_are_bounded() -> None:
    _, problems = parse_trigger_config({"events": ["push"] * 17, "branches": ["x" * 256]})
    assert problems == [
        "trigger_config.events: must have at most 16 events (got 17)",
        "trigger_config.branches[0]: must be at most 255 characters (got 256)",
    ]
    _, problems = parse_trigger_config({"branches": ["main"] * 129})
    assert problems == ["trigger_config.branches: must have at most 128 branch patterns (got 129)"]


def test_unknown_keys_are_listed_up_to_the_bound() -> None:
    _, problems = parse_execution_config(
        {"platforms": ["android"], **{f"k{i}": 1 for i in range(10_000)}}
    )
    assert len(problems) == MAX_PROBLEMS + 1


def test_a_file_env_entry_may_be_marked_secret() -> None:
    config, problems = parse_repository_yaml(
        "version: 1\nplatforms: [ios]\nenv:\n"
        "  - {key: A, value: shown}\n  - {key: B, value: hidden-value, secret: true}\n"
    )
    assert problems == [] and config is not None
    assert [(var.key, var.secret) for var in config.env] == [("A", False), ("B", True)]
