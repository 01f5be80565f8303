"""Pipeline configuration: the UI ``execution_config``, the ``.oore.yaml`` file, the step plan.

Contract §2.6 (wire shapes), §8.1 (repository file) and §8.2 (limits). Every parser reads
untrusted decoded JSON or YAML and answers ``(value, [])`` or ``(None, problems)``, where
``problems`` lists every problem found, each prefixed with the path of its field
(``"execution_config.commands.build[2]: must not be blank"``).
"""

from __future__ import annotations

import datetime
import difflib
import re
import shlex
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import yaml

from oore.domain.runners import MAX_LABELS, label_problem

Platform = Literal["android", "ios", "macos"]
StepCondition = Literal["success", "failure", "always"]
PLATFORMS: tuple[str, ...] = ("android", "ios", "macos")
TRIGGER_EVENTS: tuple[str, ...] = ("push", "pull_request", "tag_push")
STAGES: tuple[str, ...] = ("pre_build", "build", "post_build")
REDACTED = "[REDACTED]"

MAX_STAGE_COMMANDS = 128
MAX_COMMAND_CHARS = 2048
MAX_BUILD_ARGS = 64
MAX_FLUTTER_VERSION_CHARS = 64
MAX_ARTIFACT_PATTERNS = 64
MAX_PATTERN_CHARS = 512
MAX_CONFIG_PATH_CHARS = 512
MAX_ENV_ENTRIES = 128
MAX_ENV_KEY_CHARS = 128
MAX_ENV_VALUE_CHARS = 4096
MAX_CONCURRENT = 100
# Not in the contract: bounds that keep a trigger (matched against every webhook) small.
MAX_TRIGGER_EVENTS = 16
MAX_TRIGGER_BRANCHES = 128
MAX_BRANCH_PATTERN_CHARS = 255
# A reader lists this many problems, then one line saying there are more.
MAX_PROBLEMS = 100
# A repository file is read whole and parsed twice (nodes for duplicate keys, then data),
# about 0.4 ms per KiB with libyaml and 2.5 ms without: the bound keeps one parse well
# under a second even so. Real files are a few KiB.
MAX_REPOSITORY_YAML_BYTES = 128 * 1024
# Plain ``steps`` of a repository file (not in the contract: oore's addition to version 1).
MAX_STEPS = 128
MAX_STEP_NAME_CHARS = 128
MAX_STEP_SCRIPT_CHARS = 16384
MAX_TIMEOUT_SECONDS = 86400
STEP_CONDITIONS: Mapping[str, StepCondition] = {
    "success()": "success",
    "failure()": "failure",
    "always()": "always",
}

DEFAULT_ARTIFACT_PATTERNS: tuple[str, ...] = ("build/app/outputs/flutter-apk/*.apk",)
# What a repository file collects when it has no `artifacts` section (§8.1).
PLATFORM_ARTIFACT_PATTERNS: Mapping[str, tuple[str, ...]] = {
    "android": ("build/app/outputs/flutter-apk/*.apk", "build/app/outputs/bundle/**/*.aab"),
    "ios": ("build/ios/ipa/*.ipa",),
    "macos": ("build/macos/Build/Products/Release/*.app",),
}
DEFAULT_BUILD_COMMANDS: Mapping[str, str] = {
    "android": "flutter build apk",
    "ios": "flutter build ipa",
    "macos": "flutter build macos",
}

_YAML_NON_STRINGS = (bool, int, float, datetime.date)
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXECUTION_KEYS = (
    "platforms",
    "flutter_version",
    "commands",
    "platform_build_args",
    "platform_commands",
    "env",
    "artifact_patterns",
)
_FLUTTER_FILE_KEYS = (
    "version",
    "platforms",
    "flutter_version",
    "commands",
    "platform_build_args",
    "platform_commands",
    "env",
    "artifacts",
)
_FILE_KEYS = (
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
)
_STEP_KEYS = ("name", "run", "env", "timeout", "continue_on_error", "if")
# With `steps`, these would say a second time what runs: the file gives one or the other.
STEP_EXCLUSIVE_KEYS = ("commands", "platform_build_args", "platform_commands")


@dataclass(frozen=True)
class EnvVar:
    key: str
    value: str
    secret: bool = False  # masked in the build's log (values of 4+ characters)


