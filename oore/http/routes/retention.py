"""Retention API (contract §2.14): the instance's settings and its last cleanup run
(``instance_settings`` read/write: owner and admin), and each project's override (read:
project Read; write and delete: project Write).

Numbers are days (``keep_last_builds``: builds), at least 1, or null to keep forever;
``cleanup_interval_secs`` is at least 60. A value of the wrong type or out of range is
400 ``validation_error`` naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, WithJsonSchema
from quart import Blueprint, Response, jsonify
from quart_schema import document_response, security_scheme

from oore.http.body import Body, json_body
from oore.http.context import require_session, services

blueprint = Blueprint("retention", __name__)

# Checked by the retention rules, so a wrong type is 400 validation_error too; documented
# as what is accepted.
Days = Annotated[Any, WithJsonSchema({"type": ["integer", "null"], "minimum": 1})]
TargetIn = Annotated[Any, WithJsonSchema({"enum": ["artifacts_only", "full"]})]
Interval = Annotated[Any, WithJsonSchema({"type": "integer", "minimum": 60})]
Target = Literal["artifacts_only", "full"]


class RetentionIn(Body):
    """Fields left out keep their current values; null keeps forever."""

    artifact_retention_days: Days = None
    log_retention_days: Days = None
    build_retention_days: Days = None
    keep_last_builds: Days = None
    target: TargetIn = None
    cleanup_interval_secs: Interval = None


class ProjectRetentionIn(Body):
    """The project's whole override: fields left out follow the instance's settings;
    null keeps forever in this project."""

    artifact_retention_days: Days = None
    log_retention_days: Days = None
    build_retention_days: Days = None
    keep_last_builds: Days = None
    target: TargetIn = None


class PolicyOut(BaseModel):
    artifact_retention_days: int | None
    log_retention_days: int | None
    build_retention_days: int | None
    keep_last_builds: int | None
    target: Target


class RetentionSettingsOut(PolicyOut):
    cleanup_interval_secs: int
    source: Literal["database", "default"]
    updated_at: int | None = None


class RetentionOut(BaseModel):
    settings: RetentionSettingsOut


class CleanupOut(BaseModel):
    started_at: int
    finished_at: int
    duration_ms: int
    artifacts_deleted: int
    bytes_freed: int
    builds_expired: int
    builds_deleted: int
    log_lines_deleted: int
    errors: list[str]
    next_run_at: int


class LastCleanupOut(BaseModel):
    cleanup: CleanupOut | None


class OverrideOut(BaseModel):
    """Only the fields the project sets."""

    artifact_retention_days: int | None = None
    log_retention_days: int | None = None
    build_retention_days: int | None = None
    keep_last_builds: int | None = None
    target: Target | None = None


class ProjectRetentionOut(BaseModel):
    project_id: str
    settings: OverrideOut
    effective: PolicyOut
    inherited: bool


@blueprint.get("/v1/settings/retention")
@security_scheme([{"bearer": []}])
@document_response(RetentionOut)
async def get_retention() -> Response:
    """How long artifacts, logs and builds are kept, and how often the cleanup runs
    (owner/admin)."""
    session = await require_session()
    settings = await services().retention.view(session)
    return jsonify({"settings": settings.to_json()})


@blueprint.put("/v1/settings/retention")
@security_scheme([{"bearer": []}])
@json_body(RetentionIn)
@document_response(RetentionOut)
async def put_retention(body: RetentionIn) -> Response:
    """Change the instance's retention settings; the fields left out keep their values.
    Takes effect at the next run, which a new interval reschedules at once."""
    session = await require_session()
    fields = body.model_dump(exclude_unset=True)
    settings = await services().retention.update(session, fields)
    return jsonify({"settings": settings.to_json()})


@blueprint.get("/v1/settings/retention/last-cleanup")
@security_scheme([{"bearer": []}])
@document_response(LastCleanupOut)
async def get_last_cleanup() -> Response:
    """What the last cleanup run removed and when the next is due; null before any run."""
    session = await require_session()
    last = await services().retention.last_cleanup(session)
    return jsonify({"cleanup": last.to_json()})


@blueprint.get("/v1/projects/<project_id>/retention")
@security_scheme([{"bearer": []}])
@document_response(ProjectRetentionOut)
async def get_project_retention(project_id: str) -> Response:
    """The project's override and the policy in force for it."""
    session = await require_session()
    found = await services().retention.project(session, project_id)
    return jsonify(found.to_json())


@blueprint.put("/v1/projects/<project_id>/retention")
@security_scheme([{"bearer": []}])
@json_body(ProjectRetentionIn)
@document_response(ProjectRetentionOut)
async def put_project_retention(project_id: str, body: ProjectRetentionIn) -> Response:
    """Replace the project's override (maintainer); an empty one follows the instance."""
    session = await require_session()
    fields = body.model_dump(exclude_unset=True)
    found = await services().retention.update_project(session, project_id, fields)
    return jsonify(found.to_json())


@blueprint.delete("/v1/projects/<project_id>/retention")
@security_scheme([{"bearer": []}])
@document_response(ProjectRetentionOut)
async def delete_project_retention(project_id: str) -> Response:
    """Remove the project's override (maintainer): the instance's settings apply."""
    session = await require_session()
    found = await services().retention.delete_project(session, project_id)
    return jsonify(found.to_json())
