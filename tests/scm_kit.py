"""GitHub and GitLab on loopback: a thread serving the providers' documented responses.

The real :class:`oore.services.scm.ScmClient` talks to it with only its base URLs changed:
GitHub's API lives under ``/gh-api`` and its web pages under ``/gh-web``; GitLab lives at
the root (``host_url`` = the server's origin, allowed over http because it is a loopback
IP). Every request is recorded so tests can check method, path, headers and body; the
GitHub App JWT is verified with the app's public key. A repository of either provider can
be served from a real local git repository (``github_sources`` / ``gitlab_sources``): its
commits, trees, files and comparisons are answered with ``git`` in the providers' shapes.
"""

from __future__ import annotations

import base64
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from oore.services.scm import ScmConfig
from tests.loopback_http import Recorded, recorded, send_answer, serving

STOP_TIMEOUT = 5.0
APP_ID = 424242
APP_SLUG = "oore-ci-test"
INSTALLATION_ID = 31337
GITLAB_TOKEN = "glpat-loopback-token-0123456789"
GITLAB_OAUTH_TOKEN = "gitlab-oauth-access-token-0123456789"
CLIENT_SECRET = "github-client-secret-0123456789abcdef"
WEBHOOK_SECRET = "github-webhook-secret-0123456789abcdef"
INSTALLATION_TOKEN = "ghs_installation_token_0123456789abcdef"