@dataclass(frozen=True)
class Step:
    """One shell command a runner executes, named after where it came from.

    ``when``: ``success`` runs while no earlier step has failed, ``failure`` only after
    one has, ``always`` either way; a failed ``continue_on_error`` step does not count.
    ``timeout`` (seconds) ends the step's processes and fails it.
    """

    name: str
    command: str
    env: tuple[EnvVar, ...] = ()
    timeout: int | None = None
    continue_on_error: bool = False
    when: StepCondition = "success"


@dataclass(frozen=True)
class ExecutionConfig:
    """A checked execution config; the two mappings always hold all of :data:`PLATFORMS`."""

    platforms: tuple[str, ...]
    flutter_version: str | None
    pre_build: tuple[str, ...]
    build: tuple[str, ...]
    post_build: tuple[str, ...]
    platform_build_args: Mapping[str, tuple[str, ...]]
    platform_commands: Mapping[str, str | None]
    env: tuple[EnvVar, ...]
    artifact_patterns: tuple[str, ...]
    # Parts only a repository file has (never in the API object, never in to_json):
    # its plain steps, the labels a runner needs and the build's time bound in seconds.
    steps: tuple[Step, ...] = ()
    runner_labels: tuple[str, ...] = ()
    timeout: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The wire shape of contract §2.6 ``execution_config``."""
        return {
            "platforms": list(self.platforms),
            "flutter_version": self.flutter_version,
            "commands": {
                "pre_build": list(self.pre_build),
                "build": list(self.build),
                "post_build": list(self.post_build),
            },
            "platform_build_args": {
                p: list(self.platform_build_args.get(p, ())) for p in PLATFORMS
            },
            "platform_commands": {p: self.platform_commands.get(p) for p in PLATFORMS},
            "env": [
                {"key": var.key, "value": var.value, **({"secret": True} if var.secret else {})}
                for var in self.env
            ],
            "artifact_patterns": list(self.artifact_patterns),
        }

    def redacted(self) -> ExecutionConfig:
        """The config as a viewer sees it: every env value hidden."""
        return replace(self, env=tuple(EnvVar(var.key, REDACTED) for var in self.env))


def default_execution_config() -> ExecutionConfig:
    """What a pipeline created without an ``execution_config`` gets (§2.6)."""
    return ExecutionConfig(
        platforms=("android",),
        flutter_version=None,
        pre_build=(),
        build=(),
        post_build=(),
        platform_build_args={p: () for p in PLATFORMS},
        platform_commands={p: None for p in PLATFORMS},
        env=(),
        artifact_patterns=DEFAULT_ARTIFACT_PATTERNS,
    )


@dataclass(frozen=True)
class TriggerConfig:
    events: tuple[str, ...] = ()
    branches: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"events": list(self.events), "branches": list(self.branches)}


@dataclass(frozen=True)
class Concurrency:
    cancel_previous: bool = False
    max_concurrent: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"cancel_previous": self.cancel_previous, "max_concurrent": self.max_concurrent}


# -- reading untrusted data -----------------------------------------------------------------


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _index(path: str, index: int) -> str:
    return f"{path}[{index}]"


class _Reader:
    """Collects every problem met while reading decoded JSON (API) or YAML (repository file).

    Readers always return a best-effort value; the caller trusts it only when no problem
    was recorded. In a YAML file an empty optional key (``flutter_version:``) is absent.
    """

    def __init__(self, *, yaml_file: bool) -> None:
        self.yaml_file = yaml_file
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(f"{path}: {message}")
        elif len(self.problems) == MAX_PROBLEMS:
            self.problems.append(f"more problems not listed (the first {MAX_PROBLEMS} are)")

    def kind(self, value: object) -> str:
        match value:
            case None:
                return "null"
            case bool():
                return "a boolean"
            case int() | float():
                return "a number"
            case str():
                return "a string"
            case list():
                return "a list"
            case dict():
                return "a mapping" if self.yaml_file else "an object"
            case datetime.date():
                return "a date"
            case _:
                return type(value).__name__

    def wrong_type(self, path: str, expected: str, value: object) -> None:
        message = f"must be {expected}, got {self.kind(value)}"
        if self.yaml_file and expected == "a string" and isinstance(value, _YAML_NON_STRINGS):
            # YAML reads unquoted `8080`, `true`, `3.10` and `2024-01-01` as other types.
            shown = str(value).lower() if isinstance(value, bool) else str(value)
            message += f" ({shown}); put the value in quotes"
        self.problem(path, message)

    def mapping(
        self,
        value: object,
        path: str,
        allowed: Collection[str],
        listed: Collection[str] | None = None,
    ) -> dict[str, object] | None:
        """The known fields of an object; every unknown field is a problem.

        The problem lists ``listed`` (all of ``allowed`` when None) and names an allowed
        field left out of that list when the unknown one looks like it.
        """
        if not isinstance(value, dict):
            self.wrong_type(path, "a mapping" if self.yaml_file else "an object", value)
            return None
        fields: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str) or key not in allowed:
                if len(self.problems) > MAX_PROBLEMS:
                    continue  # the list is full: do not even spell the problem out
                shown = allowed if listed is None else listed
                message = f"unknown field (expected one of: {', '.join(shown)})"
                unlisted = [name for name in allowed if name not in shown]
                if close := difflib.get_close_matches(str(key), unlisted, n=1):
                    message += f"; did you mean {close[0]}?"
                self.problem(_key(path, str(key)), message)
            elif not (self.yaml_file and item is None):
                fields[key] = item
        return fields

    def string(
        self, value: object, path: str, *, max_chars: int | None, blank_ok: bool = False
    ) -> str:
        if not isinstance(value, str):
            self.wrong_type(path, "a string", value)
            return ""
        if not blank_ok and not value.strip():
            self.problem(path, "must not be blank")
        elif max_chars is not None and len(value) > max_chars:
            self.problem(path, f"must be at most {max_chars} characters (got {len(value)})")
        return value

    def items(self, value: object, path: str, *, max_items: int | None, noun: str) -> list[object]:
        """The entries of a list of at most ``max_items``; the entries themselves unchecked."""
        if not isinstance(value, list):
            self.wrong_type(path, f"a list of {noun}", value)
            return []
        if max_items is not None and len(value) > max_items:
            self.problem(path, f"must have at most {max_items} {noun} (got {len(value)})")
            return value[:max_items]  # the entries past the bound are not read at all
        return value

    def strings(
        self, value: object, path: str, *, max_items: int, max_chars: int, noun: str
    ) -> tuple[str, ...]:
        entries = self.items(value, path, max_items=max_items, noun=noun)
        return tuple(
            self.string(entry, _index(path, i), max_chars=max_chars)
            for i, entry in enumerate(entries)
        )

    # -- the parts of an execution config ---------------------------------------------------

    def platforms(self, value: object, path: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.wrong_type(path, "a list of platforms", value)
            return ()
        if not value:
            self.problem(path, f"must list at least one of: {', '.join(PLATFORMS)}")
        found: list[str] = []
        for i, entry in enumerate(value):
            if not isinstance(entry, str) or entry not in PLATFORMS:
                shown = repr(entry) if isinstance(entry, str) else self.kind(entry)
                self.problem(_index(path, i), f"must be one of {', '.join(PLATFORMS)}, got {shown}")
            elif entry in found:
                self.problem(_index(path, i), f"duplicate platform {entry!r}")
            else:
                found.append(entry)
        return tuple(found)

    def flutter_version(self, value: object, path: str) -> str | None:
        if value is None:
            return None
        return self.string(value, path, max_chars=MAX_FLUTTER_VERSION_CHARS)

    def commands(self, value: object, path: str) -> dict[str, tuple[str, ...]]:
        fields = self.mapping(value, path, STAGES) or {}
        return {
            stage: self.strings(
                fields[stage],
                _key(path, stage),
                max_items=MAX_STAGE_COMMANDS,
                max_chars=MAX_COMMAND_CHARS,
                noun="commands",
            )
            for stage in STAGES
            if stage in fields
        }

    def build_args(self, value: object, path: str) -> dict[str, tuple[str, ...]]:
        fields = self.mapping(value, path, PLATFORMS) or {}
        return {
            platform: self.strings(
                fields[platform],
                _key(path, platform),
                max_items=MAX_BUILD_ARGS,
                max_chars=MAX_COMMAND_CHARS,
                noun="arguments",
            )
            for platform in PLATFORMS
            if platform in fields
        }

    def platform_commands(self, value: object, path: str) -> dict[str, str | None]:
        fields = self.mapping(value, path, PLATFORMS) or {}
        found: dict[str, str | None] = {}
        for platform in PLATFORMS:
            command = fields.get(platform)
            if command is not None:
                found[platform] = self.string(
                    command, _key(path, platform), max_chars=MAX_COMMAND_CHARS
                )
        return found

    def env(self, value: object, path: str) -> tuple[EnvVar, ...]:
        entries = self.items(value, path, max_items=MAX_ENV_ENTRIES, noun="entries")
        found: list[EnvVar] = []
        first_at: dict[str, str] = {}
        for i, entry in enumerate(entries):
            at = _index(path, i)
            # `secret: true` (mask the value in the log) is for the repository file: the
            # UI config's env values are all masked already.
            allowed = ("key", "value", "secret") if self.yaml_file else ("key", "value")
            fields = self.mapping(entry, at, allowed)
            if fields is None:
                continue
            key_path, value_path = _key(at, "key"), _key(at, "value")
            key = var_value = ""
            if "key" not in fields:
                self.problem(key_path, "required")
            else:
                key = self.env_key(fields["key"], key_path)
                if key in first_at:
                    self.problem(key_path, f"duplicate key {key!r} (also at {first_at[key]})")
                elif key:
                    first_at[key] = at
            if "value" not in fields:
                self.problem(value_path, "required")
            else:
                var_value = self.string(
                    fields["value"], value_path, max_chars=MAX_ENV_VALUE_CHARS, blank_ok=True
                )
            secret = fields.get("secret", False)
            if not isinstance(secret, bool):
                self.wrong_type(_key(at, "secret"), "true or false", secret)
                secret = False
            found.append(EnvVar(key, var_value, secret))
        return tuple(found)

    def env_key(self, value: object, path: str) -> str:
        if not isinstance(value, str):
            self.wrong_type(path, "a string", value)
            return ""
        if not value:
            self.problem(path, "must not be empty")
        elif len(value) > MAX_ENV_KEY_CHARS:
            self.problem(path, f"must be at most {MAX_ENV_KEY_CHARS} characters (got {len(value)})")
        elif not _ENV_KEY.fullmatch(value):
            self.problem(
                path,
                "must be letters, digits and underscores, not starting with a digit, "
                f"got {value!r}",
            )
        return value

    def artifact_patterns(self, value: object, path: str) -> tuple[str, ...]:
        entries = self.items(value, path, max_items=MAX_ARTIFACT_PATTERNS, noun="patterns")
        found: list[str] = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, str):
                self.wrong_type(_index(path, i), "a string", entry)
                continue
            problem = validate_artifact_pattern(entry)
            if problem is not None:
                self.problem(_index(path, i), problem)
            found.append(entry.strip())
        return tuple(found)

    def timeout(self, value: object, path: str) -> int | None:
        if type(value) is not int or not 1 <= value <= MAX_TIMEOUT_SECONDS:
            shown = repr(value) if isinstance(value, int | float | str) else self.kind(value)
            self.problem(
                path,
                f"must be a whole number of seconds from 1 to {MAX_TIMEOUT_SECONDS}, got {shown}",
            )
            return None
        return value

    def labels(self, value: object, path: str) -> tuple[str, ...]:
        labels = self.items(value, path, max_items=MAX_LABELS, noun="labels")
        found: set[str] = set()
        for i, label in enumerate(labels):
            if not isinstance(label, str):
                self.wrong_type(_index(path, i), "a string", label)
            elif (problem := label_problem(label)) is not None:
                self.problem(_index(path, i), problem)
            else:
                found.add(label)
        return tuple(sorted(found))

    def steps(self, value: object, path: str) -> tuple[Step, ...]:
        entries = self.items(value, path, max_items=MAX_STEPS, noun="steps")
        if isinstance(value, list) and not value:
            self.problem(path, "must list at least one step")
        found: list[Step] = []
        first_at: dict[str, str] = {}
        for i, entry in enumerate(entries):
            at = _index(path, i)
            fields = self.mapping(entry, at, _STEP_KEYS)
            if fields is None:
                continue
            name = command = ""
            for key in ("name", "run"):
                if key not in fields:
                    self.problem(_key(at, key), "required")
            if "name" in fields:
                name = self.string(fields["name"], _key(at, "name"), max_chars=MAX_STEP_NAME_CHARS)
                if name in first_at:
                    self.problem(
                        _key(at, "name"), f"duplicate step name {name!r} (also at {first_at[name]})"
                    )
                elif name.strip():
                    first_at[name] = at
            if "run" in fields:
                command = self.string(
                    fields["run"], _key(at, "run"), max_chars=MAX_STEP_SCRIPT_CHARS
                )
            env = self.env(fields["env"], _key(at, "env")) if "env" in fields else ()
            timeout = None
            if "timeout" in fields:
                timeout = self.timeout(fields["timeout"], _key(at, "timeout"))
            keep_going = fields.get("continue_on_error", False)
            if not isinstance(keep_going, bool):
                self.wrong_type(_key(at, "continue_on_error"), "a boolean", keep_going)
                keep_going = False
            when: StepCondition = "success"
            if "if" in fields:
                condition = fields["if"]
                if isinstance(condition, str) and condition in STEP_CONDITIONS:
                    when = STEP_CONDITIONS[condition]
                else:
                    shown = repr(condition) if isinstance(condition, str) else self.kind(condition)
                    self.problem(
                        _key(at, "if"), f"must be one of {', '.join(STEP_CONDITIONS)}, got {shown}"
                    )
            found.append(Step(name, command, env, timeout, keep_going, when))
        return tuple(found)

    def config(self, fields: Mapping[str, object], root: str) -> ExecutionConfig:
        """The parts shared by the API object and the repository file; default patterns."""
        default = default_execution_config()
        platforms = default.platforms
        if "platforms" in fields:
            platforms = self.platforms(fields["platforms"], _key(root, "platforms"))
        flutter_version = None
        if "flutter_version" in fields:
            flutter_version = self.flutter_version(
                fields["flutter_version"], _key(root, "flutter_version")
            )
        stages: dict[str, tuple[str, ...]] = {}
        if "commands" in fields:
            stages = self.commands(fields["commands"], _key(root, "commands"))
        args: dict[str, tuple[str, ...]] = {}
        if "platform_build_args" in fields:
            args = self.build_args(fields["platform_build_args"], _key(root, "platform_build_args"))
        commands: dict[str, str | None] = {}
        if "platform_commands" in fields:
            commands = self.platform_commands(
                fields["platform_commands"], _key(root, "platform_commands")
            )
        env: tuple[EnvVar, ...] = ()
        if "env" in fields:
            env = self.env(fields["env"], _key(root, "env"))
        return ExecutionConfig(
            platforms=platforms,
            flutter_version=flutter_version,
            pre_build=stages.get("pre_build", ()),
            build=stages.get("build", ()),
            post_build=stages.get("post_build", ()),
            platform_build_args={p: args.get(p, ()) for p in PLATFORMS},
            platform_commands={p: commands.get(p) for p in PLATFORMS},
            env=env,
            artifact_patterns=default.artifact_patterns,
        )


# -- execution config -------------------------------------------------------------------------


def parse_execution_config(data: object) -> tuple[ExecutionConfig | None, list[str]]:
    """An API ``execution_config`` (§2.6, §8.2); absent keys take the defaults."""
    root = "execution_config"
    reader = _Reader(yaml_file=False)
    fields = reader.mapping(data, root, _EXECUTION_KEYS)
    if fields is None:
        return None, reader.problems
    config = reader.config(fields, root)
    if "artifact_patterns" in fields:
        patterns = reader.artifact_patterns(
            fields["artifact_patterns"], _key(root, "artifact_patterns")
        )
        config = replace(config, artifact_patterns=patterns)
    if reader.problems:
        return None, reader.problems
    return config, []


def parse_repository_yaml(text: str) -> tuple[ExecutionConfig | None, list[str]]:
    """A repository's ``.oore.yaml`` (§8.1) with the limits of §8.2; paths are YAML keys."""
    size = repository_yaml_size(text)
    if size > MAX_REPOSITORY_YAML_BYTES:
        return None, [repository_yaml_too_large(size)]
    try:
        duplicates = _duplicate_keys(yaml.compose(text, Loader=_LOADER))
        data = yaml.load(text, Loader=_LOADER)  # a safe loader: plain data only
    except yaml.MarkedYAMLError as exc:
        if "maximum nesting depth" in (exc.problem or ""):  # libyaml's bound on nesting
            return None, [_NESTED_TOO_DEEPLY]
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = ", ".join(part for part in (exc.context, exc.problem) if part) or str(exc)
        return None, [f"YAML syntax error{where}: {what}"]
    except yaml.YAMLError as exc:
        return None, [f"YAML syntax error: {exc}"]
    except RecursionError:
        return None, [_NESTED_TOO_DEEPLY]
    reader = _Reader(yaml_file=True)
    reader.problems.extend(duplicates)
    if data is None:
        return None, [
            *duplicates,
            "the file is empty; it needs at least version, and platforms or steps",
        ]
    if not isinstance(data, dict):
        reader.problems.append(
            f"the file must be a mapping of keys such as version and platforms, "
            f"got {reader.kind(data)}"
        )
        return None, reader.problems
    # A file in the Flutter shape hears of the classic keys; one without platforms of all.
    listed = _FLUTTER_FILE_KEYS if "platforms" in data else None
    fields = reader.mapping(data, "", _FILE_KEYS, listed)
    assert fields is not None
    version = fields.get("version")
    if version is None:
        reader.problem("version", "required (write `version: 1`)")
    elif type(version) is not int or version != 1:
        reader.problem("version", f"must be 1, got {version!r}")
    if "platforms" not in fields and "steps" not in fields:
        reader.problem("platforms", f"required, a list of: {', '.join(PLATFORMS)} (or give steps)")
    for key in STEP_EXCLUSIVE_KEYS:
        if key in fields and "steps" in fields:
            reader.problem(key, "cannot be combined with steps: the steps say what runs")
    config = reader.config(fields, "")
    if "platforms" not in fields:
        config = replace(config, platforms=())
    if "steps" in fields:
        config = replace(config, steps=reader.steps(fields["steps"], "steps"))
    if "runner_labels" in fields:
        config = replace(
            config, runner_labels=reader.labels(fields["runner_labels"], "runner_labels")
        )
    if "timeout" in fields:
        config = replace(config, timeout=reader.timeout(fields["timeout"], "timeout"))
    if "artifacts" in fields:
        artifacts = reader.mapping(fields["artifacts"], "artifacts", ("patterns",))
        if artifacts is not None and "patterns" not in artifacts:
            reader.problem("artifacts.patterns", "required")
        elif artifacts is not None:
            patterns = reader.artifact_patterns(artifacts["patterns"], "artifacts.patterns")
            config = replace(config, artifact_patterns=patterns)
    else:
        patterns = tuple(
            p for platform in config.platforms for p in PLATFORM_ARTIFACT_PATTERNS[platform]
        )
        config = replace(config, artifact_patterns=patterns)
    if reader.problems:
        return None, reader.problems
    return config, []


