"""The one error type of oore, and the codes it carries.

Every failure a client can see is an :class:`ApiError`; the HTTP layer turns it into
``{"error": <message>, "code": <code>, "details"?: <details>}`` in exactly one place.

    ApiError(status, code, message, details)
     ├── InvalidRequest        400 invalid_request   body/query could not be decoded
     ├── InvalidInput          400 invalid_input     semantic validation failed
     ├── Unauthorized          401 <code>            missing_auth, invalid_session, ...
     ├── Forbidden             403 <code>            permission_denied, mode_restricted, ...
     ├── NotFound              404 <code>            not_found, user_not_found, ...
     ├── Conflict              409 <code>            already_configured, invalid_state, ...
     ├── RequestTimeout        408 request_timeout   the client stopped sending its body
     ├── Gone                  410 <code>            token_consumed, artifact_expired, ...
     ├── PreconditionFailed    412 <code>            external_access_required, ...
     ├── PayloadTooLarge       413 payload_too_large
     ├── RangeNotSatisfiable   416 range_not_satisfiable
     ├── Unprocessable         422 <code>            artifact_not_installable, ...
     ├── TooManyRequests       429 <code>            too_many_attempts, ...
     ├── HeadersTooLarge       431 headers_too_large the request head is over the limit
     ├── NotImplementedHere    501 not_implemented   a transfer coding the server lacks
     ├── BadGateway            502 <code>            oidc_discovery_error, token_exchange_error, ...
     ├── ServiceUnavailable    503 <code>            overloaded, not_ready
     │    └── StoreUnavailable 503 store_unavailable the database cannot be reached (Retry-After)
     └── InternalError         500 <code>            storage_error, ...
          └── StoreError       500 store_error       the database failed

Each subclass has a stable default code and message; raise it with a more specific code
where the contract names one (``Unauthorized("invalid_session", "...")``).
"""

from __future__ import annotations

from typing import ClassVar


class ApiError(Exception):
    """An error with an HTTP status, a machine-readable code and a human message."""

    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        code: str | None = None,
        message: str | None = None,
        *,
        details: str | None = None,
    ) -> None:
        self.code = code or self.default_code
        self.message = message or self.default_message
        self.details = details
        super().__init__(f"{self.code}: {self.message}")

    def to_json(self) -> dict[str, str]:
        """The wire envelope; ``details`` is omitted when unset."""
        body = {"error": self.message, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


class InvalidRequest(ApiError):
    """The request body or query string could not be decoded."""

    status = 400
    default_code = "invalid_request"
    default_message = "Request parameters or body are invalid"


class InvalidInput(ApiError):
    """The request decoded but its values are not acceptable."""

    status = 400
    default_code = "invalid_input"
    default_message = "Request validation failed"


class Unauthorized(ApiError):
    """No credential, or one that is not valid."""

    status = 401
    default_code = "missing_auth"
    default_message = "Authorization header not provided"


class Forbidden(ApiError):
    """The caller is known but may not do this."""

    status = 403
    default_code = "permission_denied"
    default_message = "Permission denied"


class NotFound(ApiError):
    """The resource does not exist, or the caller may not know it does."""

    status = 404
    default_code = "not_found"
    default_message = "Not found"


class Conflict(ApiError):
    """The request is not valid in the resource's current state."""

    status = 409
    default_code = "conflict"
    default_message = "Conflict with the current state"


class RequestTimeout(ApiError):
    """The client stopped sending the request body before it was complete."""

    status = 408
    default_code = "request_timeout"
    default_message = "The request body did not arrive in time"


class Gone(ApiError):
    """The thing asked for existed but can no longer be used."""

    status = 410
    default_code = "gone"
    default_message = "No longer available"


class PreconditionFailed(ApiError):
    """The server is not set up for this request (for example no external URL)."""

    status = 412
    default_code = "precondition_failed"
    default_message = "A precondition of this request is not met"


class PayloadTooLarge(ApiError):
    """The request body is over the route's limit."""

    status = 413
    default_code = "payload_too_large"
    default_message = "Request body is too large"


class RangeNotSatisfiable(ApiError):
    """The requested byte range lies outside the resource."""

    status = 416
    default_code = "range_not_satisfiable"
    default_message = "The requested range is not satisfiable"


class Unprocessable(ApiError):
    """The request is well formed but its target cannot be used this way."""

    status = 422
    default_code = "unprocessable"
    default_message = "The request cannot be processed"


class TooManyRequests(ApiError):
    """A rate or capacity limit was hit; the client may retry later (after
    ``retry_after`` seconds, sent as ``Retry-After``, when the limit knows)."""

    status = 429
    default_code = "too_many_requests"
    default_message = "Too many requests"

    def __init__(
        self,
        code: str | None = None,
        message: str | None = None,
        *,
        details: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(code, message, details=details)
        self.retry_after = retry_after


class HeadersTooLarge(ApiError):
    """The request line and headers together are over the server's limit."""

    status = 431
    default_code = "headers_too_large"
    default_message = "Request headers are too large"


class NotImplementedHere(ApiError):
    """The request needs something this server does not do (a transfer coding but chunked)."""

    status = 501
    default_code = "not_implemented"
    default_message = "Not implemented by this server"


class BadGateway(ApiError):
    """A server we depend on (an OpenID Provider) failed or answered something unusable."""

    status = 502
    default_code = "bad_gateway"
    default_message = "An upstream service failed"


class ServiceUnavailable(ApiError):
    """The server cannot take this request now (overloaded, not ready)."""

    status = 503
    default_code = "service_unavailable"
    default_message = "Service unavailable"


class StoreUnavailable(ServiceUnavailable):
    """The database cannot be reached right now; the daemon reconnects by itself.

    Raised instead of a 500 while PostgreSQL is down or restarting, so clients retry
    after ``retry_after`` seconds rather than give up.
    """

    default_code = "store_unavailable"
    default_message = "The database is unavailable; try again shortly"
    retry_after: ClassVar[int] = 2
    # A supervisor restarts an actor that crashed on an outage without charging its
    # restart budget (see ``oore/actors/supervisor.py``).
    outage: ClassVar[bool] = True


class InternalError(ApiError):
    """The server failed; the client did nothing wrong."""

    status = 500


class StoreError(InternalError):
    """The database failed or could not be reached."""

    default_code = "store_error"
    default_message = "Database error"


def retry_after(error: ApiError) -> int | None:
    """The seconds after which ``error``'s client may try again, when it says."""
    if isinstance(error, StoreUnavailable):
        return error.retry_after
    if isinstance(error, TooManyRequests) and error.retry_after is not None:
        return max(1, error.retry_after)
    return None


def lone_api_error(exc: BaseException) -> ApiError | None:
    """The ApiError ``exc`` is, or the only one inside its (nested) exception groups:
    one raised at start-up reaches the top wrapped by every nursery it passed through."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, ApiError) else None
