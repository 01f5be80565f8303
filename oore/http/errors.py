"""The one mapping from failures to ``{"error", "code", "details"?, "request_id"}`` responses.

``request_id`` is the id of the request (also in the ``X-Request-Id`` header and in the
daemon's log lines about it); a 5xx answer's reason goes to its ``http.error`` log line."""

from __future__ import annotations

import logging

from quart import Quart, Response, jsonify
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

from oore.errors import ApiError, InternalError, InvalidRequest, PayloadTooLarge, retry_after
from oore.eventlog import REQUEST_ID
from oore.http.requests import note_failure

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: InvalidRequest(),
    404: ApiError("not_found", "No route matches this path"),
    405: ApiError("method_not_allowed", "This route does not accept that method"),
    413: PayloadTooLarge(),
}


def error_body(error: ApiError) -> dict[str, str]:
    """The JSON of an error answer: the envelope plus the request's id."""
    body = error.to_json()
    request_id = REQUEST_ID.get()
    if request_id is not None:
        body["request_id"] = request_id
    return body


def error_response(
    error: ApiError, status: int | None = None, *, cause: BaseException | None = None
) -> Response:
    response = jsonify(error_body(error))
    response.status_code = status or error.status
    if response.status_code >= 500 and not note_failure(error.code, error.message, cause):
        log.error(
            "%s answered %d: %s", error.code, response.status_code, error.message, exc_info=cause
        )
    wait = retry_after(error)
    if wait is not None:
        response.headers["Retry-After"] = str(wait)
    return response


def install_error_handlers(app: Quart) -> None:
    """Register the handlers; nothing else in the app builds an error body."""

    @app.errorhandler(ApiError)
    async def on_api_error(error: ApiError) -> Response:
        return error_response(error)

    @app.errorhandler(RequestSchemaValidationError)
    async def on_schema_error(_: RequestSchemaValidationError) -> Response:
        return error_response(InvalidRequest())

    @app.errorhandler(HTTPException)
    async def on_http_exception(error: HTTPException) -> Response:
        status = error.code or 500
        mapped = _HTTP_CODES.get(status) or ApiError("http_error", error.description or "Error")
        response = error_response(mapped, status)
        if status == 405:
            allowed = error.get_headers()
            for name, value in allowed:
                if name.lower() == "allow":
                    response.headers["Allow"] = value
        return response

    @app.errorhandler(Exception)
    async def on_unexpected(error: Exception) -> Response:
        return error_response(InternalError(), cause=error)
