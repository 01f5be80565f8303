"""Projects API and project members (contract §2.5)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from quart import Blueprint, Response, jsonify
from quart_schema import document_response, security_scheme

from oore.domain.users import Session
from oore.errors import Conflict, InternalError
from oore.http import shapes
from oore.http.body import Body, json_body
from oore.http.context import AppServices, require_session, services
from oore.http.openapi import errors
from oore.http.query import (
    QueryArgs,
    choice,
    current_query,
    direction,
    page_params,
    query,
    text,
)
from oore.http.routes.auth import OkOut
from oore.services.projects import ProjectInput, ProjectPatch, ProjectQuery

blueprint = Blueprint("projects", __name__)

PROJECT_SORTS = ("created_at", "updated_at", "name")
PAGE_DEFAULT = 50
PAGE_MAX = 200


class ProjectIn(Body):
    name: str
    description: str | None = None
    repository_id: str | None = None
    local_repository_path: str | None = None
    default_branch: str | None = None


class ProjectPatchIn(Body):
    name: str | None = None
    description: str | None = None
    repository_id: str | None = None
    default_branch: str | None = None
    settings: dict[str, Any] | None = None


class MemberIn(Body):
    user_id: str
    role: str


class MemberPatchIn(Body):
    role: str


class ProjectOut(BaseModel):
    project: shapes.Project


class ProjectDetailOut(BaseModel):
    project: shapes.Project
    pipeline_count: int
    build_count: int
    current_user_role: str


class ProjectListOut(BaseModel):
    projects: list[shapes.Project]
    total: int


class MemberOut(BaseModel):
    member: shapes.Member


class MemberListOut(BaseModel):
    members: list[shapes.Member]
    total: int


class CandidateListOut(BaseModel):
    candidates: list[shapes.Candidate]
    total: int


@blueprint.get("/v1/projects")
@security_scheme([{"bearer": []}])
@document_response(ProjectListOut)
@query(
    page_params(default=PAGE_DEFAULT, maximum=PAGE_MAX),
    text("search", "Only projects whose name contains this"),
    text("integration_id", "Only projects of this integration"),
    choice("sort", PROJECT_SORTS, "Sort key (default created_at)"),
    direction(),
)
async def list_projects() -> Response:
    """Projects the caller may see (members only, unless owner or admin)."""
    session = await require_session()
    return jsonify(await project_list(services(), session, current_query()))


async def project_list(app: AppServices, session: Session, args: QueryArgs) -> dict[str, Any]:
    """The answer of ``GET /v1/projects`` (also served by the lean listener)."""
    page = args.page(default=PAGE_DEFAULT, maximum=PAGE_MAX)
    query = ProjectQuery(
        limit=page.limit,
        offset=page.offset,
        search=args.text("search"),
        integration_id=args.text("integration_id"),
        sort=args.choice("sort") or "created_at",
        descending=(args.choice("direction") or "desc") == "desc",
    )
    found, total = await app.projects.page(session, query)
    return {"projects": [item.project.to_json(item.role) for item in found], "total": total}


@blueprint.post("/v1/projects")
@security_scheme([{"bearer": []}])
@json_body(ProjectIn)
@document_response(ProjectOut, 201)
async def create_project(body: ProjectIn) -> tuple[Response, int]:
    """Create a project from a known repository or a local git repository (owner/admin)."""
    session = await require_session()
    created = await services().projects.create(
        session,
        ProjectInput(
            name=body.name,
            description=body.description,
            repository_id=body.repository_id,
            local_repository_path=body.local_repository_path,
            default_branch=body.default_branch,
        ),
    )
    project = created.project.to_json(created.role, repository_fields=False)
    return jsonify({"project": project}), 201


@blueprint.get("/v1/projects/<project_id>")
@security_scheme([{"bearer": []}])
@document_response(ProjectDetailOut)
async def get_project(project_id: str) -> Response:
    """One project with its pipeline and build counts and the caller's role."""
    session = await require_session()
    detail = await services().projects.detail(session, project_id)
    return jsonify(
        {
            "project": detail.project.to_json(detail.role),
            "pipeline_count": detail.pipeline_count,
            "build_count": detail.build_count,
            "current_user_role": detail.role.value,
        }
    )


@blueprint.patch("/v1/projects/<project_id>")
@security_scheme([{"bearer": []}])
@json_body(ProjectPatchIn)
@document_response(ProjectOut)
async def update_project(project_id: str, body: ProjectPatchIn) -> Response:
    """Change a project; null or absent fields stay as they are."""
    session = await require_session()
    updated = await services().projects.update(
        session,
        project_id,
        ProjectPatch(
            name=body.name,
            description=body.description,
            repository_id=body.repository_id,
            default_branch=body.default_branch,
            settings=body.settings,
        ),
    )
    return jsonify({"project": updated.project.to_json(updated.role)})


@blueprint.delete("/v1/projects/<project_id>")
@security_scheme([{"bearer": []}])
@document_response(OkOut)
@errors(Conflict("active_builds"), InternalError("storage_error"))
async def delete_project(project_id: str) -> Response:
    """Delete a project with its pipelines and finished builds."""
    session = await require_session()
    await services().projects.delete(session, project_id)
    return jsonify({"ok": True})


@blueprint.get("/v1/projects/<project_id>/members")
@security_scheme([{"bearer": []}])
@document_response(MemberListOut)
async def list_members(project_id: str) -> Response:
    """The project's membership rows (owner and admins are implicit maintainers)."""
    session = await require_session()
    members = await services().projects.members(session, project_id)
    return jsonify({"members": [m.to_json() for m in members], "total": len(members)})


@blueprint.get("/v1/projects/<project_id>/members/candidates")
@security_scheme([{"bearer": []}])
@document_response(CandidateListOut)
async def list_candidates(project_id: str) -> Response:
    """Developers and QA viewers, active or invited, who are not members yet."""
    session = await require_session()
    users = await services().projects.member_candidates(session, project_id)
    candidates = []
    for user in users:
        item: dict[str, Any] = {"id": user.id, "email": user.email}
        if user.display_name:
            item["display_name"] = user.display_name
        item["role"] = user.role.value
        item["status"] = user.status.value
        candidates.append(item)
    return jsonify({"candidates": candidates, "total": len(candidates)})


@blueprint.post("/v1/projects/<project_id>/members")
@security_scheme([{"bearer": []}])
@json_body(MemberIn)
@document_response(MemberOut, 201)
@errors(Conflict("already_member"))
async def add_member(project_id: str, body: MemberIn) -> tuple[Response, int]:
    """Give a developer or QA viewer a role on the project."""
    session = await require_session()
    member = await services().projects.add_member(session, project_id, body.user_id, body.role)
    return jsonify({"member": member.to_json()}), 201


@blueprint.patch("/v1/projects/<project_id>/members/<user_id>")
@security_scheme([{"bearer": []}])
@json_body(MemberPatchIn)
@document_response(MemberOut)
@errors(Conflict("last_maintainer"))
async def update_member(project_id: str, user_id: str, body: MemberPatchIn) -> Response:
    """Change a member's project role."""
    session = await require_session()
    member = await services().projects.set_member_role(session, project_id, user_id, body.role)
    return jsonify({"member": member.to_json()})


@blueprint.delete("/v1/projects/<project_id>/members/<user_id>")
@security_scheme([{"bearer": []}])
@document_response(OkOut)
@errors(Conflict("last_maintainer"))
async def remove_member(project_id: str, user_id: str) -> Response:
    """Remove a member from the project."""
    session = await require_session()
    await services().projects.remove_member(session, project_id, user_id)
    return jsonify({"ok": True})
