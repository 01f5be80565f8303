"""Retention rules: settings updates, project overrides, the policy in force, run times."""

from __future__ import annotations

from typing import Any

import pytest

from oore.domain.retention import (
    CleanupReport,
    Policy,
    ProjectOverride,
    RetentionSettings,
    Target,
    artifact_expiry,
    default_settings,
    effective_policy,
    next_run_at,
    parse_override,
    parse_settings_update,
)
from oore.errors import InvalidInput


def test_the_defaults_keep_artifacts_for_the_daemon_ttl_and_the_rest_forever() -> None:
    settings = default_settings(7)
    assert settings.to_json() == {
        "artifact_retention_days": 7,
        "log_retention_days": None,
        "build_retention_days": None,
        "keep_last_builds": None,
        "target": "artifacts_only",
        "cleanup_interval_secs": 3600,
        "source": "default",
    }
    assert default_settings(None).policy.artifact_retention_days is None


def test_an_update_replaces_the_given_fields_and_keeps_the_others() -> None:
    current = RetentionSettings(Policy(artifact_retention_days=7, log_retention_days=30), 600, 5)
    updated = parse_settings_update(
        current, {"log_retention_days": None, "keep_last_builds": 10, "target": "full"}
    )
    assert updated.policy == Policy(
        artifact_retention_days=7,
        log_retention_days=None,
        keep_last_builds=10,
        target=Target.FULL,
    )
    assert updated.cleanup_interval_secs == 600
    interval = parse_settings_update(current, {"cleanup_interval_secs": 60})
    assert interval.cleanup_interval_secs == 60 and interval.policy == current.policy


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"artifact_retention_days": 0}, "artifact_retention_days"),
        ({"log_retention_days": -3}, "log_retention_days"),
        ({"build_retention_days": "7"}, "build_retention_days"),
        ({"keep_last_builds": True}, "keep_last_builds"),
        ({"keep_last_builds": 2.5}, "keep_last_builds"),
        ({"artifact_retention_days": 10**9}, "artifact_retention_days"),
        ({"cleanup_interval_secs": 59}, "cleanup_interval_secs"),
        ({"cleanup_interval_secs": None}, "cleanup_interval_secs"),
        ({"target": "everything"}, "target"),
        ({"target": 1}, "target"),
        ({"log_retention_days": 3, "surprise": 1}, "surprise"),
    ],
)
def test_a_bad_value_is_a_validation_error_naming_its_field(
    fields: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_settings_update(default_settings(None), fields)
    assert caught.value.code == "validation_error"
    assert caught.value.message.startswith(named)


def test_a_project_override_is_the_fields_it_sets() -> None:
    override = parse_override({"artifact_retention_days": None, "target": "full"})
    assert override.to_json() == {"artifact_retention_days": None, "target": "full"}
    instance = RetentionSettings(Policy(artifact_retention_days=3, log_retention_days=9), 60, 1)
    assert effective_policy(instance, override, 5) == Policy(
        artifact_retention_days=None, log_retention_days=9, target=Target.FULL
    )
    assert effective_policy(None, None, 5) == Policy(artifact_retention_days=5)
    assert effective_policy(instance, None, 5) == instance.policy
    with pytest.raises(InvalidInput, match="cleanup_interval_secs"):
        parse_override({"cleanup_interval_secs": 60})  # the instance's alone
    with pytest.raises(InvalidInput, match="keep_last_builds"):
        parse_override({"keep_last_builds": 0})
    assert ProjectOverride().apply(instance.policy) == instance.policy


def test_artifacts_expire_after_the_retention_days() -> None:
    assert artifact_expiry(Policy(artifact_retention_days=2), 1000) == 1000 + 2 * 86400
    assert artifact_expiry(Policy(), 1000) is None


def test_the_next_run_follows_the_last_start_by_the_current_interval() -> None:
    last = CleanupReport(started_at=1000, finished_at=1002, duration_ms=1500)
    assert next_run_at(last, 3600, 50) == 4600
    assert next_run_at(last, 60, 50) == 1060
    assert next_run_at(None, 3600, 50) == 50


def test_a_report_with_errors_is_partial() -> None:
    clean = CleanupReport(1, 2, 3, artifacts_deleted=4, bytes_freed=5)
    assert clean.outcome == "ok"
    assert clean.to_json(99) == {
        "started_at": 1,
        "finished_at": 2,
        "duration_ms": 3,
        "artifacts_deleted": 4,
        "bytes_freed": 5,
        "builds_expired": 0,
        "builds_deleted": 0,
        "log_lines_deleted": 0,
        "errors": [],
        "next_run_at": 99,
    }
    assert CleanupReport(1, 2, 3, errors=("object kept",)).outcome == "partial"
