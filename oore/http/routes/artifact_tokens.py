"""Scoped download tokens and install links of artifacts (contract §7.2)."""

from __future__ import annotations

from pydantic import BaseModel
from quart import Blueprint, Response, jsonify
from quart_schema import document_response, security_scheme

from oore.errors import Gone, PreconditionFailed, ServiceUnavailable, Unauthorized, Unprocessable
from oore.http import shapes
from oore.http.body import Body, json_body
from oore.http.context import require_session, services
from oore.http.openapi import errors, raw_response

blueprint = Blueprint("artifact_tokens", __name__)

# What redeeming a scoped or install token may answer.
REDEEM_ERRORS = (
    Unauthorized("invalid_token"),
    Gone("artifact_expired"),
    ServiceUnavailable("storage_not_configured"),
)

MANIFEST_TYPE = "application/xml; charset=utf-8"


class ScopedTokenIn(Body):
    ttl_secs: int | None = None
    single_use: bool = False


class ScopedTokenOut(BaseModel):
    id: str
    download_url: str
    token: str
    prefix: str
    expires_at: int
    single_use: bool


class ScopedTokenListOut(BaseModel):
    tokens: list[shapes.ArtifactToken]


class RevokedOut(BaseModel):
    revoked: bool


class InstallLinkOut(BaseModel):
    platform: str
    install_url: str
    download_url: str
    manifest_url: str | None = None
    expires_at: int


@blueprint.post("/v1/artifacts/<artifact_id>/scoped-token")
@security_scheme([{"bearer": []}])
@json_body(ScopedTokenIn, optional=True)
@document_response(ScopedTokenOut)
@errors(Gone("artifact_expired"))
async def create_scoped_token(artifact_id: str, body: ScopedTokenIn) -> Response:
    """A bearer download link (default 24 h, 60 s..7 d), optionally single use; the token
    is shown only here."""
    session = await require_session()
    minted = await services().artifact_tokens.create(
        session, artifact_id, ttl_secs=body.ttl_secs, single_use=body.single_use
    )
    return jsonify(minted.to_json())


@blueprint.get("/v1/artifacts/<artifact_id>/scoped-tokens")
@security_scheme([{"bearer": []}])
@document_response(ScopedTokenListOut)
async def list_scoped_tokens(artifact_id: str) -> Response:
    """The artifact's scoped tokens, newest first (prefixes only)."""
    session = await require_session()
    found = await services().artifact_tokens.tokens_of(session, artifact_id)
    return jsonify(found.to_json())


@blueprint.delete("/v1/artifact-tokens/<token_id>")
@security_scheme([{"bearer": []}])
@document_response(RevokedOut)
async def revoke_token(token_id: str) -> Response:
    """Revoke a scoped or install token (idempotent); others' tokens need owner or admin."""
    session = await require_session()
    await services().artifact_tokens.revoke(session, token_id)
    return jsonify({"revoked": True})


@blueprint.get("/install/artifact/<token>")
@raw_response(
    307, "Redirect to a fresh 15-minute download URL", headers={"Location": "The download URL"}
)
@errors(*REDEEM_ERRORS)
async def redeem(token: str) -> Response:
    """Redeem a scoped or install token: 307 to the artifact's bytes."""
    return await _redirect(token)


@blueprint.get("/v1/artifacts/dl/<token>")
@raw_response(
    307, "Redirect to a fresh 15-minute download URL", headers={"Location": "The download URL"}
)
@errors(*REDEEM_ERRORS)
async def redeem_alias(token: str) -> Response:
    """The same as ``/install/artifact/{token}``."""
    return await _redirect(token)


async def _redirect(token: str) -> Response:
    url = await services().artifact_tokens.redeem(token)
    response = Response(b"", status=307, headers={"Location": url})
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.post("/v1/artifacts/<artifact_id>/install-link")
@security_scheme([{"bearer": []}])
@document_response(InstallLinkOut)
@errors(
    Gone("artifact_expired"),
    Unprocessable("artifact_not_installable"),
    PreconditionFailed("external_access_required"),
    PreconditionFailed("external_access_invalid"),
    PreconditionFailed("ios_install_requires_https"),
)
async def install_link(artifact_id: str) -> Response:
    """An install link for an apk or ipa, valid up to one hour."""
    session = await require_session()
    link = await services().artifact_tokens.install_link(session, artifact_id)
    return jsonify(link.to_json())


@blueprint.get("/install/ios/<token>/manifest.plist")
@raw_response(200, "The itms-services manifest", "application/xml")
@errors(
    Unauthorized("invalid_token"),
    Gone("artifact_expired"),
    Unprocessable("artifact_not_installable"),
)
async def ios_manifest(token: str) -> Response:
    """The over-the-air install manifest of an ipa behind an install token."""
    return await _manifest(token)


@blueprint.get("/v1/artifacts/install/ios/<token>/manifest.plist")
@raw_response(200, "The itms-services manifest", "application/xml")
@errors(
    Unauthorized("invalid_token"),
    Gone("artifact_expired"),
    Unprocessable("artifact_not_installable"),
)
async def ios_manifest_alias(token: str) -> Response:
    """The same as ``/install/ios/{token}/manifest.plist``."""
    return await _manifest(token)


async def _manifest(token: str) -> Response:
    body = await services().artifact_tokens.ios_manifest(token)
    response = Response(body, status=200, content_type=MANIFEST_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response