_NESTED_TOO_DEEPLY = "YAML syntax error: the document is nested too deeply"
# libyaml's safe loader when PyYAML was built with it: the same documents, parsed ~5x faster.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def repository_yaml_size(text: str) -> int:
    """The file's size in bytes as UTF-8 (counted without encoding a text far too large)."""
    if len(text) > MAX_REPOSITORY_YAML_BYTES:
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def repository_yaml_too_large(size: int) -> str:
    return (
        f"the file is {size:,} bytes; a pipeline file may be at most "
        f"{MAX_REPOSITORY_YAML_BYTES:,} bytes ({MAX_REPOSITORY_YAML_BYTES // 1024} KiB)"
    )


def _duplicate_keys(root: yaml.Node | None) -> list[str]:
    """Keys given twice in one YAML mapping, which ``safe_load`` would silently merge."""
    problems: list[str] = []
    visited: set[int] = set()  # aliases share nodes; each is walked once
    queue: deque[tuple[yaml.Node, str]] = deque([(root, "")] if root is not None else [])
    while queue:
        node, path = queue.popleft()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: set[tuple[str, str]] = set()
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                    continue
                child = _key(path, str(key_node.value))
                if (key_node.tag, key_node.value) in seen:
                    line = key_node.start_mark.line + 1 if key_node.start_mark else "?"
                    problems.append(f"{child}: duplicate key (again at line {line})")
                seen.add((key_node.tag, key_node.value))
                queue.append((value_node, child))
        elif isinstance(node, yaml.SequenceNode):
            queue.extend((item, _index(path, i)) for i, item in enumerate(node.value))
    return problems