@dataclass
class FakeScm:
    """What the loopback providers answer; tests flip the ``*_fault`` fields.

    Faults: ``"reject"`` (HTTP 401), ``"broken"`` (HTTP 500), ``"garbage"`` (not JSON),
    and ``hold``: while set up, every request waits for it (a provider that hangs).
    """

    base: str = ""
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, private=True))
    github_fault: str | None = None
    gitlab_fault: str | None = None
    hold: threading.Event | None = None
    requests: list[Recorded] = field(default_factory=list)
    # Repositories served from local git: GitHub by full name, GitLab by project id.
    github_sources: dict[str, Path] = field(default_factory=dict)
    gitlab_sources: dict[str, Path] = field(default_factory=dict)
    github_repos: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {
                "id": 1001,
                "node_id": "R_1001",
                "name": "app",
                "full_name": "acme/app",
                "private": True,
                "default_branch": "main",
                "owner": {"login": "acme", "avatar_url": "https://avatars.example/acme"},
                "html_url": "https://github.com/acme/app",
            },
            {
                "id": 1002,
                "node_id": "R_1002",
                "name": "lib",
                "full_name": "acme/lib",
                "private": False,
                "default_branch": "trunk",
                "owner": {"login": "acme", "avatar_url": "https://avatars.example/acme"},
                "html_url": "https://github.com/acme/lib",
            },
        ]
    )
    gitlab_projects: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {
                "id": 100 + n,
                "name": f"svc{n}",
                "path_with_namespace": f"group/svc{n}",
                "default_branch": "main",
                "visibility": "public" if n == 0 else "private",
                "avatar_url": None,
                "web_url": f"https://gitlab.example/group/svc{n}",
            }
            for n in range(3)
        ]
    )

    @property
    def scm_config(self) -> ScmConfig:
        return ScmConfig(github_api_url=f"{self.base}/gh-api", github_web_url=f"{self.base}/gh-web")

    def seen(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def app_jwt_claims(self, request: Recorded) -> dict[str, Any]:
        """The verified claims of the app JWT a request carried."""
        header = request.headers.get("authorization", "")
        assert header.startswith("Bearer "), header
        token = jwt.decode(header[len("Bearer ") :], self.key, algorithms=["RS256"])
        return dict(token.claims)

    # -- GitHub --------------------------------------------------------------------------

    def _app_authorized(self, request: Recorded) -> bool:
        try:
            claims = self.app_jwt_claims(request)
        except (AssertionError, ValueError, Exception):
            return False
        return claims.get("iss") == str(APP_ID)

    def github(self, request: Recorded) -> tuple[int, Any, dict[str, str]]:
        path = request.path[len("/gh-api") :]
        if self.github_fault == "reject" and not path.startswith("/app-manifests/"):
            return 401, {"message": "Bad credentials"}, {}
        if self.github_fault == "broken":
            return 500, {"message": "Server Error"}, {}
        if path.startswith("/app-manifests/") and request.method == "POST":
            code = path.split("/")[2]
            if code != "good-code":
                return 404, {"message": "Not Found"}, {}
            pem = self.key.as_pem(private=True).decode()
            return (
                201,
                {
                    "id": APP_ID,
                    "slug": APP_SLUG,
                    "node_id": "A_1",
                    "owner": {"login": "acme", "id": 7, "type": "Organization"},
                    "name": "oore-ci",
                    "description": None,
                    "external_url": "https://ci.example.com",
                    "html_url": f"https://github.com/apps/{APP_SLUG}",
                    "created_at": "2026-01-01T00:00:00Z",
                    "updated_at": "2026-01-01T00:00:00Z",
                    "client_id": "Iv1.0123456789abcdef",
                    "client_secret": CLIENT_SECRET,
                    "webhook_secret": WEBHOOK_SECRET,
                    "pem": pem,
                },
                {},
            )
        if path == "/app/installations" and request.method == "GET":
            if not self._app_authorized(request):
                return 401, {"message": "A JSON web token could not be decoded"}, {}
            return (
                200,
                [
                    {
                        "id": INSTALLATION_ID,
                        "account": {"login": "acme", "id": 7, "type": "Organization"},
                        "app_id": APP_ID,
                        "target_type": "Organization",
                        "repository_selection": "selected",
                    }
                ],
                {},
            )
        if path == f"/app/installations/{INSTALLATION_ID}/access_tokens":
            if not self._app_authorized(request):
                return 401, {"message": "A JSON web token could not be decoded"}, {}
            return 201, {"token": INSTALLATION_TOKEN, "expires_at": "2030-01-01T00:00:00Z"}, {}
        if path == "/installation/repositories":
            if request.headers.get("authorization") != f"Bearer {INSTALLATION_TOKEN}":
                return 401, {"message": "Bad credentials"}, {}
            return (
                200,
                {"total_count": len(self.github_repos), "repositories": self.github_repos},
                {},
            )
        if path.startswith("/repos/"):
            if request.headers.get("authorization") != f"Bearer {INSTALLATION_TOKEN}":
                return 401, {"message": "Bad credentials"}, {}
            return self.github_repository(request, path)
        return 404, {"message": "Not Found"}, {}

    def github_repository(self, request: Recorded, path: str) -> tuple[int, Any, dict[str, str]]:
        """Commits, trees, contents and comparisons of a repository served from local git."""
        parts = path.split("/")  # "", "repos", owner, name, kind, rest...
        repo = self.github_sources.get(f"{parts[2]}/{parts[3]}")
        kind, rest = (parts[4], "/".join(parts[5:])) if len(parts) > 4 else ("", "")
        missing: tuple[int, Any, dict[str, str]] = (404, {"message": "Not Found"}, {})
        if repo is None:
            return missing
        if kind == "commits":
            sha = _commit(repo, unquote(rest))
            if sha is None:
                return 422, {"message": f"No commit found for SHA: {unquote(rest)}"}, {}
            return (
                200,
                {"sha": sha, "commit": {"message": _git(repo, "log", "-1", "--format=%B", sha)}},
                {},
            )
        if kind == "git" and rest.startswith("trees/"):
            sha = _commit(repo, unquote(rest[len("trees/") :]))
            if sha is None:
                return missing
            tree = [
                {
                    "path": name,
                    "mode": mode,
                    "type": kind_,
                    "sha": obj,
                    **({"size": int(size)} if size.isdigit() else {}),
                    "url": f"{self.base}/gh-api/repos/{parts[2]}/{parts[3]}/git/blobs/{obj}",
                }
                for mode, kind_, obj, size, name in _tree(repo, sha, recursive=True)
            ]
            return 200, {"sha": sha, "url": "", "tree": tree, "truncated": False}, {}
        if kind == "contents":
            sha = _commit(repo, request.query.get("ref", "HEAD"))
            name = unquote(rest)
            found = [e for e in _tree(repo, sha, path=name) if e[4] == name] if sha else []
            if not found or found[0][1] != "blob":
                return missing
            _, _, obj, size, _ = found[0]
            data = subprocess.run(
                ["git", "-C", str(repo), "cat-file", "blob", obj], capture_output=True, check=True
            ).stdout
            return (
                200,
                {
                    "type": "file",
                    "encoding": "base64",
                    "size": int(size),
                    "name": name.rsplit("/", 1)[-1],
                    "path": name,
                    "sha": obj,
                    "content": base64.encodebytes(data).decode(),
                },
                {},
            )
        if kind == "compare":
            base_ref, _, head_ref = unquote(rest).partition("...")
            base, head = _commit(repo, base_ref), _commit(repo, head_ref)
            if base is None or head is None:
                return missing
            commits = _commits(repo, base, head)  # oldest first, as GitHub lists them
            per_page = int(request.query.get("per_page", "250"))
            page = int(request.query.get("page", "1"))
            chunk = commits[(page - 1) * per_page : page * per_page]
            return (
                200,
                {
                    "status": "ahead" if commits else "identical",
                    "ahead_by": len(commits),
                    "total_commits": len(commits),
                    "commits": [
                        {
                            "sha": sha,
                            "commit": {"message": message, "author": {"name": author}},
                            "author": {"login": author.lower().replace(" ", "-")},
                        }
                        for sha, author, message in chunk
                    ],
                    "files": [],
                },
                {},
            )
        return missing

    # -- GitLab --------------------------------------------------------------------------

    def _gitlab_authorized(self, request: Recorded) -> bool:
        return request.headers.get("private-token") == GITLAB_TOKEN or (
            request.headers.get("authorization") == f"Bearer {GITLAB_OAUTH_TOKEN}"
        )

    def gitlab(self, request: Recorded) -> tuple[int, Any, dict[str, str]]:
        path = request.path
        if self.gitlab_fault == "broken":
            return 500, {"message": "500 Internal Server Error"}, {}
        if path == "/api/v4/version":
            if not self._gitlab_authorized(request):
                return 401, {"message": "401 Unauthorized"}, {}
            return 200, {"version": "17.0.1-ee", "revision": "abc1234"}, {}
        if path == "/oauth/token" and request.method == "POST":
            form = dict(parse_qsl(request.body.decode()))
            if form.get("code") != "gitlab-code":
                return 400, {"error": "invalid_grant"}, {}
            return (
                200,
                {
                    "access_token": GITLAB_OAUTH_TOKEN,
                    "token_type": "Bearer",
                    "expires_in": 7200,
                    "refresh_token": "gitlab-refresh-token-0123456789",
                    "scope": "read_api read_repository",
                    "created_at": 1_800_000_000,
                },
                {},
            )
        if self.gitlab_fault == "reject" or not self._gitlab_authorized(request):
            return 401, {"message": "401 Unauthorized"}, {}
        if self.gitlab_fault == "garbage":
            return 200, "<html>not json</html>", {}
        if path == "/api/v4/user":
            return (
                200,
                {
                    "id": 55,
                    "username": "jane",
                    "name": "Jane Doe",
                    "state": "active",
                    "avatar_url": None,
                    "web_url": "https://gitlab.example/jane",
                },
                {},
            )
        if path.startswith("/api/v4/projects/") and "/repository/" in path:
            return self.gitlab_repository(request, path)
        if path == "/api/v4/projects":
            per_page = int(request.query.get("per_page", "20"))
            page = int(request.query.get("page", "1"))
            # Two projects a page, whatever was asked, to exercise X-Next-Page.
            size = min(per_page, 2)
            chunk = self.gitlab_projects[(page - 1) * size : page * size]
            more = page * size < len(self.gitlab_projects)
            headers = {
                "X-Page": str(page),
                "X-Per-Page": str(size),
                "X-Next-Page": str(page + 1) if more else "",
                "X-Total": str(len(self.gitlab_projects)),
            }
            return 200, chunk, headers
        return 404, {"message": "404 Not Found"}, {}

    def gitlab_repository(self, request: Recorded, path: str) -> tuple[int, Any, dict[str, str]]:
        """Commits, tree, raw files and comparisons of a project served from local git."""
        project, _, rest = path[len("/api/v4/projects/") :].partition("/repository/")
        repo = self.gitlab_sources.get(unquote(project))
        if repo is None:
            return 404, {"message": "404 Project Not Found"}, {}
        if rest.startswith("commits/"):
            sha = _commit(repo, unquote(rest[len("commits/") :]))
            if sha is None:
                return 404, {"message": "404 Commit Not Found"}, {}
            return 200, _gitlab_commit(repo, sha), {}
        if rest == "tree":
            sha = _commit(repo, request.query.get("ref", "HEAD"))
            if sha is None:
                return 404, {"message": "404 Tree Not Found"}, {}
            entries = [
                {
                    "id": obj,
                    "name": name.rsplit("/", 1)[-1],
                    "type": kind,
                    "path": name,
                    "mode": mode,
                }
                for mode, kind, obj, _, name in _tree(repo, sha, recursive=True, trees=True)
            ]
            per_page = int(request.query.get("per_page", "20"))
            page = int(request.query.get("page", "1"))
            chunk = entries[(page - 1) * per_page : page * per_page]
            more = page * per_page < len(entries)
            return 200, chunk, {"X-Next-Page": str(page + 1) if more else "", "X-Page": str(page)}
        if rest.startswith("files/") and rest.endswith("/raw"):
            name = unquote(rest[len("files/") : -len("/raw")])
            sha = _commit(repo, request.query.get("ref", "HEAD"))
            found = [e for e in _tree(repo, sha, path=name) if e[4] == name] if sha else []
            if not found or found[0][1] != "blob":
                return 404, {"message": "404 File Not Found"}, {}
            return (
                200,
                subprocess.run(
                    ["git", "-C", str(repo), "cat-file", "blob", found[0][2]],
                    capture_output=True,
                    check=True,
                ).stdout,
                {},
            )
        if rest == "compare":
            base = _commit(repo, request.query.get("from", ""))
            target = _commit(repo, request.query.get("to", ""))
            if base is None or target is None:
                return 404, {"message": "404 Ref Not Found"}, {}
            commits = [_gitlab_commit(repo, sha) for sha, _, _ in _commits(repo, base, target)]
            return (
                200,
                {
                    "commit": commits[-1] if commits else None,
                    "commits": commits,
                    "diffs": [],
                    "compare_timeout": False,
                    "compare_same_ref": base == target,
                },
                {},
            )
        return 404, {"message": "404 Not Found"}, {}


# -- a local git repository in the providers' shapes ------------------------------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, check=True, text=True
    ).stdout


