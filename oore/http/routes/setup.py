"""Setup API: status and bootstrap-token verification (contract §2.2)."""

from __future__ import annotations

from pydantic import BaseModel
from quart import Blueprint, Response, jsonify
from quart_schema import document_response

from oore.http.body import Body, json_body
from oore.http.context import client_ip, services

blueprint = Blueprint("setup", __name__)


class SetupStatusOut(BaseModel):
    instance_id: str
    state: str
    runtime_mode: str
    remote_auth_mode: str
    setup_mode: bool
    is_configured: bool


class VerifyBootstrapIn(Body):
    token: str


class SetupSessionOut(BaseModel):
    session_token: str
    expires_at: int


@blueprint.get("/v1/public/setup-status")
@document_response(SetupStatusOut)
async def setup_status() -> Response:
    """Where first-run setup stands."""
    status = await services().identity.setup_status()
    return jsonify(status.to_json())


@blueprint.post("/v1/setup/bootstrap-token/verify")
@json_body(VerifyBootstrapIn)
@document_response(SetupSessionOut)
async def verify_bootstrap(body: VerifyBootstrapIn) -> Response:
    """Exchange the out-of-band bootstrap token for a 30-minute setup session."""
    issued = await services().identity.verify_bootstrap_token(body.token, client_ip())
    return jsonify({"session_token": issued.token, "expires_at": issued.expires_at})
