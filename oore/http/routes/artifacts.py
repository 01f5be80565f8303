"""Artifacts API: runner reservations and uploads, user listings and downloads
(contract §6.5, §7.1, §7.2)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from pydantic import BaseModel, Field
from quart import Blueprint, Response, jsonify, request
from quart_schema import document_response, security_scheme
from quart_trio import QuartTrio

from oore.domain.artifacts import content_disposition
from oore.errors import (
    Conflict,
    Gone,
    InternalError,
    RangeNotSatisfiable,
    RequestTimeout,
    ServiceUnavailable,
    Unauthorized,
)
from oore.http import shapes
from oore.http.body import Body, json_body, raw_body
from oore.http.context import AppServices, require_runner, require_session, services
from oore.http.errors import error_response
from oore.http.openapi import errors, raw_response
from oore.http.query import integer, query_int
from oore.http.query import query as declare_query
from oore.http.ranges import Unsatisfiable, byte_range
from oore.http.uploads import ASGIApp, LocalUploads, upload_outcome

F = TypeVar("F", bound=Callable[..., Any])

blueprint = Blueprint("artifacts", __name__)


class ReserveIn(Body):
    name: str
    artifact_type: str
    file_size: int | None = None
    checksum: str | None = None
    metadata: Any = None


class FinishIn(Body):
    error_message: str | None = None


class QueryIn(Body):
    build_ids: list[str] = Field(default_factory=list)


class ReservationOut(BaseModel):
    artifact: shapes.Artifact
    upload_url: str


class ArtifactOut(BaseModel):
    artifact: shapes.Artifact


class ArtifactListOut(BaseModel):
    artifacts: list[shapes.Artifact]


class DownloadLinkOut(BaseModel):
    download_url: str
    expires_at: int


def install(app: QuartTrio, app_services: AppServices) -> None:
    """Register the blueprint and the streaming upload wrapper in front of the app."""
    app.register_blueprint(blueprint)
    wrapped = LocalUploads(cast(ASGIApp, app.asgi_app), app_services.artifacts)
    app.asgi_app = wrapped  # type: ignore[assignment,method-assign]


# -- runner side -------------------------------------------------------------------------


@blueprint.post("/v1/runners/<runner_id>/jobs/<build_id>/artifacts")
@security_scheme([{"bearer": []}])
@json_body(ReserveIn)
@document_response(ReservationOut)
@errors(ServiceUnavailable("storage_not_configured"))
async def reserve(runner_id: str, build_id: str, body: ReserveIn) -> Response:
    """Reserve an artifact upload; ``upload_url`` is empty for a known checksum or when
    storage is disabled."""
    runner = await require_runner(runner_id)
    reservation = await services().artifacts.reserve(
        runner,
        build_id,
        name=body.name,
        artifact_type=body.artifact_type,
        file_size=body.file_size,
        checksum=body.checksum,
        metadata=body.metadata,
    )
    return jsonify(
        {"artifact": reservation.artifact.to_json(), "upload_url": reservation.upload_url}
    )


@blueprint.post("/v1/runners/<runner_id>/jobs/<build_id>/artifacts/<artifact_id>/complete")
@security_scheme([{"bearer": []}])
@json_body(FinishIn, optional=True)
@document_response(ArtifactOut)
@errors(Conflict("artifact_not_pending"))
async def complete(runner_id: str, build_id: str, artifact_id: str, body: FinishIn) -> Response:
    """The bytes are uploaded: the artifact becomes available."""
    runner = await require_runner(runner_id)
    artifact = await services().artifacts.complete(runner, build_id, artifact_id)
    return jsonify({"artifact": artifact.to_json()})


@blueprint.post("/v1/runners/<runner_id>/jobs/<build_id>/artifacts/<artifact_id>/abort")
@security_scheme([{"bearer": []}])
@json_body(FinishIn, optional=True)
@document_response(ArtifactOut)
@errors(Conflict("artifact_not_pending"))
async def abort(runner_id: str, build_id: str, artifact_id: str, body: FinishIn) -> Response:
    """The upload failed: the artifact is failed with the runner's message."""
    runner = await require_runner(runner_id)
    artifact = await services().artifacts.abort(runner, build_id, artifact_id, body.error_message)
    return jsonify({"artifact": artifact.to_json()})


