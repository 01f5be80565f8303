"""The JSON Schema of a repository's ``.oore.yaml``, built from the validator's own bounds.

Editors read it to complete and check the file; ``GET /v1/pipelines/schema`` serves it.
It says what :func:`~oore.domain.pipeline_config.parse_repository_yaml` accepts, except
what JSON Schema cannot say (tests hold the two together on a corpus of files):

* a key given twice in one mapping (YAML merges them; the validator refuses them);
* a name given twice (``env`` keys, step names): the validator refuses duplicates;
* ``1.0`` where a whole number is expected: JSON Schema counts it an integer, the
  validator only takes ``1``;
* the file's size (at most 128 KiB).

In a YAML file an optional key left empty (``flutter_version:``) counts as absent, so
every optional property also allows ``null``.
"""

from __future__ import annotations

from typing import Any

from oore.domain import pipeline_config as pc
from oore.domain.runners import MAX_LABEL_CHARS, MAX_LABELS

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# The end of the text, in ECMA and Python regexes alike (Python's $ also matches before
# a final newline).
_END = r"(?![\s\S])"
# The pattern's text without its surrounding whitespace (which the validator strips)
# is 1..MAX chars long; the lookarounds make the middle part exactly that text.
_TRIMMED_LENGTH = rf"^\s*(?=\S)[\s\S]{{1,{pc.MAX_PATTERN_CHARS}}}(?<=\S)\s*$"


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _text(max_chars: int, description: str) -> dict[str, Any]:
    """A string that is not blank (only whitespace) and at most ``max_chars`` long."""
    return {
        "type": "string",
        "pattern": r"\S",
        "maxLength": max_chars,
        "description": description,
    }


def _texts(max_items: int, max_chars: int, description: str) -> dict[str, Any]:
    return {
        "type": "array",
        "maxItems": max_items,
        "items": _text(max_chars, "a non-blank entry"),
        "description": description,
    }


def _timeout(description: str) -> dict[str, Any]:
    return {
        "type": "integer",
        "minimum": 1,
        "maximum": pc.MAX_TIMEOUT_SECONDS,
        "description": description,
    }


def _env() -> dict[str, Any]:
    return {
        "type": "array",
        "maxItems": pc.MAX_ENV_ENTRIES,
        "description": "Environment variables (keys unique).",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["key", "value"],
            "properties": {
                "key": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": pc.MAX_ENV_KEY_CHARS,
                    "pattern": rf"^[A-Za-z_][A-Za-z0-9_]*{_END}",
                },
                "value": {"type": "string", "maxLength": pc.MAX_ENV_VALUE_CHARS},
                "secret": {
                    "type": "boolean",
                    "description": "Mask the value (4 characters or more) in the build's log.",
                },
            },
        },
    }


def _artifact_pattern() -> dict[str, Any]:
    """The rules of :func:`~oore.domain.pipeline_config.validate_artifact_pattern`."""
    return {
        "type": "string",
        "description": "A relative glob: * and ? within a name, ** across directories.",
        "allOf": [
            {"pattern": _TRIMMED_LENGTH},
            {"pattern": r"[*?]"},
            {"pattern": r"^\s*[^\s/]"},  # relative
            {"pattern": r"^[^\\]*$"},  # / separators only
            # no empty, "." or ".." segment
            {"not": {"pattern": r"(^\s*|/)\.{1,2}(/|\s*$)"}},
            {"not": {"pattern": r"//|/\s*$"}},
        ],
    }


def _per_platform(item: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {platform: _nullable(item) for platform in pc.PLATFORMS},
        "description": description,
    }


def _step() -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "run"],
        "properties": {
            "name": _text(pc.MAX_STEP_NAME_CHARS, "The step's name (unique in the file)."),
            "run": _text(pc.MAX_STEP_SCRIPT_CHARS, "A shell script, run with /bin/sh -c."),
            "env": _nullable(_env()),
            "timeout": _nullable(_timeout("Seconds before the step is ended and fails.")),
            "continue_on_error": _nullable(
                {"type": "boolean", "description": "A failure does not fail the build."}
            ),
            "if": _nullable(
                {
                    "enum": list(pc.STEP_CONDITIONS),
                    "description": "success() (default), failure() or always().",
                }
            ),
        },
    }


def _present(key: str) -> dict[str, Any]:
    """The file has ``key`` with a value (an empty key counts as absent)."""
    return {"required": [key], "properties": {key: {"not": {"type": "null"}}}}