# -- artifact patterns and paths ------------------------------------------------------------


def _path_problem(path: str) -> str | None:
    if path.startswith("/"):
        return "must be a relative path"
    if "\\" in path:
        return "must use / as the separator, not \\"
    if any(segment in ("", ".", "..") for segment in path.split("/")):
        return "must not contain empty, '.' or '..' segments"
    return None


def validate_artifact_pattern(pattern: str) -> str | None:
    """Why an artifact pattern is refused (§8.1), or None when it is fine."""
    pattern = pattern.strip()
    if not pattern:
        return "must not be blank"
    if len(pattern) > MAX_PATTERN_CHARS:
        return f"must be at most {MAX_PATTERN_CHARS} characters (got {len(pattern)})"
    if "*" not in pattern and "?" not in pattern:
        return "must contain a wildcard (* or ?)"
    return _path_problem(pattern)


def artifact_pattern_matches(pattern: str, relative_path: str) -> bool:
    """Whether a file (path relative to the checkout, ``/``-separated) is collected.

    ``**`` as a whole segment spans zero or more directories (at least one name when it
    ends the pattern, so ``out/**`` is everything under ``out``); ``*`` and ``?`` stay
    within one segment; a pattern without ``/`` is matched against the file name alone.
    """
    pattern = pattern.strip()
    names = [name for name in relative_path.split("/") if name not in ("", ".")]
    if not names:
        return False
    if "/" not in pattern:
        return _name_matches(pattern, names[-1])
    segments = pattern.split("/")
    # The pattern positions reachable after each name: linear in both lengths, no backtracking.
    reachable = _past_globstars(segments, {0})
    for name in names:
        following: set[int] = set()
        for at in reachable:
            if at == len(segments):
                continue
            if segments[at] == "**":
                following.update((at, at + 1))
            elif _name_matches(segments[at], name):
                following.add(at + 1)
        reachable = _past_globstars(segments, following)
    return len(segments) in reachable