@blueprint.put("/v1/artifacts/local-upload/<token>")
@raw_body
@raw_response(200, "Stored (empty body)")
@errors(
    Unauthorized("invalid_upload_token"),
    RequestTimeout(),
    ServiceUnavailable("storage_not_configured"),
)
async def local_upload(token: str) -> Response:
    """The bytes of a reservation, at most 512 MiB (local storage; the URL is the token).

    The body itself is streamed to disk by :class:`~oore.http.uploads.LocalUploads`
    before this view runs; it reports what happened.
    """
    outcome = upload_outcome(request.scope)
    if outcome is None:
        raise InternalError("internal_error", "The upload was not streamed")
    if outcome.error is not None:
        raise outcome.error
    return Response(b"", status=200)


# -- user side ---------------------------------------------------------------------------


@blueprint.get("/v1/builds/<build_id>/artifacts")
@security_scheme([{"bearer": []}])
@document_response(ArtifactListOut)
async def build_artifacts(build_id: str) -> Response:
    """The build's available artifacts, oldest first."""
    session = await require_session()
    artifacts = await services().artifacts.for_build(session, build_id)
    return jsonify({"artifacts": [a.to_json() for a in artifacts]})


@blueprint.get("/v1/projects/<project_id>/artifacts")
@security_scheme([{"bearer": []}])
@document_response(ArtifactListOut)
@declare_query(
    integer("limit", "At most this many (default 200; above 200 counts as 200)", minimum=1)
)
async def project_artifacts(project_id: str) -> Response:
    """The project's available artifacts, newest first; ``limit`` 1..200 (default 200)."""
    session = await require_session()
    artifacts = await services().artifacts.for_project(session, project_id, query_int("limit"))
    return jsonify({"artifacts": [a.to_json() for a in artifacts]})


@blueprint.post("/v1/artifacts/query")
@security_scheme([{"bearer": []}])
@json_body(QueryIn)
@document_response(ArtifactListOut)
async def query(body: QueryIn) -> Response:
    """Available artifacts of up to 200 builds the caller may see, newest first."""
    session = await require_session()
    artifacts = await services().artifacts.query(session, body.build_ids)
    return jsonify({"artifacts": [a.to_json() for a in artifacts]})


@blueprint.post("/v1/artifacts/<artifact_id>/download-link")
@security_scheme([{"bearer": []}])
@document_response(DownloadLinkOut)
@errors(Gone("artifact_expired"), ServiceUnavailable("storage_not_configured"))
async def download_link(artifact_id: str) -> Response:
    """A download URL valid for 15 minutes (a presigned URL for S3 and R2)."""
    session = await require_session()
    link = await services().artifacts.download_link(session, artifact_id)
    return jsonify({"download_url": link.download_url, "expires_at": link.expires_at})


def _download_answers(view: F) -> F:
    """Documents what a local artifact download answers: its bytes, a range of them, or
    why not (the three routes that serve them answer alike)."""
    documented = errors(
        Unauthorized("invalid_token"),
        Gone("artifact_expired"),
        RangeNotSatisfiable(),
        ServiceUnavailable("storage_not_configured"),
    )(view)
    documented = raw_response(
        206,
        "The requested range of the artifact's bytes",
        "application/octet-stream",
        headers={"Content-Range": "Which bytes of the whole these are"},
    )(documented)
    return raw_response(200, "The artifact's bytes", "application/octet-stream")(documented)


@blueprint.get("/v1/artifacts/download/<token>")
@_download_answers
async def download(token: str) -> Response:
    """The bytes of a local artifact, streamed in 64 KiB chunks; honours one ``Range``."""
    return await _send(token)


@blueprint.get("/v1/artifacts/local-download/<token>")
@_download_answers
async def local_download(token: str) -> Response:
    """The same as ``/v1/artifacts/download/{token}``."""
    return await _send(token)


@blueprint.get("/install/download/<token>")
@_download_answers
async def install_download(token: str) -> Response:
    """The same as ``/v1/artifacts/download/{token}``; where redeemed scoped tokens lead."""
    return await _send(token)


async def _send(token: str) -> Response:
    found = await services().artifacts.local_download(token)
    wanted = byte_range(request.headers.get("Range"), found.size)
    if isinstance(wanted, Unsatisfiable):
        refused = error_response(RangeNotSatisfiable())
        refused.headers["Content-Range"] = wanted.content_range()
        return refused
    headers = {
        "Content-Disposition": content_disposition(found.filename),
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-store",
    }
    if wanted is None:
        status, start, length = 200, 0, found.size
    else:
        status, start, length = 206, wanted.start, wanted.length
        headers["Content-Range"] = wanted.content_range()
    response = Response(
        found.chunks(start, length),
        status=status,
        headers=headers,
        mimetype="application/octet-stream",
    )
    response.headers["Content-Length"] = str(length)
    response.timeout = None  # a large file may take longer than the default 60 s
    return response