def _commit(repo: Path, ref: str) -> str | None:
    found = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    return found.stdout.strip() if found.returncode == 0 and ref else None


def _tree(
    repo: Path, sha: str, *, path: str | None = None, recursive: bool = False, trees: bool = False
) -> list[tuple[str, str, str, str, str]]:
    """``(mode, type, object, size, path)`` of each entry (``-t``: the trees too)."""
    args = ["ls-tree", "-z", "--long", *(["-r"] if recursive else []), *(["-t"] if trees else [])]
    args += [sha, *(["--", path] if path is not None else [])]
    found = []
    for record in _git(repo, *args).split("\0"):
        if record:
            head, _, name = record.partition("\t")
            mode, kind, obj, size = head.split()
            found.append((mode, kind, obj, size, name))
    return found


def _commits(repo: Path, base: str, head: str) -> list[tuple[str, str, str]]:
    """``(sha, author, message)`` of ``base..head``, oldest first."""
    found = []
    for record in _git(
        repo, "log", "-z", "--reverse", "--format=%H%x1f%an%x1f%B", f"{base}..{head}"
    ).split("\0"):
        if record:
            sha, author, message = record.split("\x1f", 2)
            found.append((sha, author, message))
    return found


def _gitlab_commit(repo: Path, sha: str) -> dict[str, Any]:
    author, message = _git(repo, "log", "-1", "--format=%an%x1f%B", sha).split("\x1f", 1)
    return {
        "id": sha,
        "short_id": sha[:8],
        "title": message.split("\n", 1)[0],
        "message": message,
        "author_name": author,
    }


def _handler(scm: FakeScm) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            request = recorded(self)
            scm.requests.append(request)
            if scm.hold is not None:
                scm.hold.wait(STOP_TIMEOUT)  # a hanging provider; the client must give up
            if request.path.startswith("/gh-api/"):
                status, body, headers = scm.github(request)
            else:
                status, body, headers = scm.gitlab(request)
            send_answer(self, status, body, headers)

        do_GET = _answer
        do_POST = _answer

    return Handler


@pytest.fixture
def fake_scm() -> Iterator[FakeScm]:
    """GitHub and GitLab on 127.0.0.1 (a thread), shut down after the test."""
    scm = FakeScm()
    with serving(_handler(scm)) as base:
        scm.base = base
        yield scm
