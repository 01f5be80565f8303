"""Variables and secrets of projects and pipelines.

``GET`` lists names, flags and plain values (never a secret's value); ``POST`` on the
collection (``{name, value, secret}``) and ``PUT`` on a name (``{value, secret}``)
create or replace one (201 when created, 200 when replaced); ``DELETE`` removes one.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, WithJsonSchema
from quart import Blueprint, Response, jsonify
from quart_schema import document_response, security_scheme

from oore.domain.variables import MAX_NAME_CHARS, MAX_VALUE_CHARS, NAME
from oore.errors import Conflict
from oore.http import shapes
from oore.http.body import Body, json_body
from oore.http.context import require_session, services
from oore.http.openapi import errors
from oore.http.routes.auth import OkOut

blueprint = Blueprint("variables", __name__)


# The variable rules check these (400 ``invalid_input``), so any JSON decodes; the
# document says what they accept.
NameIn = Annotated[
    Any,
    WithJsonSchema({"type": "string", "pattern": f"^{NAME.pattern}$", "maxLength": MAX_NAME_CHARS}),
]
ValueIn = Annotated[
    Any,
    WithJsonSchema({"type": "string", "pattern": "^[^\\u0000]*$", "maxLength": MAX_VALUE_CHARS}),
]
SecretIn = Annotated[Any, WithJsonSchema({"type": "boolean", "default": False})]


class VariableIn(Body):
    """Types are checked by the variable rules (400 ``invalid_input``)."""

    model_config = ConfigDict(json_schema_extra={"required": ["name", "value"]})

    name: NameIn = None
    value: ValueIn = None
    secret: SecretIn = False


class NamedVariableIn(Body):
    model_config = ConfigDict(json_schema_extra={"required": ["value"]})

    value: ValueIn = None
    secret: SecretIn = False


class VariableOut(BaseModel):
    variable: shapes.Variable


class VariableListOut(BaseModel):
    variables: list[shapes.Variable]


def _scope(kind: str, scope_id: str) -> dict[str, str]:
    return {"project_id": scope_id} if kind == "projects" else {"pipeline_id": scope_id}


async def _list(kind: str, scope_id: str) -> Response:
    session = await require_session()
    found = await services().variables.in_scope(session, **_scope(kind, scope_id))
    return jsonify({"variables": [variable.to_json() for variable in found]})


async def _put(kind: str, scope_id: str, body: dict[str, Any]) -> tuple[Response, int]:
    session = await require_session()
    variable, created = await services().variables.put(session, body, **_scope(kind, scope_id))
    return jsonify({"variable": variable.to_json()}), 201 if created else 200


async def _delete(kind: str, scope_id: str, name: str) -> Response:
    session = await require_session()
    await services().variables.delete(session, name, **_scope(kind, scope_id))
    return jsonify({"ok": True})


@blueprint.get("/v1/projects/<project_id>/variables")
@security_scheme([{"bearer": []}])
@document_response(VariableListOut)
async def list_project_variables(project_id: str) -> Response:
    """The project's variables; secrets without their values."""
    return await _list("projects", project_id)


@blueprint.post("/v1/projects/<project_id>/variables")
@security_scheme([{"bearer": []}])
@json_body(VariableIn)
@document_response(VariableOut)
@document_response(VariableOut, 201)
@errors(Conflict("too_many_variables"))
async def post_project_variable(project_id: str, body: VariableIn) -> tuple[Response, int]:
    """Create or replace a project variable (maintainer)."""
    return await _put("projects", project_id, body.model_dump())


@blueprint.put("/v1/projects/<project_id>/variables/<name>")
@security_scheme([{"bearer": []}])
@json_body(NamedVariableIn)
@document_response(VariableOut)
@document_response(VariableOut, 201)
@errors(Conflict("too_many_variables"))
async def put_project_variable(
    project_id: str, name: str, body: NamedVariableIn
) -> tuple[Response, int]:
    """Create or replace a project variable by name (maintainer)."""
    return await _put("projects", project_id, {**body.model_dump(), "name": name})


@blueprint.delete("/v1/projects/<project_id>/variables/<name>")
@security_scheme([{"bearer": []}])
@document_response(OkOut)
async def delete_project_variable(project_id: str, name: str) -> Response:
    """Delete a project variable (maintainer)."""
    return await _delete("projects", project_id, name)


@blueprint.get("/v1/pipelines/<pipeline_id>/variables")
@security_scheme([{"bearer": []}])
@document_response(VariableListOut)
async def list_pipeline_variables(pipeline_id: str) -> Response:
    """The pipeline's own variables (not the project's); secrets without their values."""
    return await _list("pipelines", pipeline_id)


@blueprint.post("/v1/pipelines/<pipeline_id>/variables")
@security_scheme([{"bearer": []}])
@json_body(VariableIn)
@document_response(VariableOut)
@document_response(VariableOut, 201)
@errors(Conflict("too_many_variables"))
async def post_pipeline_variable(pipeline_id: str, body: VariableIn) -> tuple[Response, int]:
    """Create or replace a pipeline variable (maintainer)."""
    return await _put("pipelines", pipeline_id, body.model_dump())


@blueprint.put("/v1/pipelines/<pipeline_id>/variables/<name>")
@security_scheme([{"bearer": []}])
@json_body(NamedVariableIn)
@document_response(VariableOut)
@document_response(VariableOut, 201)
@errors(Conflict("too_many_variables"))
async def put_pipeline_variable(
    pipeline_id: str, name: str, body: NamedVariableIn
) -> tuple[Response, int]:
    """Create or replace a pipeline variable by name (maintainer)."""
    return await _put("pipelines", pipeline_id, {**body.model_dump(), "name": name})


@blueprint.delete("/v1/pipelines/<pipeline_id>/variables/<name>")
@security_scheme([{"bearer": []}])
@document_response(OkOut)
async def delete_pipeline_variable(pipeline_id: str, name: str) -> Response:
    """Delete a pipeline variable (maintainer)."""
    return await _delete("pipelines", pipeline_id, name)
