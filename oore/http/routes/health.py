"""``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from quart import Blueprint, Response, jsonify
from quart_schema import document_response

from oore.http.context import services
from oore.http.metrics import Metrics
from oore.http.openapi import raw_response, storeless


class Health(BaseModel):
    version: str
    channel: str | None
    github_repo: str | None
    package_version: str
    ok: bool


class Ready(BaseModel):
    ok: bool
    database: bool
    migrations: bool
    encryption: bool


def blueprint(metrics: Metrics) -> Blueprint:
    bp = Blueprint("health", __name__)

    @bp.get("/healthz")
    @document_response(Health)
    @storeless
    async def healthz() -> Response:
        """Liveness: the process answers.

        It stays 200 while the database is away: the process is fine and recovering by
        itself (it restarts the embedded server, reconnects to an external one), so a
        supervisor restarting it would only lose the live state it keeps meanwhile
        (parked claims, log viewers). ``/readyz`` is the one that says not ready then.
        """
        version = services().version
        return jsonify(
            {
                "version": version,
                "channel": None,
                "github_repo": None,
                "package_version": version,
                "ok": True,
            }
        )

    @bp.get("/readyz")
    @document_response(Ready, 200)
    @document_response(Ready, 503)
    async def readyz() -> Response:
        """Readiness: the database answers, its schema is current, and secrets can be
        encrypted (``encryption``: a 32-byte key is loaded).

        503 with ``database: false`` during a database outage, from its first failed
        query or check until the database answers again. A daemon always holds a key (it
        refuses to start with a key file of the wrong size); an app built without one
        answers ``encryption: false`` and 503, since it could not store a secret.
        """
        app = services()
        state = await app.database.readiness()
        encryption = app.identity.can_encrypt
        ok = state.database and state.migrations and encryption
        response = jsonify(
            {
                "ok": ok,
                "database": state.database,
                "migrations": state.migrations,
                "encryption": encryption,
            }
        )
        response.status_code = 200 if ok else 503
        return response

    @bp.get("/metrics")
    @raw_response(200, "Prometheus text exposition format", "text/plain")
    async def metrics_text() -> Response:
        """Prometheus text exposition."""
        return Response(await metrics.exposition(), content_type=CONTENT_TYPE_LATEST)

    return bp