def _past_globstars(segments: list[str], positions: set[int]) -> set[int]:
    """Add the positions reached by letting each inner ``**`` match no directory at all."""
    found = set(positions)
    for at in positions:
        while at < len(segments) - 1 and segments[at] == "**":
            at += 1
            found.add(at)
    return found


def _name_matches(pattern: str, name: str) -> bool:
    """``*`` and ``?`` wildcards over one path segment, everything else literal."""
    p = n = 0
    star, resume = -1, 0
    while n < len(name):
        if p < len(pattern) and pattern[p] in ("?", name[n]) and pattern[p] != "*":
            p += 1
            n += 1
        elif p < len(pattern) and pattern[p] == "*":
            star, resume = p, n
            p += 1
        elif star >= 0:
            # Let the last star swallow one more character and retry from there.
            resume += 1
            p, n = star + 1, resume
        else:
            return False
    return all(c == "*" for c in pattern[p:])


DEFAULT_CONFIG_FILES = (".oore.yaml", ".oore.yml")


def config_files(config_path: str | None, explicit: bool | None) -> tuple[str, ...]:
    """The repository files a build looks for, in order (§8.1)."""
    if explicit and config_path is not None and config_path.strip():
        return (config_path,)
    return DEFAULT_CONFIG_FILES


def validate_config_path(path: str) -> str | None:
    """Why a pipeline's ``config_path`` is refused (§8.1), or None when it is fine."""
    if not path.strip():
        return "config_path: must not be empty"
    if len(path) > MAX_CONFIG_PATH_CHARS:
        return f"config_path: must be at most {MAX_CONFIG_PATH_CHARS} characters (got {len(path)})"
    problem = _path_problem(path)
    return None if problem is None else f"config_path: {problem}"


