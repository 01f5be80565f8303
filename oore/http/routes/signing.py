"""Build signing material of pipelines (contract §8.3), and its runner side (§5.6).

``GET``/``PUT /v1/pipelines/{id}/android-signing`` show and change the ``debug`` and
``release`` profiles (``manage_pipelines``): secret parts are only ever answered as flags.
``GET /v1/runners/{r}/jobs/{b}/android-signing`` and ``.../ios-signing`` hand the enabled
material in clear to the runner holding the build, with the claim's signing token in
``X-Oore-Signing-Token``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from quart import Blueprint, Response, jsonify, request
from quart_schema import document_headers, document_response, security_scheme

from oore.domain.signing import (
    SIGNING_TOKEN_HEADER,
    AndroidBuildType,
    AndroidProfileChange,
    check_android_change,
)
from oore.errors import Conflict, Unauthorized
from oore.http.body import Body, json_body
from oore.http.context import require_runner, require_session, services
from oore.http.openapi import errors

blueprint = Blueprint("signing", __name__)


class AndroidProfileIn(Body):
    """Omitted or blank parts keep their stored values."""

    enabled: bool | None = None
    keystore_filename: str | None = None
    keystore_base64: str | None = None
    store_password: str | None = None
    key_alias: str | None = None
    key_password: str | None = None


class AndroidSigningIn(Body):
    """At least one profile (400 ``invalid_input``)."""

    debug: AndroidProfileIn | None = None
    release: AndroidProfileIn | None = None


class AndroidProfileOut(BaseModel):
    build_type: str
    enabled: bool
    has_keystore: bool
    keystore_filename: str | None = None
    keystore_checksum: str | None = None
    key_alias: str | None = None
    has_store_password: bool
    has_key_password: bool
    updated_at: int | None = None


class AndroidSigningOut(BaseModel):
    pipeline_id: str
    debug: AndroidProfileOut
    release: AndroidProfileOut


class AndroidMaterialOut(BaseModel):
    build_type: str
    enabled: bool
    keystore_filename: str
    keystore_base64: str
    store_password: str
    key_alias: str
    key_password: str


class RunnerAndroidSigningOut(BaseModel):
    """The enabled profiles only."""

    debug: AndroidMaterialOut | None = None
    release: AndroidMaterialOut | None = None


class IosProfileMaterialOut(BaseModel):
    bundle_id: str
    profile_filename: str
    profile_base64: str
    profile_uuid: str | None = None
    profile_name: str | None = None


class IosMaterialOut(BaseModel):
    """The P12 parts are null when none was uploaded (``api`` mode)."""

    enabled: bool
    mode: str
    team_id: str | None
    export_method: str
    p12_filename: str | None
    p12_base64: str | None
    p12_password: str | None
    provisioning_profiles: list[IosProfileMaterialOut]


class RunnerIosSigningOut(BaseModel):
    """``bundle`` only when iOS signing is enabled."""

    bundle: IosMaterialOut | None = None


class SigningGrantHeaders(BaseModel):
    x_oore_signing_token: str | None = None


def _change(profile: AndroidProfileIn) -> AndroidProfileChange:
    return check_android_change(**profile.model_dump())


@blueprint.get("/v1/pipelines/<pipeline_id>/android-signing")
@security_scheme([{"bearer": []}])
@document_response(AndroidSigningOut)
async def get_android_signing(pipeline_id: str) -> Response:
    """The pipeline's Android signing profiles (secrets as ``has_*`` flags)."""
    session = await require_session()
    signing = await services().signing.android(session, pipeline_id)
    return jsonify(signing.to_json())


@blueprint.put("/v1/pipelines/<pipeline_id>/android-signing")
@security_scheme([{"bearer": []}])
@json_body(AndroidSigningIn)
@document_response(AndroidSigningOut)
async def put_android_signing(pipeline_id: str, body: AndroidSigningIn) -> Response:
    """Change the profiles given; a keystore is base64 of at most 5 MiB (400
    ``invalid_keystore``); enabling needs all five parts (400 ``incomplete_signing_profile``)."""
    session = await require_session()
    changes: dict[AndroidBuildType, AndroidProfileChange] = {}
    if body.debug is not None:
        changes["debug"] = _change(body.debug)
    if body.release is not None:
        changes["release"] = _change(body.release)
    signing = await services().signing.set_android(session, pipeline_id, changes)
    return jsonify(signing.to_json())


@blueprint.get("/v1/runners/<runner_id>/jobs/<build_id>/android-signing")
@security_scheme([{"bearer": []}])
@document_headers(SigningGrantHeaders)
@document_response(RunnerAndroidSigningOut)
@errors(Unauthorized("invalid_signing_grant"), Conflict("job_not_active"))
async def runner_android_signing(runner_id: str, build_id: str) -> Response:
    """The enabled Android profiles, in clear, for the runner holding the build."""
    runner = await require_runner(runner_id)
    material = await services().signing.android_for_runner(
        runner, build_id, request.headers.get(SIGNING_TOKEN_HEADER)
    )
    answer: dict[str, Any] = {profile.build_type: profile.to_json() for profile in material}
    return jsonify(answer)


@blueprint.get("/v1/runners/<runner_id>/jobs/<build_id>/ios-signing")
@security_scheme([{"bearer": []}])
@document_headers(SigningGrantHeaders)
@document_response(RunnerIosSigningOut)
@errors(Unauthorized("invalid_signing_grant"), Conflict("job_not_active"))
async def runner_ios_signing(runner_id: str, build_id: str) -> Response:
    """The iOS signing material, in clear, for the runner holding the build (``{}`` when
    iOS signing is not enabled); the grant is checked as for ``android-signing``."""
    runner = await require_runner(runner_id)
    app = services()
    build = await app.signing.runner_grant(
        runner, build_id, request.headers.get(SIGNING_TOKEN_HEADER)
    )
    material = await app.ios_signing.runner_material(build.pipeline_id)
    return jsonify(material or {})