def pipeline_file_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a ``.oore.yaml``, version 1."""
    stages = {
        stage: _nullable(_texts(pc.MAX_STAGE_COMMANDS, pc.MAX_COMMAND_CHARS, f"{stage} commands"))
        for stage in pc.STAGES
    }
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "oore pipeline file (.oore.yaml), version 1",
        "type": "object",
        "additionalProperties": False,
        "required": ["version"],
        "anyOf": [_present("platforms"), _present("steps")],
        "if": _present("steps"),
        "then": {"properties": {key: {"type": "null"} for key in pc.STEP_EXCLUSIVE_KEYS}},
        "properties": {
            "version": {"const": 1, "type": "integer", "description": "Always 1."},
            "platforms": _nullable(
                {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": True,
                    "items": {"enum": list(pc.PLATFORMS)},
                    "description": "Flutter platforms to build; optional with steps.",
                }
            ),
            "flutter_version": _nullable(_text(pc.MAX_FLUTTER_VERSION_CHARS, "Flutter version.")),
            "commands": _nullable(
                {"type": "object", "additionalProperties": False, "properties": stages}
            ),
            "platform_build_args": _nullable(
                _per_platform(
                    _texts(pc.MAX_BUILD_ARGS, pc.MAX_COMMAND_CHARS, "arguments"),
                    "Extra arguments of the default flutter build command.",
                )
            ),
            "platform_commands": _nullable(
                _per_platform(
                    _text(pc.MAX_COMMAND_CHARS, "a command"),
                    "A command replacing the default build command of a platform.",
                )
            ),
            "env": _nullable(_env()),
            "artifacts": _nullable(
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["patterns"],
                    "properties": {
                        "patterns": {
                            "type": "array",
                            "maxItems": pc.MAX_ARTIFACT_PATTERNS,
                            "items": _artifact_pattern(),
                        }
                    },
                }
            ),
            "steps": _nullable(
                {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": pc.MAX_STEPS,
                    "items": _step(),
                    "description": "Shell steps run in order; replace commands.",
                }
            ),
            "runner_labels": _nullable(
                {
                    "type": "array",
                    "maxItems": MAX_LABELS,
                    "items": {
                        "type": "string",
                        "pattern": rf"^[A-Za-z0-9_.:/-]{{1,{MAX_LABEL_CHARS}}}{_END}",
                    },
                    "description": "Labels a runner must have to run the build.",
                }
            ),
            "timeout": _nullable(_timeout("Seconds the build's steps may take in all.")),
        },
    }


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` without the ``null`` an empty YAML key may hold."""
    options = schema.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and options[1] == {"type": "null"}:
        inner: dict[str, Any] = options[0]
        return inner
    return schema


def execution_config_schema() -> dict[str, Any]:
    """The JSON Schema of an API ``execution_config`` (§8.2); absent keys take defaults."""
    file = pipeline_file_schema()["properties"]
    shared = ("platforms", "flutter_version", "commands", "platform_build_args")
    properties = {key: _not_null(file[key]) for key in (*shared, "platform_commands")}
    env = _env()  # an API entry is a key and a value; only a pipeline file marks secrets
    del env["items"]["properties"]["secret"]
    properties["env"] = env
    properties["artifact_patterns"] = {
        "type": "array",
        "maxItems": pc.MAX_ARTIFACT_PATTERNS,
        "items": _artifact_pattern(),
    }
    return {"type": "object", "additionalProperties": False, "properties": properties}


def runner_labels_schema() -> dict[str, Any]:
    """The JSON Schema of an API ``runner_labels``."""
    return _not_null(pipeline_file_schema()["properties"]["runner_labels"])


def trigger_config_schema() -> dict[str, Any]:
    """The JSON Schema of an API ``trigger_config`` (§8.2)."""
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "events": {
                "type": "array",
                "maxItems": pc.MAX_TRIGGER_EVENTS,
                "items": {"enum": list(pc.TRIGGER_EVENTS)},
            },
            "branches": _texts(
                pc.MAX_TRIGGER_BRANCHES, pc.MAX_BRANCH_PATTERN_CHARS, "Branch patterns."
            ),
        },
    }


def concurrency_schema() -> dict[str, Any]:
    """The JSON Schema of an API ``concurrency`` (§8.2)."""
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "cancel_previous": {"type": "boolean"},
            "max_concurrent": _nullable(
                {"type": "integer", "minimum": 1, "maximum": pc.MAX_CONCURRENT}
            ),
        },
    }