# -- triggers, concurrency, runner labels -------------------------------------------------------


def parse_trigger_config(data: object) -> tuple[TriggerConfig | None, list[str]]:
    """``trigger_config`` (§8.2): known events (duplicates dropped), non-blank branch patterns."""
    root = "trigger_config"
    reader = _Reader(yaml_file=False)
    fields = reader.mapping(data, root, ("events", "branches"))
    if fields is None:
        return None, reader.problems
    events: list[str] = []
    path = _key(root, "events")
    for i, event in enumerate(
        reader.items(fields.get("events", []), path, max_items=MAX_TRIGGER_EVENTS, noun="events")
    ):
        if not isinstance(event, str) or event not in TRIGGER_EVENTS:
            shown = repr(event) if isinstance(event, str) else reader.kind(event)
            reader.problem(
                _index(path, i), f"must be one of {', '.join(TRIGGER_EVENTS)}, got {shown}"
            )
        elif event not in events:
            events.append(event)
    path = _key(root, "branches")
    branches = reader.items(
        fields.get("branches", []), path, max_items=MAX_TRIGGER_BRANCHES, noun="branch patterns"
    )
    patterns = tuple(
        reader.string(branch, _index(path, i), max_chars=MAX_BRANCH_PATTERN_CHARS).strip()
        for i, branch in enumerate(branches)
    )
    if reader.problems:
        return None, reader.problems
    return TriggerConfig(tuple(events), patterns), []


