"""The browser's session: an HttpOnly cookie rather than a token the page keeps.

A sign-in that sends ``X-Oore-Session: cookie`` gets its session as the ``oore_session``
cookie (HttpOnly, SameSite=Strict, Path=/, Secure over https or when configured) and a
JSON answer without ``session_token``. No script can read the cookie, so a script
injected into a page cannot carry the session away, and it never travels in a URL.
Any route that takes a user session accepts the cookie when no Authorization header is
sent (a header, when sent, is what counts).

What a cookie adds is that the browser attaches it to requests other pages make:
SameSite=Strict keeps it off cross-site requests, and the guard refuses a state-changing
request signed in by cookie unless its Origin is allowed (see ``oore/http/guard.py``).
"""

from __future__ import annotations

from quart import Response, jsonify, request

from oore.http.context import SESSION_COOKIE, services
from oore.services.identity import LoginResult

SESSION_MODE_HEADER = "X-Oore-Session"


def _secure() -> bool:
    return request.scheme == "https" or services().cookie_secure


def signed_in(result: LoginResult) -> Response:
    """A sign-in's answer: the usual JSON, or, asked for a cookie, the cookie and the JSON
    without the token."""
    body = result.to_json()
    if request.headers.get(SESSION_MODE_HEADER, "").strip().lower() != "cookie":
        return jsonify(body)
    del body["session_token"]
    response = jsonify(body)
    response.set_cookie(
        SESSION_COOKIE,
        result.session_token,
        expires=result.expires_at,
        path="/",
        secure=_secure(),
        httponly=True,
        samesite="Strict",
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def signed_out(response: Response) -> Response:
    """Clear the session cookie (harmless when there was none)."""
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=_secure(), httponly=True, samesite="Strict"
    )
    return response
