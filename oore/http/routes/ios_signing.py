"""iOS signing of a pipeline (contract §2.6, §8.3); every route needs ``manage_pipelines``.

* ``GET /v1/pipelines/{id}/ios-signing`` → the signing (defaults when never configured):
  flags for the secrets (``has_p12``, ``has_p12_password``, ``has_api_key``), never values.
* ``PUT`` the same path with any of ``{enabled, mode, team_id, export_method, bundle_ids,
  p12: {p12_filename, p12_base64, p12_password}, provisioning_profiles: [{bundle_id,
  profile_filename, profile_base64}], api_key: {key_id, issuer_id, private_key_base64}}``:
  omitted or blank values keep the stored ones; given profiles replace the stored one of
  their bundle id; new ``bundle_ids`` drop the profiles of bundle ids no longer listed.
  Binary material is standard base64 (padded or not); the API key is the ``.p8`` file in
  base64 (or its PEM text). Errors: 400 ``invalid_input`` (bad base64, a part over its
  limit — P12 2 MiB, profile 2 MiB, key 16 KiB —, a bad team id, bundle id, mode or
  export method), 400 ``invalid_filename`` (a file name with directories), 400
  ``incomplete_signing_profile`` (enabled without what the mode needs: manual — team id,
  P12, password and a profile per bundle id; api — API key, team id, bundle ids; hybrid —
  both), 413 ``payload_too_large`` (a body over 10 MiB).
* ``POST .../ios-signing/sync`` → the signing plus ``synced`` (bundle ids whose newest
  active, unexpired profile fitting the export method was fetched from App Store Connect
  and stored) and ``missing`` (bundle ids Apple has no such profile for). Needs the API
  key and bundle ids (else 400 ``incomplete_signing_profile``).
* ``GET .../ios-signing/devices`` → ``{devices: [{id, name, udid, platform, status,
  model?}]}``, the team's registered devices.
* ``POST .../ios-signing/devices/register`` ``{name, udid, platform?: "IOS"|"MAC_OS"}`` →
  201 ``{device}``; 400 ``invalid_input`` (name 1..128, UDID 1..64 letters, digits and
  dashes), 409 ``device_already_registered``.

App Store Connect failing, unreachable or answering nonsense is 502 ``apple_api_error``
with Apple's error detail.
"""

from __future__ import annotations

from pydantic import BaseModel
from quart import Blueprint, Response, jsonify
from quart_schema import document_response, security_scheme

from oore.errors import BadGateway, Conflict
from oore.http.body import Body, json_body
from oore.http.context import require_session, services
from oore.http.openapi import errors

blueprint = Blueprint("ios_signing", __name__)


class P12In(Body):
    """The signing certificate: the ``.p12`` file in base64 and its password."""

    p12_filename: str | None = None
    p12_base64: str | None = None
    p12_password: str | None = None


class ProfileIn(Body):
    """A provisioning profile (``.mobileprovision``) for one bundle id, in base64."""

    bundle_id: str
    profile_filename: str
    profile_base64: str


class ApiKeyIn(Body):
    """An App Store Connect API key: its id, the issuer id and the ``.p8`` file in base64."""

    key_id: str | None = None
    issuer_id: str | None = None
    private_key_base64: str | None = None


class IosSigningIn(Body):
    """What to change; omitted or blank values keep the stored ones."""

    enabled: bool | None = None
    mode: str | None = None  # manual | api | hybrid
    team_id: str | None = None
    export_method: str | None = None  # ad_hoc | app_store | development | enterprise
    bundle_ids: list[str] | None = None
    p12: P12In | None = None
    provisioning_profiles: list[ProfileIn] | None = None
    api_key: ApiKeyIn | None = None


class ProfileOut(BaseModel):
    bundle_id: str
    profile_filename: str
    checksum: str  # SHA-256 of the profile, hex
    profile_uuid: str | None = None
    profile_name: str | None = None
    expires_at: int | None = None


class IosSigningOut(BaseModel):
    """Optional fields are omitted when unset."""

    pipeline_id: str
    enabled: bool
    mode: str
    team_id: str | None = None
    export_method: str
    bundle_ids: list[str]
    has_p12: bool
    p12_filename: str | None = None
    p12_checksum: str | None = None
    has_p12_password: bool
    provisioning_profiles: list[ProfileOut]
    has_api_key: bool
    api_key_id: str | None = None
    api_issuer_id: str | None = None
    last_synced_at: int | None = None
    updated_at: int | None = None


class IosSyncOut(IosSigningOut):
    synced: list[str]
    missing: list[str]


class DeviceOut(BaseModel):
    id: str
    name: str
    udid: str
    platform: str  # IOS | MAC_OS
    status: str  # ENABLED | DISABLED
    model: str | None = None


class DeviceListOut(BaseModel):
    devices: list[DeviceOut]


class DeviceIn(Body):
    name: str
    udid: str
    platform: str | None = None  # IOS (default) | MAC_OS


class RegisteredDeviceOut(BaseModel):
    device: DeviceOut


@blueprint.get("/v1/pipelines/<pipeline_id>/ios-signing")
@security_scheme([{"bearer": []}])
@document_response(IosSigningOut)
async def get_ios_signing(pipeline_id: str) -> Response:
    """The pipeline's iOS signing, without secret values."""
    session = await require_session()
    return jsonify(await services().ios_signing.get(session, pipeline_id))


@blueprint.put("/v1/pipelines/<pipeline_id>/ios-signing")
@security_scheme([{"bearer": []}])
@json_body(IosSigningIn)
@document_response(IosSigningOut)
async def put_ios_signing(pipeline_id: str, body: IosSigningIn) -> Response:
    """Change the pipeline's iOS signing (body up to 10 MiB)."""
    session = await require_session()
    return jsonify(
        await services().ios_signing.put(session, pipeline_id, body.model_dump(exclude_none=True))
    )


@blueprint.post("/v1/pipelines/<pipeline_id>/ios-signing/sync")
@security_scheme([{"bearer": []}])
@document_response(IosSyncOut)
@errors(BadGateway("apple_api_error"))
async def sync_ios_signing(pipeline_id: str) -> Response:
    """Fetch and store the newest provisioning profiles from App Store Connect."""
    session = await require_session()
    return jsonify(await services().ios_signing.sync(session, pipeline_id))


@blueprint.get("/v1/pipelines/<pipeline_id>/ios-signing/devices")
@security_scheme([{"bearer": []}])
@document_response(DeviceListOut)
@errors(BadGateway("apple_api_error"))
async def list_ios_devices(pipeline_id: str) -> Response:
    """The devices registered with Apple on the API key's team."""
    session = await require_session()
    found = await services().ios_signing.devices(session, pipeline_id)
    return jsonify({"devices": [device.to_json() for device in found]})


@blueprint.post("/v1/pipelines/<pipeline_id>/ios-signing/devices/register")
@security_scheme([{"bearer": []}])
@json_body(DeviceIn)
@document_response(RegisteredDeviceOut, 201)
@errors(BadGateway("apple_api_error"), Conflict("device_already_registered"))
async def register_ios_device(pipeline_id: str, body: DeviceIn) -> tuple[Response, int]:
    """Register a device with Apple (for ad-hoc and development profiles)."""
    session = await require_session()
    device = await services().ios_signing.register_device(
        session, pipeline_id, body.name, body.udid, body.platform
    )
    return jsonify({"device": device.to_json()}), 201
