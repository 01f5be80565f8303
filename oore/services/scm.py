"""THE one client for GitHub and GitLab (contract §9.1, §9.2, §12).

Every call goes through :class:`ScmClient`: 15 s timeouts, no redirects, responses of at
most 4 MiB, base URLs from :class:`ScmConfig` (tests point them at loopback). Failures
become the contract's errors: a provider refusing a credential (HTTP 401/403) is
:class:`GitHubCredentialRejected` / :class:`GitLabAuthFailed`, so the caller can record a
problem on the integration; anything else is a 502 with the provider's code.
"""

from __future__ import annotations

import base64
import binascii
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeGuard
from urllib.parse import quote

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from oore.domain.integrations import RemoteRepository
from oore.domain.json_input import JsonInputError, decode_json
from oore.domain.previews import (
    CommitRange,
    CommitSummary,
    FileAt,
    Listing,
    TreeEntry,
    title_of,
)
from oore.errors import BadGateway, InvalidInput

SCM_TIMEOUT = 15.0
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
PER_PAGE = 100
MAX_PAGES = 50
APP_JWT_LIFETIME = 540
APP_JWT_BACKDATE = 60
GITHUB_ACCEPT = "application/vnd.github+json"
GITHUB_API_VERSION = "2022-11-28"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScmConfig:
    """Where the providers are; the daemon reads them from OORE_GITHUB_API_URL and
    OORE_GITHUB_WEB_URL."""

    github_api_url: str = "https://api.github.com"
    github_web_url: str = "https://github.com"
    timeout: float = SCM_TIMEOUT


class GitHubCredentialRejected(BadGateway):
    """GitHub refused the app's JWT or an installation token (HTTP 401/403)."""

    default_code = "github_auth_failed"
    default_message = "GitHub rejected the integration's credentials"


class GitLabAuthFailed(InvalidInput):
    """GitLab refused the token (HTTP 401/403)."""

    default_code = "gitlab_auth_failed"
    default_message = "GitLab rejected the token"


CredentialRejected = (GitHubCredentialRejected, GitLabAuthFailed)


def _bad_gateway(code: str, message: str, cause: object) -> BadGateway:
    """A 502; the cause is logged, never sent to the client."""
    log.warning("SCM failure %s: %s", code, cause)
    return BadGateway(code, message)


# -- what the providers answer -------------------------------------------------------------


@dataclass(frozen=True)
class GitHubApp:
    """The result of a manifest conversion."""

    app_id: str
    slug: str
    name: str
    owner_login: str | None
    client_id: str
    client_secret: str
    webhook_secret: str | None
    pem: str


@dataclass(frozen=True)
class GitHubInstallation:
    id: str
    account_login: str
    account_type: str | None


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_at: str | None


@dataclass(frozen=True)
class GitLabUser:
    id: str
    username: str
    name: str


@dataclass(frozen=True)
class GitLabTokens:
    access_token: str
    refresh_token: str | None
    expires_in: int | None


@dataclass(frozen=True)
class GitLabCredential:
    """A GitLab token and how to present it: ``PRIVATE-TOKEN`` or an OAuth bearer."""

    token: str
    oauth: bool = False

    def headers(self) -> dict[str, str]:
        if self.oauth:
            return {"Authorization": f"Bearer {self.token}"}
        return {"PRIVATE-TOKEN": self.token}


class _Transport(Exception):
    """The provider could not be reached, timed out, or sent too much."""


class _TooLarge(_Transport):
    """The provider's answer was longer than the caller's bound."""


@dataclass(frozen=True)
class _Reply:
    status: int
    body: Any  # decoded JSON, or None when the body was not JSON
    headers: httpx.Headers
    raw: bytes = b""


