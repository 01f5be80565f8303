"""Credential guessing: every request that presents a credential (a Bearer header or the
session cookie, a ``?token=``, a token in the path, a signing token) from a client that
failed too many credential checks lately is answered 429 ``too_many_attempts`` with
``Retry-After`` before anything is looked up, and every 401 such a request gets counts as
one failure of its client (see :class:`~oore.domain.rate_limit.GuessLimiter`); where the
token is the path (a download link), a 404 is a wrong token too.

Webhooks are left out: their secrets are checked by signature or per repository, and
their senders' addresses are shared by everyone on GitHub or GitLab, so a lockout would let
anyone with an account there stop every delivery. A local upload's token was checked by
its wrapper before the app saw the request (oore/http/uploads.py): its failures count,
but a locked client's valid upload is not refused after it was stored.
"""

from __future__ import annotations

from typing import cast

from quart import Quart, Request, Response, g, request
from werkzeug.local import LocalProxy

from oore.http.context import SESSION_COOKIE, client_ip, services
from oore.http.uploads import UPLOAD_PREFIX

UNCOUNTED_PREFIXES = ("/v1/webhooks/",)
SIGNING_TOKEN_HEADER = "X-Oore-Signing-Token"


def path_token(req: Request) -> str | None:
    """The token in the request's path, on the routes a token opens."""
    view_args = req.view_args
    found = view_args.get("token") if view_args else None
    return found if isinstance(found, str) and found else None


def request_credentials(req: Request) -> list[str]:
    """The credentials the request presents, as sent (the hot path, a runner's Bearer
    header and nothing else, is a few header lookups, no parsing)."""
    headers = req.headers
    authorization = headers.get("Authorization")
    cookie = None if authorization or "Cookie" not in headers else req.cookies.get(SESSION_COOKIE)
    query = req.args.get("token") if b"token=" in req.query_string else None
    return presented_credentials(
        authorization=authorization,
        cookie_token=cookie,
        query_token=query,
        path_token=path_token(req),
        signing_token=headers.get(SIGNING_TOKEN_HEADER),
    )


def presented_credentials(
    *,
    authorization: str | None,
    cookie_token: str | None,
    query_token: str | None,
    path_token: str | None,
    signing_token: str | None,
) -> list[str]:
    """The credentials a request presents, from its parts (Quart's requests and the lean
    listener's both count them here)."""
    found: list[str] = []
    if authorization:
        found.append(authorization)
    elif cookie_token:
        found.append(f"Bearer {cookie_token}")
    for value in (query_token, path_token, signing_token):
        if value:
            found.append(value)
    return found


def install_guess_limit(app: Quart) -> None:
    """Refuse a locked client's credentials; count the failures of the others."""

    @app.before_request
    async def refuse_locked_client() -> None:
        # Once: every attribute read through the context proxy costs a lookup.
        req = cast("LocalProxy[Request]", request)._get_current_object()
        path = req.path
        if path.startswith(UNCOUNTED_PREFIXES):
            return
        credentials = request_credentials(req)
        if not credentials:
            return
        # The answers that say a credential failed its check.
        g.oore_failed_statuses = (401, 404) if path_token(req) is not None else (401,)
        guesses = services().guesses
        if guesses.anyone_locked and not path.startswith(UPLOAD_PREFIX):
            refusal = guesses.refusal(client_ip(), credentials)
            if refusal is not None:
                raise refusal

    @app.after_request
    async def count_failure(response: Response) -> Response:
        if response.status_code in g.get("oore_failed_statuses", ()):
            services().guesses.failed(client_ip())
        return response
