"""Config resolution: explicit path, .oore.yaml, .oore.yml, then the UI config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oore.domain.pipeline_config import MAX_REPOSITORY_YAML_BYTES
from oore.runner.resolve import UI_SOURCE, ConfigError, resolve_config

UI_CONFIG = {"platforms": ["android"], "commands": {"build": ["echo from-ui"]}}


def yaml_file(command: str) -> str:
    return f"version: 1\nplatforms: [android]\ncommands:\n  build: [{command!r}]\n"


def snapshot(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "config_path": None,
        "config_path_explicit": False,
        "ui_execution_config": UI_CONFIG,
    }
    return base | fields


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_oore_yaml_comes_before_oore_yml(tmp_path: Path) -> None:
    write(tmp_path, {".oore.yaml": yaml_file("echo yaml"), ".oore.yml": yaml_file("echo yml")})
    resolved = resolve_config(tmp_path, snapshot())
    assert resolved.source == ".oore.yaml"
    assert resolved.config.build == ("echo yaml",)


def test_oore_yml_is_used_when_there_is_no_oore_yaml(tmp_path: Path) -> None:
    write(tmp_path, {".oore.yml": yaml_file("echo yml")})
    resolved = resolve_config(tmp_path, snapshot())
    assert (resolved.source, resolved.config.build) == (".oore.yml", ("echo yml",))


def test_an_explicit_path_wins_only_when_marked_explicit(tmp_path: Path) -> None:
    write(tmp_path, {".oore.yaml": yaml_file("echo yaml"), "ci/oore.yaml": yaml_file("echo ci")})
    explicit = resolve_config(
        tmp_path, snapshot(config_path="ci/oore.yaml", config_path_explicit=True)
    )
    assert (explicit.source, explicit.config.build) == ("ci/oore.yaml", ("echo ci",))
    implicit = resolve_config(tmp_path, snapshot(config_path="ci/oore.yaml"))
    assert implicit.source == ".oore.yaml"


def test_without_a_file_the_ui_config_is_used(tmp_path: Path) -> None:
    resolved = resolve_config(tmp_path, snapshot())
    assert resolved.source == UI_SOURCE
    assert resolved.config.build == ("echo from-ui",)
    # A missing explicit file is "no file" too: the policy is file first, UI fallback.
    missing = resolve_config(tmp_path, snapshot(config_path="ci.yaml", config_path_explicit=True))
    assert missing.source == UI_SOURCE


def test_an_invalid_file_fails_with_every_problem_and_never_falls_back(tmp_path: Path) -> None:
    write(tmp_path, {".oore.yaml": "version: 2\nplatforms: [android]\nsurprise: 1\n"})
    with pytest.raises(ConfigError) as caught:
        resolve_config(tmp_path, snapshot())
    assert caught.value.source == ".oore.yaml"
    assert any(p.startswith("version:") for p in caught.value.problems)
    assert any(p.startswith("surprise:") for p in caught.value.problems)
    assert ".oore.yaml" in str(caught.value)


def test_an_unreadable_file_fails(tmp_path: Path) -> None:
    (tmp_path / ".oore.yaml").write_bytes(b"version: 1\nplatforms: [\xff]\n")
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_config(tmp_path, snapshot())
    (tmp_path / ".oore.yaml").unlink()
    (tmp_path / ".oore.yaml").mkdir()
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_config(tmp_path, snapshot())


def test_a_file_linking_outside_the_repository_is_refused(tmp_path: Path) -> None:
    outside = write(tmp_path / "outside", {"secret.yaml": yaml_file("echo secret")})
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".oore.yaml").symlink_to(outside / "secret.yaml")
    with pytest.raises(ConfigError, match="outside the repository"):
        resolve_config(repo, snapshot())


def test_an_invalid_ui_config_fails(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_config(tmp_path, snapshot(ui_execution_config={"platforms": ["windows"]}))
    assert caught.value.source == UI_SOURCE
    assert caught.value.problems
    with pytest.raises(ConfigError, match=r"no \.oore\.yaml or \.oore\.yml"):
        resolve_config(tmp_path, {"config_path_explicit": False})


def test_a_file_over_128_kib_fails_the_build_without_being_parsed(tmp_path: Path) -> None:
    write(tmp_path, {".oore.yaml": yaml_file("echo big") + "#" * MAX_REPOSITORY_YAML_BYTES})
    with pytest.raises(ConfigError) as caught:
        resolve_config(tmp_path, snapshot())
    assert caught.value.source == ".oore.yaml"
    (problem,) = caught.value.problems
    assert "at most 131,072 bytes" in problem