def parse_concurrency(data: object) -> tuple[Concurrency | None, list[str]]:
    """``concurrency`` (§8.2): ``max_concurrent`` in 1..100 when present."""
    root = "concurrency"
    reader = _Reader(yaml_file=False)
    fields = reader.mapping(data, root, ("cancel_previous", "max_concurrent"))
    if fields is None:
        return None, reader.problems
    cancel_previous = fields.get("cancel_previous", False)
    if not isinstance(cancel_previous, bool):
        reader.wrong_type(_key(root, "cancel_previous"), "a boolean", cancel_previous)
    max_concurrent = fields.get("max_concurrent")
    if max_concurrent is not None and (
        type(max_concurrent) is not int or not 1 <= max_concurrent <= MAX_CONCURRENT
    ):
        shown = (
            repr(max_concurrent)
            if isinstance(max_concurrent, int | float) and not isinstance(max_concurrent, bool)
            else reader.kind(max_concurrent)
        )
        reader.problem(
            _key(root, "max_concurrent"),
            f"must be null or a whole number from 1 to {MAX_CONCURRENT}, got {shown}",
        )
    if reader.problems:
        return None, reader.problems
    assert isinstance(cancel_previous, bool)
    assert max_concurrent is None or isinstance(max_concurrent, int)
    return Concurrency(cancel_previous, max_concurrent), []