def _text(value: object) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def app_jwt(app_id: str, pem: str, now: int) -> str:
    """The GitHub App's JWT: RS256 with its private key, issued by the app id."""
    try:
        key = RSAKey.import_key(pem)
        return jwt.encode(
            {"alg": "RS256", "typ": "JWT"},
            {"iat": now - APP_JWT_BACKDATE, "exp": now + APP_JWT_LIFETIME, "iss": app_id},
            key,
        )
    except (JoseError, ValueError, TypeError) as exc:
        raise GitHubCredentialRejected(
            "github_auth_failed", "The stored GitHub App private key is unusable"
        ) from exc


class ScmSession:
    """One HTTP client's worth of provider calls."""

    def __init__(self, http: httpx.AsyncClient, config: ScmConfig) -> None:
        self._http = http
        self._config = config

    async def _call(
        self, method: str, url: str, *, limit: int = MAX_RESPONSE_BYTES, **kwargs: Any
    ) -> _Reply:
        size = 0
        try:
            async with self._http.stream(method, url, **kwargs) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_RESPONSE_BYTES:
                        raise _Transport("response is too large")
                    if size <= limit:
                        body += chunk  # past the caller's bound the rest is read, not kept
                status, headers = response.status_code, response.headers
        except httpx.HTTPError as exc:
            raise _Transport(f"{type(exc).__name__}: {exc}") from None
        if size > limit:
            raise _TooLarge(f"response is over {limit} bytes")
        try:
            decoded: Any = decode_json(bytes(body)) if body else None
        except JsonInputError:
            decoded = None
        return _Reply(status, decoded, headers, bytes(body))

    # -- GitHub --------------------------------------------------------------------------

    def _github(self, path: str) -> str:
        return self._config.github_api_url.rstrip("/") + path

    async def _github_call(
        self, method: str, path: str, bearer: str, *, absent: tuple[int, ...] = (), **kwargs: Any
    ) -> _Reply:
        """A GitHub API call; an answer with a status in ``absent`` is returned as is."""
        headers = {
            "Accept": GITHUB_ACCEPT,
            "X-GitHub-Api-Version": GITHUB_API_VERSION,
            "Authorization": f"Bearer {bearer}",
        }
        try:
            reply = await self._call(method, self._github(path), headers=headers, **kwargs)
        except _Transport as exc:
            if isinstance(exc, _TooLarge) and "limit" in kwargs:
                raise  # the caller set the bound and handles it
            raise _bad_gateway("github_api_error", "GitHub could not be reached", exc) from None
        if reply.status in (401, 403):
            raise GitHubCredentialRejected(
                "github_auth_failed", f"GitHub rejected the credentials (HTTP {reply.status})"
            )
        if reply.status in absent:
            return reply
        if reply.status not in (200, 201):
            raise _bad_gateway("github_api_error", f"GitHub answered HTTP {reply.status}", path)
        if reply.body is None:
            raise _bad_gateway("github_api_error", "GitHub sent a body that is not JSON", path)
        return reply

    async def convert_manifest(self, code: str) -> GitHubApp:
        """``POST /app-manifests/{code}/conversions``; 502 ``github_conversion_failed``."""

        def failed(cause: object) -> BadGateway:
            return _bad_gateway(
                "github_conversion_failed", "GitHub could not convert the app manifest", cause
            )

        url = self._github(f"/app-manifests/{quote(code, safe='')}/conversions")
        headers = {"Accept": GITHUB_ACCEPT, "X-GitHub-Api-Version": GITHUB_API_VERSION}
        try:
            reply = await self._call("POST", url, headers=headers)
        except _Transport as exc:
            raise failed(exc) from None
        if reply.status not in (200, 201) or not isinstance(reply.body, dict):
            raise failed(f"HTTP {reply.status}")
        data = reply.body
        owner = data.get("owner")
        found = {
            name: _text(data.get(name))
            for name in ("id", "slug", "client_id", "client_secret", "pem")
        }
        if any(value is None for value in found.values()):
            raise failed("the conversion lacks id, slug, client_id, client_secret or pem")
        return GitHubApp(
            app_id=str(found["id"]),
            slug=str(found["slug"]),
            name=_text(data.get("name")) or str(found["slug"]),
            owner_login=_text(owner.get("login")) if isinstance(owner, dict) else None,
            client_id=str(found["client_id"]),
            client_secret=str(found["client_secret"]),
            webhook_secret=_text(data.get("webhook_secret")),
            pem=str(found["pem"]),
        )

    async def list_installations(self, app_id: str, pem: str, now: int) -> list[GitHubInstallation]:
        """``GET /app/installations`` (every page) with the app's JWT."""
        token = app_jwt(app_id, pem, now)
        found: list[GitHubInstallation] = []
        for page in range(1, MAX_PAGES + 1):
            reply = await self._github_call(
                "GET", "/app/installations", token, params={"per_page": PER_PAGE, "page": page}
            )
            if not isinstance(reply.body, list):
                raise _bad_gateway("github_api_error", "GitHub sent an unexpected body", "")
            for item in reply.body:
                installation = _installation(item)
                if installation is not None:
                    found.append(installation)
            if len(reply.body) < PER_PAGE:
                break
        return found

    async def installation_token(
        self, app_id: str, pem: str, installation_id: str, now: int
    ) -> AccessToken:
        """``POST /app/installations/{id}/access_tokens`` with the app's JWT."""
        reply = await self._github_call(
            "POST",
            f"/app/installations/{quote(installation_id, safe='')}/access_tokens",
            app_jwt(app_id, pem, now),
        )
        token = _text(reply.body.get("token")) if isinstance(reply.body, dict) else None
        if token is None:
            raise _bad_gateway("github_api_error", "GitHub sent no installation token", "")
        return AccessToken(token, _text(reply.body.get("expires_at")))

    async def installation_repositories(self, token: str) -> list[RemoteRepository]:
        """``GET /installation/repositories`` (every page) with an installation token."""
        found: list[RemoteRepository] = []
        for page in range(1, MAX_PAGES + 1):
            reply = await self._github_call(
                "GET",
                "/installation/repositories",
                token,
                params={"per_page": PER_PAGE, "page": page},
            )
            body = reply.body
            if not isinstance(body, dict) or not isinstance(body.get("repositories"), list):
                raise _bad_gateway("github_api_error", "GitHub sent an unexpected body", "")
            items = body["repositories"]
            found.extend(r for r in (_github_repository(item) for item in items) if r)
            total = body.get("total_count")
            if len(items) < PER_PAGE or (isinstance(total, int) and len(found) >= total):
                break
        return found

    # -- GitHub repository contents (installation token) ----------------------------------

    @staticmethod
    def _repo_path(full_name: str) -> str:
        return "/repos/" + "/".join(quote(part, safe="") for part in full_name.split("/"))

    async def github_commit(self, token: str, full_name: str, ref: str) -> str | None:
        """``GET /repos/{o}/{r}/commits/{ref}``: the full SHA a ref names; None when unknown."""
        reply = await self._github_call(
            "GET",
            f"{self._repo_path(full_name)}/commits/{quote(ref, safe='')}",
            token,
            absent=(404, 409, 422),
        )
        sha = _text(reply.body.get("sha")) if isinstance(reply.body, dict) else None
        if reply.status != 200:
            return None
        if sha is None:
            raise _bad_gateway("github_api_error", "GitHub sent a commit without a sha", "")
        return sha

    async def github_tree(self, token: str, full_name: str, commit: str, limit: int) -> Listing:
        """``GET /repos/{o}/{r}/git/trees/{commit}?recursive=1``: the regular files of the
        commit; a listing longer than ``limit`` bytes is dropped (``truncated``)."""
        try:
            reply = await self._github_call(
                "GET",
                f"{self._repo_path(full_name)}/git/trees/{quote(commit, safe='')}",
                token,
                absent=(404, 409),
                params={"recursive": "1"},
                limit=limit,
            )
        except _TooLarge:
            return Listing((), truncated=True)
        if reply.status != 200:
            return Listing(())  # an empty repository has no tree
        items = reply.body.get("tree") if isinstance(reply.body, dict) else None
        if not isinstance(items, list):
            raise _bad_gateway("github_api_error", "GitHub sent an unexpected tree", "")
        entries = [
            TreeEntry(item["path"], item.get("size") if _is_count(item.get("size")) else None)
            for item in items
            if isinstance(item, dict)
            and item.get("type") == "blob"
            and item.get("mode") in ("100644", "100755")
            and isinstance(item.get("path"), str)
        ]
        return Listing(tuple(entries), truncated=reply.body.get("truncated") is True)

    async def github_file(
        self, token: str, full_name: str, commit: str, path: str, limit: int
    ) -> FileAt | None:
        """``GET /repos/{o}/{r}/contents/{path}?ref={commit}``: a regular file's bytes, only
        its size when over ``limit``; None when there is no such file."""
        reply = await self._github_call(
            "GET",
            f"{self._repo_path(full_name)}/contents/{quote(path, safe='/')}",
            token,
            absent=(404,),
            params={"ref": commit},
        )
        body = reply.body
        if reply.status != 200 or not isinstance(body, dict) or body.get("type") != "file":
            return None
        size = body.get("size")
        if _is_count(size) and size > limit:
            return FileAt(None, size)
        content = body.get("content")
        if body.get("encoding") != "base64" or not isinstance(content, str):
            raise _bad_gateway("github_api_error", "GitHub sent a file without its content", "")
        try:
            data = base64.b64decode(content, validate=False)
        except (binascii.Error, ValueError):
            raise _bad_gateway("github_api_error", "GitHub sent undecodable content", "") from None
        return FileAt(None, len(data)) if len(data) > limit else FileAt(data, len(data))

    async def github_compare(
        self, token: str, full_name: str, base: str, head: str, limit: int
    ) -> CommitRange | None:
        """``GET /repos/{o}/{r}/compare/{base}...{head}``: the newest ``limit`` commits of
        ``head`` that ``base`` lacks, newest first; None when either end is unknown."""
        path = (
            f"{self._repo_path(full_name)}/compare/{quote(base, safe='')}...{quote(head, safe='')}"
        )

        async def page(number: int) -> tuple[list[CommitSummary], int] | None:
            reply = await self._github_call(
                "GET",
                path,
                token,
                absent=(404, 422),
                params={"per_page": PER_PAGE, "page": number},
            )
            body = reply.body
            if reply.status != 200:
                return None
            if not isinstance(body, dict) or not isinstance(body.get("commits"), list):
                raise _bad_gateway("github_api_error", "GitHub sent an unexpected comparison", "")
            total = body.get("total_commits")
            found = [c for c in (_github_commit(item) for item in body["commits"]) if c]
            return found, total if _is_count(total) else len(found)

        first = await page(1)
        if first is None:
            return None
        oldest_first, total = first
        pages = -(-total // PER_PAGE)
        if pages <= 1:
            return CommitRange(tuple(reversed(oldest_first))[:limit], total)
        # Each page lists its commits oldest first: read from the last page back, only as
        # many pages as ``limit`` commits take.
        newest: list[CommitSummary] = []
        for number in range(pages, 0, -1):
            found = oldest_first if number == 1 else (await page(number) or ([], 0))[0]
            newest.extend(reversed(found))
            if len(newest) >= limit:
                break
        return CommitRange(tuple(newest[:limit]), total)

    # -- GitLab --------------------------------------------------------------------------

    async def _gitlab_call(
        self, method: str, url: str, *, absent: tuple[int, ...] = (), **kwargs: Any
    ) -> _Reply:
        """A GitLab API call; an answer with a status in ``absent`` is returned as is."""
        try:
            reply = await self._call(method, url, **kwargs)
        except _Transport as exc:
            if isinstance(exc, _TooLarge) and "limit" in kwargs:
                raise  # the caller set the bound and handles it
            raise _bad_gateway("gitlab_unreachable", "GitLab could not be reached", exc) from None
        if reply.status in (401, 403):
            raise GitLabAuthFailed("gitlab_auth_failed", "GitLab rejected the token")
        if reply.status in absent:
            return reply
        if reply.status != 200:
            raise _bad_gateway("gitlab_api_error", f"GitLab answered HTTP {reply.status}", url)
        if reply.body is None:
            raise _bad_gateway("gitlab_parse_error", "GitLab sent a body that is not JSON", url)
        return reply

    async def gitlab_user(self, host_url: str, credential: GitLabCredential) -> GitLabUser:
        """``GET /api/v4/user``: who the token belongs to."""
        reply = await self._gitlab_call(
            "GET", f"{host_url}/api/v4/user", headers=credential.headers()
        )
        body = reply.body
        user_id = _text(body.get("id")) if isinstance(body, dict) else None
        username = _text(body.get("username")) if isinstance(body, dict) else None
        if user_id is None or username is None:
            raise _bad_gateway("gitlab_parse_error", "GitLab sent an unexpected user", host_url)
        return GitLabUser(user_id, username, _text(body.get("name")) or username)

    async def gitlab_version(self, host_url: str) -> None:
        """Is a GitLab there? ``/api/v4/version`` answering 200, 401 or 403 counts as yes;
        anything else is 502 ``gitlab_unreachable``."""
        try:
            reply = await self._call("GET", f"{host_url}/api/v4/version")
        except _Transport as exc:
            raise _bad_gateway("gitlab_unreachable", "GitLab could not be reached", exc) from None
        if reply.status not in (200, 401, 403):
            raise _bad_gateway(
                "gitlab_unreachable", f"GitLab answered HTTP {reply.status}", host_url
            )

    async def gitlab_projects(
        self, host_url: str, credential: GitLabCredential
    ) -> list[RemoteRepository]:
        """``GET /api/v4/projects?membership=true``, following ``X-Next-Page``."""
        found: list[RemoteRepository] = []
        page = 1
        for _ in range(MAX_PAGES):
            reply = await self._gitlab_call(
                "GET",
                f"{host_url}/api/v4/projects",
                headers=credential.headers(),
                params={
                    "membership": "true",
                    "simple": "true",
                    "per_page": PER_PAGE,
                    "page": page,
                    "order_by": "id",
                },
            )
            if not isinstance(reply.body, list):
                raise _bad_gateway("gitlab_parse_error", "GitLab sent an unexpected body", "")
            found.extend(r for r in (_gitlab_project(item) for item in reply.body) if r)
            following = reply.headers.get("x-next-page", "").strip()
            if not following.isdigit() or int(following) <= page:
                break
            page = int(following)
        return found

    async def gitlab_exchange(
        self,
        host_url: str,
        *,
        client_id: str,
        client_secret: str,
        code: str,
        redirect_uri: str,
    ) -> GitLabTokens:
        """``POST /oauth/token`` (authorization code); 400 ``gitlab_auth_failed`` when
        refused, 502 otherwise."""
        form = {
            "grant_type": "authorization_code",
            "client_id": client_id,
            "client_secret": client_secret,
            "code": code,
            "redirect_uri": redirect_uri,
        }
        try:
            reply = await self._call(
                "POST", f"{host_url}/oauth/token", data=form, headers={"Accept": "application/json"}
            )
        except _Transport as exc:
            raise _bad_gateway("gitlab_unreachable", "GitLab could not be reached", exc) from None
        if reply.status in (400, 401, 403):
            raise GitLabAuthFailed("gitlab_auth_failed", "GitLab refused the authorization code")
        if reply.status != 200:
            raise _bad_gateway("gitlab_api_error", f"GitLab answered HTTP {reply.status}", "")
        body = reply.body
        access = _text(body.get("access_token")) if isinstance(body, dict) else None
        if access is None:
            raise _bad_gateway("gitlab_parse_error", "GitLab sent no access token", "")
        expires = body.get("expires_in")
        return GitLabTokens(
            access,
            _text(body.get("refresh_token")),
            expires if isinstance(expires, int) and not isinstance(expires, bool) else None,
        )

    # -- GitLab repository contents ---------------------------------------------------------

    @staticmethod
    def _gitlab_repository(host_url: str, project: str) -> str:
        return f"{host_url}/api/v4/projects/{quote(project, safe='')}/repository"

    async def gitlab_commit(
        self, host_url: str, credential: GitLabCredential, project: str, ref: str
    ) -> str | None:
        """``GET /projects/:id/repository/commits/:ref``: the full SHA; None when unknown."""
        reply = await self._gitlab_call(
            "GET",
            f"{self._gitlab_repository(host_url, project)}/commits/{quote(ref, safe='')}",
            headers=credential.headers(),
            absent=(404,),
        )
        if reply.status != 200:
            return None
        sha = _text(reply.body.get("id")) if isinstance(reply.body, dict) else None
        if sha is None:
            raise _bad_gateway("gitlab_parse_error", "GitLab sent a commit without an id", "")
        return sha

    async def gitlab_tree(
        self,
        host_url: str,
        credential: GitLabCredential,
        project: str,
        commit: str,
        path: str | None,
        limit: int,
    ) -> Listing:
        """``GET /projects/:id/repository/tree?recursive=true`` (every page, following
        ``X-Next-Page``): the regular files under the directory ``path`` (none when it is
        not a directory); the pages past ``limit`` bytes are not read."""
        entries: list[TreeEntry] = []
        used = 0
        page = 1
        params: dict[str, str | int] = {"ref": commit, "recursive": "true", "per_page": PER_PAGE}
        if path is not None:
            params["path"] = path
        for _ in range(MAX_PAGES):
            try:
                reply = await self._gitlab_call(
                    "GET",
                    f"{self._gitlab_repository(host_url, project)}/tree",
                    headers=credential.headers(),
                    absent=(404,),
                    params={**params, "page": page},
                    limit=limit - used,
                )
            except _TooLarge:
                return Listing(tuple(entries), truncated=True)
            if reply.status != 200:
                break  # an empty repository has no tree
            if not isinstance(reply.body, list):
                raise _bad_gateway("gitlab_parse_error", "GitLab sent an unexpected tree", "")
            used += len(reply.raw)
            entries.extend(
                TreeEntry(item["path"])
                for item in reply.body
                if isinstance(item, dict)
                and item.get("type") == "blob"
                and item.get("mode") in ("100644", "100755")
                and isinstance(item.get("path"), str)
            )
            following = reply.headers.get("x-next-page", "").strip()
            if not following.isdigit() or int(following) <= page:
                break
            page = int(following)
        else:
            return Listing(tuple(entries), truncated=True)
        return Listing(tuple(entries))

    async def gitlab_file(
        self,
        host_url: str,
        credential: GitLabCredential,
        project: str,
        commit: str,
        path: str,
        limit: int,
    ) -> FileAt | None:
        """``GET /projects/:id/repository/files/:path/raw?ref=``: the file's bytes, no bytes
        when over ``limit``; None when there is no such file."""
        url = f"{self._gitlab_repository(host_url, project)}/files/{quote(path, safe='')}/raw"
        try:
            reply = await self._call(
                "GET", url, headers=credential.headers(), params={"ref": commit}, limit=limit
            )
        except _TooLarge:
            return FileAt(None, None)
        except _Transport as exc:
            raise _bad_gateway("gitlab_unreachable", "GitLab could not be reached", exc) from None
        if reply.status in (401, 403):
            raise GitLabAuthFailed("gitlab_auth_failed", "GitLab rejected the token")
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise _bad_gateway("gitlab_api_error", f"GitLab answered HTTP {reply.status}", url)
        return FileAt(reply.raw, len(reply.raw))

    async def gitlab_compare(
        self,
        host_url: str,
        credential: GitLabCredential,
        project: str,
        base: str,
        target: str,
        limit: int,
    ) -> CommitRange | None:
        """``GET /projects/:id/repository/compare?from=&to=``: the newest ``limit`` commits
        of ``target`` that ``base`` lacks, newest first; None when either end is unknown."""
        reply = await self._gitlab_call(
            "GET",
            f"{self._gitlab_repository(host_url, project)}/compare",
            headers=credential.headers(),
            absent=(404,),
            params={"from": base, "to": target},
        )
        if reply.status != 200:
            return None
        body = reply.body
        if not isinstance(body, dict) or not isinstance(body.get("commits"), list):
            raise _bad_gateway("gitlab_parse_error", "GitLab sent an unexpected comparison", "")
        found = [c for c in (_gitlab_commit(item) for item in body["commits"]) if c]
        return CommitRange(tuple(reversed(found))[:limit], len(found))


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _github_commit(item: object) -> CommitSummary | None:
    if not isinstance(item, dict) or not isinstance(item.get("commit"), dict):
        return None
    sha, commit = _text(item.get("sha")), item["commit"]
    message = commit.get("message")
    author = commit.get("author")
    user = item.get("author")
    name = _text(author.get("name")) if isinstance(author, dict) else None
    if name is None and isinstance(user, dict):
        name = _text(user.get("login"))
    if sha is None or not isinstance(message, str):
        return None
    return CommitSummary(sha, title_of(message), name or "")


def _gitlab_commit(item: object) -> CommitSummary | None:
    if not isinstance(item, dict):
        return None
    sha = _text(item.get("id"))
    message = item.get("message")
    title = title_of(message) if isinstance(message, str) else _text(item.get("title"))
    if sha is None or title is None:
        return None
    return CommitSummary(sha, title, _text(item.get("author_name")) or "")


def _installation(item: object) -> GitHubInstallation | None:
    if not isinstance(item, dict):
        return None
    installation_id = _text(item.get("id"))
    account = item.get("account")
    if installation_id is None or not isinstance(account, dict):
        return None
    login = _text(account.get("login")) or _text(account.get("slug")) or _text(account.get("name"))
    if login is None:
        return None
    return GitHubInstallation(installation_id, login, _text(account.get("type")))


def _github_repository(item: object) -> RemoteRepository | None:
    if not isinstance(item, dict):
        return None
    external_id, full_name = _text(item.get("id")), _text(item.get("full_name"))
    if external_id is None or full_name is None:
        return None
    owner = item.get("owner")
    return RemoteRepository(
        external_id=external_id,
        full_name=full_name,
        default_branch=_text(item.get("default_branch")),
        is_private=item.get("private") is True,
        avatar_url=_text(owner.get("avatar_url")) if isinstance(owner, dict) else None,
    )


def _gitlab_project(item: object) -> RemoteRepository | None:
    if not isinstance(item, dict):
        return None
    external_id, full_name = _text(item.get("id")), _text(item.get("path_with_namespace"))
    if external_id is None or full_name is None:
        return None
    visibility = item.get("visibility")
    return RemoteRepository(
        external_id=external_id,
        full_name=full_name,
        default_branch=_text(item.get("default_branch")),
        is_private=visibility != "public",
        avatar_url=_text(item.get("avatar_url")),
    )


class ScmClient:
    """Opens :class:`ScmSession` s sharing one TLS configuration (built once per runtime)."""

    def __init__(self, config: ScmConfig, ssl_context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self._given_ssl = ssl_context

    @cached_property
    def _ssl(self) -> ssl.SSLContext:
        """Made on first use: most runtimes never call out, and loading the CA bundle
        takes a tenth of a second."""
        return self._given_ssl or httpx.create_ssl_context()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[ScmSession]:
        """A client for one operation; its connections close when the operation ends."""
        async with httpx.AsyncClient(
            timeout=self.config.timeout, follow_redirects=False, verify=self._ssl
        ) as http:
            yield ScmSession(http, self.config)
