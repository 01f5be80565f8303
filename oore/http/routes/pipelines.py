"""Pipelines API (contract §2.6)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from quart import Blueprint, Response, jsonify
from quart_schema import document_response, security_scheme

from oore.domain import pipeline_schema
from oore.domain.pipeline_schema import pipeline_file_schema
from oore.errors import Conflict
from oore.http import shapes
from oore.http.body import Body, json_body
from oore.http.context import require_session, services
from oore.http.openapi import errors, storeless
from oore.http.query import (
    choice,
    direction,
    page_params,
    query,
    query_choice,
    query_page,
    query_str,
    text,
)
from oore.http.routes.auth import OkOut
from oore.services.projects import PipelineInput, PipelineQuery

blueprint = Blueprint("pipelines", __name__)

PIPELINE_SORTS = ("created_at", "name")
PAGE_DEFAULT = 50
PAGE_MAX = 200


def _documented(schema: dict[str, Any]) -> WithJsonSchema:
    """Document a config part as its rules say (the rules, not pydantic, check it)."""
    return WithJsonSchema({"anyOf": [schema, {"type": "null"}]})


ExecutionConfigIn = Annotated[
    dict[str, Any] | None, _documented(pipeline_schema.execution_config_schema())
]
TriggerConfigIn = Annotated[
    dict[str, Any] | None, _documented(pipeline_schema.trigger_config_schema())
]
ConcurrencyIn = Annotated[dict[str, Any] | None, _documented(pipeline_schema.concurrency_schema())]
RunnerLabelsIn = Annotated[list[Any] | None, _documented(pipeline_schema.runner_labels_schema())]


class PipelineIn(Body):
    """The config parts are checked by the pipeline-config rules (400 ``invalid_*``)."""

    name: str
    config_path: str | None = None
    config_path_explicit: bool | None = None
    execution_config: ExecutionConfigIn = None
    trigger_config: TriggerConfigIn = None
    concurrency: ConcurrencyIn = None
    runner_labels: RunnerLabelsIn = None


class PipelinePatchIn(Body):
    name: str | None = None
    config_path: str | None = None
    config_path_explicit: bool | None = None
    execution_config: ExecutionConfigIn = None
    trigger_config: TriggerConfigIn = None
    concurrency: ConcurrencyIn = None
    runner_labels: RunnerLabelsIn = None
    enabled: bool | None = None


class ValidateIn(Body):
    """Any well-formed values are accepted; problems come back in ``errors``."""

    model_config = ConfigDict(extra="ignore")

    config_path: Any = None
    config_path_explicit: Any = None
    execution_config: Any = None
    trigger_config: Any = None
    concurrency: Any = None
    runner_labels: Any = None
    repository_yaml: Any = None


class PipelineOut(BaseModel):
    pipeline: shapes.Pipeline


class PipelineDetailOut(BaseModel):
    pipeline: shapes.Pipeline
    build_count: int


class PipelineListOut(BaseModel):
    pipelines: list[shapes.Pipeline]
    total: int


class ValidateOut(BaseModel):
    valid: bool
    errors: list[str]


class SchemaOut(BaseModel):
    """A JSON Schema (draft 2020-12)."""

    schema_: str = Field(alias="$schema")
    title: str
    type: Literal["object"]
    required: list[str]
    properties: dict[str, shapes.FreeObject] = Field(description="Each a JSON Schema")


@blueprint.get("/v1/projects/<project_id>/pipelines")
@security_scheme([{"bearer": []}])
@document_response(PipelineListOut)
@query(
    page_params(default=PAGE_DEFAULT, maximum=PAGE_MAX),
    text("search", "Only pipelines whose name contains this"),
    choice("sort", PIPELINE_SORTS, "Sort key (default created_at)"),
    direction(),
)
async def list_pipelines(project_id: str) -> Response:
    """The project's pipelines; env values are redacted for viewers."""
    session = await require_session()
    page = query_page(default=PAGE_DEFAULT, maximum=PAGE_MAX)
    query = PipelineQuery(
        limit=page.limit,
        offset=page.offset,
        search=query_str("search"),
        sort=query_choice("sort") or "created_at",
        descending=(query_choice("direction") or "desc") == "desc",
    )
    views, total = await services().projects.pipelines(session, project_id, query)
    return jsonify({"pipelines": [view.to_json() for view in views], "total": total})


@blueprint.post("/v1/projects/<project_id>/pipelines")
@security_scheme([{"bearer": []}])
@json_body(PipelineIn)
@document_response(PipelineOut, 201)
async def create_pipeline(project_id: str, body: PipelineIn) -> tuple[Response, int]:
    """Create a pipeline; omitted config parts get the documented defaults."""
    session = await require_session()
    pipeline = await services().projects.create_pipeline(
        session,
        project_id,
        PipelineInput(
            name=body.name,
            config_path=body.config_path,
            config_path_explicit=body.config_path_explicit,
            execution_config=body.execution_config,
            trigger_config=body.trigger_config,
            concurrency=body.concurrency,
            runner_labels=body.runner_labels,
        ),
    )
    return jsonify({"pipeline": pipeline.to_json()}), 201


@blueprint.post("/v1/pipelines/validate")
@security_scheme([{"bearer": []}])
@json_body(ValidateIn)
@document_response(ValidateOut)
async def validate(body: ValidateIn) -> Response:
    """Check pipeline settings and a repository ``.oore.yaml`` without saving anything."""
    session = await require_session()
    problems = await services().projects.validate_pipeline(session, body.model_dump())
    return jsonify({"valid": not problems, "errors": problems})


@blueprint.get("/v1/pipelines/schema")
@document_response(SchemaOut)
@storeless
async def schema() -> Response:
    """The JSON Schema of a repository's ``.oore.yaml`` (public: editors fetch it as is).

    ``POST /v1/pipelines/validate`` and the runner apply the same rules, and a few the
    schema cannot say: no key given twice, unique env keys and step names, 128 KiB.
    """
    return jsonify(pipeline_file_schema())


@blueprint.get("/v1/pipelines/<pipeline_id>")
@security_scheme([{"bearer": []}])
@document_response(PipelineDetailOut)
async def get_pipeline(pipeline_id: str) -> Response:
    """One pipeline and how many builds it has."""
    session = await require_session()
    view = await services().projects.pipeline_detail(session, pipeline_id)
    return jsonify({"pipeline": view.to_json(), "build_count": view.build_count or 0})


@blueprint.patch("/v1/pipelines/<pipeline_id>")
@security_scheme([{"bearer": []}])
@json_body(PipelinePatchIn)
@document_response(PipelineOut)
async def update_pipeline(pipeline_id: str, body: PipelinePatchIn) -> Response:
    """Change a pipeline; null or absent fields stay as they are."""
    session = await require_session()
    pipeline = await services().projects.update_pipeline(
        session,
        pipeline_id,
        PipelineInput(
            name=body.name,
            config_path=body.config_path,
            config_path_explicit=body.config_path_explicit,
            execution_config=body.execution_config,
            trigger_config=body.trigger_config,
            concurrency=body.concurrency,
            runner_labels=body.runner_labels,
            enabled=body.enabled,
        ),
    )
    return jsonify({"pipeline": pipeline.to_json()})


@blueprint.delete("/v1/pipelines/<pipeline_id>")
@security_scheme([{"bearer": []}])
@document_response(OkOut)
@errors(Conflict("active_builds"))
async def delete_pipeline(pipeline_id: str) -> Response:
    """Delete a pipeline and its finished builds (owner/admin)."""
    session = await require_session()
    await services().projects.delete_pipeline(session, pipeline_id)
    return jsonify({"ok": True})
