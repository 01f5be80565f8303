"""Credential guessing: every request that presents a credential (a Bearer header or the
session cookie, a ``?token=``, a token in the path, a signing token) from a client that
failed too many credential checks lately is answered 429 ``too_many_attempts`` with
``Retry-After`` before anything is looked up, and every 401 such a request gets counts as
one failure of its client (see :class:`~oore.domain.rate_limit.GuessLimiter`).

Webhooks are left out: their secrets are checked by signature or per repository, and
their senders' addresses are shared by everyone on GitHub or GitLab, so a lockout would let
anyone with an account there stop every delivery. A local upload's token was checked by
its wrapper before the app saw the request (oore/http/uploads.py): its failures count,
but a locked client's valid upload is not refused after it was stored.
"""

from __future__ import annotations

from quart import Quart, Response, g, request

from oore.http.context import client_ip, services, user_authorization
from oore.http.uploads import UPLOAD_PREFIX

UNCOUNTED_PREFIXES = ("/v1/webhooks/",)
SIGNING_TOKEN_HEADER = "X-Oore-Signing-Token"


def request_credentials() -> list[str]:
    """The credentials the current request presents, as sent."""
    found: list[str] = []
    authorization = user_authorization()
    if authorization:
        found.append(authorization)
    query = request.args.get("token")
    if query:
        found.append(query)
    in_path = (request.view_args or {}).get("token")
    if isinstance(in_path, str) and in_path:
        found.append(in_path)
    signing = request.headers.get(SIGNING_TOKEN_HEADER)
    if signing:
        found.append(signing)
    return found


def install_guess_limit(app: Quart) -> None:
    """Refuse a locked client's credentials; count the failures of the others."""

    @app.before_request
    async def refuse_locked_client() -> None:
        path = request.path
        if path.startswith(UNCOUNTED_PREFIXES):
            return
        credentials = request_credentials()
        if not credentials:
            return
        g.oore_credentials = True
        guesses = services().guesses
        if guesses.anyone_locked and not path.startswith(UPLOAD_PREFIX):
            refusal = guesses.refusal(client_ip(), credentials)
            if refusal is not None:
                raise refusal

    @app.after_request
    async def count_failure(response: Response) -> Response:
        if response.status_code == 401 and g.get("oore_credentials", False):
            services().guesses.failed(client_ip())
        return response
