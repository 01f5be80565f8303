"""Settings API: artifact storage (contract §10.1), preferences (§10.2) and external
access without OIDC (§10.3)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel
from quart import Blueprint, Response, jsonify
from quart_schema import document_response, security_scheme

from oore.domain.artifact_storage import StorageProvider, StorageUpdate
from oore.domain.artifacts import blank_to_none
from oore.domain.setup import RemoteAuthMode, RuntimeMode
from oore.errors import Conflict
from oore.http import shapes
from oore.http.body import Body, json_body
from oore.http.context import client_ip, require_session, services
from oore.http.openapi import errors

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
    settings: shapes.StorageSettings


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


class PreferencesIn(Body):
    key_storage_mode: Literal["file", "keychain"]
    runtime_mode: Literal["local", "remote"] | None = None
    remote_auth_mode: Literal["oidc", "trusted_proxy"] | None = None
    direct_macos_runner_paused: bool | None = None


class PreferencesOut(BaseModel):
    preferences: shapes.Preferences


class NetworkIn(Body):
    public_url: str | None = None
    artifact_delivery_url: str | None = None
    allowed_origins: list[str]


class NetworkOut(BaseModel):
    settings: shapes.NetworkSettings


class TrustedProxyIn(Body):
    user_email_header: str | None = None
    trusted_proxy_cidrs: list[str] | None = None
    shared_secret: str | None = None
    warpgate_ticket: str | None = None


class TrustedProxyOut(BaseModel):
    settings: shapes.TrustedProxySettings


class PreflightOut(BaseModel):
    ready: bool
    checks: list[shapes.PreflightCheck]


@blueprint.get("/v1/settings/preferences")
@security_scheme([{"bearer": []}])
@document_response(PreferencesOut)
async def get_preferences() -> Response:
    """Runtime mode, remote sign-in method and the macOS runner claim pause (owner/admin)."""
    session = await require_session()
    prefs = await services().instance_settings.preferences(session)
    return jsonify({"preferences": prefs.to_json()})


@blueprint.put("/v1/settings/preferences")
@security_scheme([{"bearer": []}])
@json_body(PreferencesIn)
@document_response(PreferencesOut)
@errors(Conflict("preferences_changed"))
async def put_preferences(body: PreferencesIn) -> Response:
    """Change preferences; a sign-in policy change is the owner's, must pass the preflight
    when it enables remote mode, and ends every session."""
    session = await require_session()
    prefs = await services().instance_settings.update_preferences(
        session,
        key_storage_mode=body.key_storage_mode,
        runtime_mode=None if body.runtime_mode is None else RuntimeMode(body.runtime_mode),
        remote_auth_mode=None
        if body.remote_auth_mode is None
        else RemoteAuthMode(body.remote_auth_mode),
        direct_macos_runner_paused=body.direct_macos_runner_paused,
        client_ip=client_ip(),
    )
    return jsonify({"preferences": prefs.to_json()})


@blueprint.get("/v1/settings/external-access/network")
@security_scheme([{"bearer": []}])
@document_response(NetworkOut)
async def get_network() -> Response:
    """The public URL, artifact delivery URL and CORS allowlist in force, and their source."""
    session = await require_session()
    return jsonify({"settings": services().instance_settings.network(session)})


@blueprint.put("/v1/settings/external-access/network")
@security_scheme([{"bearer": []}])
@json_body(NetworkIn)
@document_response(NetworkOut)
async def put_network(body: NetworkIn) -> Response:
    """Save the network settings (owner); they take effect at once."""
    session = await require_session()
    settings = await services().instance_settings.update_network(
        session,
        public_url=body.public_url,
        artifact_delivery_url=body.artifact_delivery_url,
        allowed_origins=body.allowed_origins,
        client_ip=client_ip(),
    )
    return jsonify({"settings": settings})


@blueprint.get("/v1/settings/external-access/trusted-proxy")
@security_scheme([{"bearer": []}])
@document_response(TrustedProxyOut)
async def get_trusted_proxy() -> Response:
    """The trusted-proxy settings; secrets are never shown, only whether a shared secret
    and a Warpgate ticket are held (``warpgate_ticket_source``: database or environment)."""
    session = await require_session()
    settings = await services().instance_settings.trusted_proxy(session)
    return jsonify({"settings": settings.to_json()})


@blueprint.put("/v1/settings/external-access/trusted-proxy")
@security_scheme([{"bearer": []}])
@json_body(TrustedProxyIn)
@document_response(TrustedProxyOut)
async def put_trusted_proxy(body: TrustedProxyIn) -> Response:
    """Replace the identity header and proxy networks (owner); an omitted shared secret or
    Warpgate ticket is kept, a blank one cleared; neither is ever shown."""
    session = await require_session()
    settings = await services().instance_settings.update_trusted_proxy(
        session,
        user_email_header=body.user_email_header,
        trusted_proxy_cidrs=body.trusted_proxy_cidrs,
        shared_secret=body.shared_secret,
        warpgate_ticket=body.warpgate_ticket,
        client_ip=client_ip(),
    )
    return jsonify({"settings": settings.to_json()})


@blueprint.get("/v1/settings/external-access/preflight")
@security_scheme([{"bearer": []}])
@document_response(PreflightOut)
async def get_preflight() -> Response:
    """Check by check: is this instance ready for remote mode?"""
    session = await require_session()
    preflight = await services().instance_settings.preflight(session)
    return jsonify(preflight.to_json())