def parse_runner_labels(data: object) -> tuple[tuple[str, ...] | None, list[str]]:
    """``runner_labels`` (ours): labels a runner must carry to take the pipeline's builds.

    At most 32 labels of 1..64 characters from ``A-Z a-z 0-9 _ . : / -``; the answer is
    sorted with duplicates removed.
    """
    root = "runner_labels"
    reader = _Reader(yaml_file=False)
    labels = reader.items(data, root, max_items=MAX_LABELS, noun="labels")
    found: set[str] = set()
    for i, label in enumerate(labels):
        path = _index(root, i)
        if not isinstance(label, str):
            reader.wrong_type(path, "a string", label)
        elif (problem := label_problem(label)) is not None:
            reader.problem(path, problem)
        else:
            found.add(label)
    if reader.problems:
        return None, reader.problems
    return tuple(sorted(found)), []


# -- the step plan ----------------------------------------------------------------------------


def platform_build_command(config: ExecutionConfig, platform: str) -> str:
    """The build command of one platform: its override, else Flutter's with the extra args."""
    if platform not in PLATFORMS:
        raise ValueError(f"unknown platform {platform!r}")
    override = config.platform_commands.get(platform)
    if override is not None:
        return override
    args = config.platform_build_args.get(platform, ())
    return " ".join([DEFAULT_BUILD_COMMANDS[platform], *(shlex.quote(arg) for arg in args)])


def plan_steps(config: ExecutionConfig, selected_platforms: Sequence[str] | None) -> list[Step]:
    """What a runner executes: a file's ``steps`` as given, else pre_build, build, post_build.

    The build stage is ``config.build`` when it has commands; otherwise one command per
    selected platform (all of ``config.platforms`` when None, each once, in the given
    order). Raises ValueError for a platform outside :data:`PLATFORMS`.
    """
    if config.steps:
        return list(config.steps)
    steps = [Step(f"pre_build[{i}]", command) for i, command in enumerate(config.pre_build)]
    if config.build:
        steps += [Step(f"build[{i}]", command) for i, command in enumerate(config.build)]
    else:
        platforms = config.platforms if selected_platforms is None else selected_platforms
        steps += [
            Step(f"build:{platform}", platform_build_command(config, platform))
            for platform in dict.fromkeys(platforms)
        ]
    steps += [Step(f"post_build[{i}]", command) for i, command in enumerate(config.post_build)]
    return steps
