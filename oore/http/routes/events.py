"""The live events stream (``GET /v1/events/stream``): build and runner changes over SSE."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import security_scheme

from oore.errors import ServiceUnavailable, TooManyRequests
from oore.http.context import services, user_authorization
from oore.http.openapi import errors, raw_response

blueprint = Blueprint("events", __name__)


@blueprint.get("/v1/events/stream")
@security_scheme([{"bearer": []}])
@raw_response(200, "Server-sent events: ready, build, runner, resync, done", "text/event-stream")
@errors(TooManyRequests("stream_limit"), ServiceUnavailable("stream_capacity"))
async def stream() -> Response:
    """Server-sent events of the changes the caller may see, as they happen: ``event:
    ready`` first (load your lists now); ``event: build`` with ``{"build": ...}`` (as
    ``GET /v1/builds/{id}`` answers it) when a build of a project the caller may read is
    created or changes status; ``event: runner`` with ``{"runner": ...}`` (as ``GET
    /v1/runners/{id}``), or ``{"runner": {"id": ...}, "deleted": true}``, when a runner
    is registered, changes or is deleted, to callers who may read runners; ``event:
    resync`` when changes were skipped (a slow reader) or what the caller may see changed
    (reload the lists); ``event: done`` ``authorization_ended`` when the session ends.
    A ``: ping`` comment every 15 s of silence. No ids and no replay: the server closes
    the stream after 5 minutes and the client reconnects. Session or API token, by
    header or the session cookie; 429 ``stream_limit`` past the per-user limit, 503
    ``stream_capacity`` past the server's, before the stream starts."""
    events = await services().events.open_stream(user_authorization())
    response = Response(
        events,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.timeout = None  # bounded by the stream's own lifetime
    return response
