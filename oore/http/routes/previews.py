"""Previews before a build: a repository's pipeline files (contract §2.5) and the changelog
of the next build of a pipeline (§2.7)."""

from __future__ import annotations

from pydantic import BaseModel
from quart import Blueprint, Response, jsonify
from quart_schema import document_response, security_scheme

from oore.errors import BadGateway, Conflict, InternalError
from oore.http import shapes
from oore.http.context import require_session, services
from oore.http.openapi import errors
from oore.http.query import query, query_str, text

blueprint = Blueprint("previews", __name__)

# What a preview that reads the project's repository may answer.
SOURCE_ERRORS = (
    Conflict("source_not_configured"),
    Conflict("source_unresolvable"),
    BadGateway("github_api_error"),
    BadGateway("gitlab_api_error"),
    InternalError("git_error"),
)


class WorkflowOut(BaseModel):
    path: str
    valid: bool
    errors: list[str]
    config: shapes.WorkflowConfig | None = None  # omitted when the file is invalid


class RepositoryWorkflowsOut(BaseModel):
    ref: str
    commit_sha: str
    path: str | None
    workflows: list[WorkflowOut]
    truncated: bool


class ChangelogPreviewOut(BaseModel):
    base_commit: str | None = None  # omitted when the pipeline has no succeeded build
    target_commit: str
    markdown: str


@blueprint.get("/v1/projects/<project_id>/repository-workflows")
@security_scheme([{"bearer": []}])
@document_response(RepositoryWorkflowsOut)
@query(
    text("ref", "A branch, tag or commit (default: the default branch)"),
    text("path", "Only pipeline files at or under this path"),
)
@errors(*SOURCE_ERRORS)
async def repository_workflows(project_id: str) -> Response:
    """The pipeline files of the project's repository at a ref (``ref``, default branch by
    default) at or under ``path``, parsed, with every environment value hidden."""
    session = await require_session()
    preview = await services().previews.workflows(
        session, project_id, ref=query_str("ref"), path=query_str("path")
    )
    return jsonify(preview.to_json())


@blueprint.get("/v1/projects/<project_id>/builds/changelog-preview")
@security_scheme([{"bearer": []}])
@document_response(ChangelogPreviewOut)
@query(
    text("pipeline_id", "The pipeline whose last succeeded build is the base", required=True),
    text("branch", "Up to the head of this branch"),
    text("commit_sha", "Up to this commit"),
)
@errors(*SOURCE_ERRORS)
async def changelog_preview(project_id: str) -> Response:
    """The changes since the pipeline's last succeeded build, up to ``commit_sha`` or the
    head of ``branch``, as Markdown for a build's ``changelog``."""
    session = await require_session()
    preview = await services().previews.changelog(
        session,
        project_id,
        pipeline_id=query_str("pipeline_id"),
        branch=query_str("branch"),
        commit_sha=query_str("commit_sha"),
    )
    return jsonify(preview.to_json())
