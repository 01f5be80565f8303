"""Settings API: artifact storage (contract §10.1)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from quart import Blueprint, Response, jsonify
from quart_schema import document_response, security_scheme

from oore.domain.artifact_storage import StorageProvider, StorageUpdate
from oore.domain.artifacts import blank_to_none
from oore.http.body import Body, json_body
from oore.http.context import require_session, services

blueprint = Blueprint("settings", __name__)


class ArtifactStorageIn(Body):
    provider: Literal["disabled", "local", "s3", "r2"]
    local_base_dir: str | None = None
    s3_bucket: str | None = None
    s3_region: str | None = None
    s3_endpoint: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None


class ArtifactStorageOut(BaseModel):
    settings: dict[str, Any]


@blueprint.get("/v1/settings/artifact-storage")
@security_scheme([{"bearer": []}])
@document_response(ArtifactStorageOut)
async def get_artifact_storage() -> Response:
    """Where artifacts are kept and where that setting comes from (owner/admin)."""
    session = await require_session()
    view = await services().artifact_storage.view(session)
    return jsonify({"settings": view.to_json()})


@blueprint.put("/v1/settings/artifact-storage")
@security_scheme([{"bearer": []}])
@json_body(ArtifactStorageIn)
@document_response(ArtifactStorageOut)
async def put_artifact_storage(body: ArtifactStorageIn) -> Response:
    """Choose disabled, local, S3 or R2 storage; S3 keys are kept encrypted and may be
    omitted later to keep them. Takes effect at once."""
    session = await require_session()
    update = StorageUpdate(
        provider=StorageProvider(body.provider),
        local_base_dir=blank_to_none(body.local_base_dir),
        s3_bucket=blank_to_none(body.s3_bucket),
        s3_region=blank_to_none(body.s3_region),
        s3_endpoint=blank_to_none(body.s3_endpoint),
        access_key_id=blank_to_none(body.access_key_id),
        secret_access_key=blank_to_none(body.secret_access_key),
    )
    view = await services().artifact_storage.update(session, update)
    return jsonify({"settings": view.to_json()})
