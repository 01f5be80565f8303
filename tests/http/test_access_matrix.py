"""Every route against every role and every kind of refused credential (contract §0.2, §1).

One table lists every route the app serves: how it authenticates and the lowest instance
role that may call it. A route missing from the table fails the coverage test, so a new
endpoint cannot slip in without its access rule. For each user route the test presents
no token, a credential of the wrong kind, an expired one and a revoked one (each 401 with
the documented code), then the session of each role, lowest first: below the route's role
the answer is 403 with the documented code; from it upward it is neither 401 nor 403.

The roles act on one project where the developer is a project developer and the QA
viewer a project viewer, so project permissions (§1.2) show through instance roles.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from quart.testing.connections import WebsocketResponseError
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers

from oore.domain.tokens import hash_token, new_token
from oore.domain.users import USER_SESSION_TTL, Role
from oore.store import Store
from tests.http.artifacts_kit import running_job
from tests.http.builds_kit import make_setup, repo
from tests.http.conftest import Api, FakeClock, Reply, UserFactory

__all__ = ["repo"]

RANK = [Role.QA_VIEWER, Role.DEVELOPER, Role.ADMIN, Role.OWNER]


class Auth(Enum):
    PUBLIC = "public"  # no credential, or one carried in the body
    PATH_TOKEN = "path_token"  # a credential carried in the path
    USER = "user"  # user session or API token
    SESSION_ONLY = "session_only"  # user session only, no API token
    SETUP = "setup"  # setup session; refused with 409 already_configured once ready
    SETUP_READ = "setup_read"  # setup session (none once ready), or an owner/admin sign-in
    RUNNER = "runner"  # runner token


@dataclass(frozen=True)
class Route:
    method: str
    rule: str
    auth: Auth
    lowest: Role = Role.QA_VIEWER
    denied: str = "permission_denied"
    body: Any = None
    # Per-role denial codes where they differ from ``denied``.
    codes: Mapping[Role, str] = field(default_factory=dict)
    # Runner registration also takes an enrollment token instead of a session.
    enrollment: bool = False
    # Remote-mode only: in this local-mode world allowed roles get 403 mode_restricted.
    remote_only: bool = False
    # A WebSocket route: called as an upgrade; accepted is 101 (with its first reply).
    websocket: bool = False
    # Headers to send besides Authorization (placeholders filled like the path's).
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.method} {self.rule}"


def user(method: str, rule: str, lowest: Role = Role.QA_VIEWER, **kw: Any) -> Route:
    return Route(method, rule, Auth.USER, lowest, **kw)


def admin(method: str, rule: str, **kw: Any) -> Route:
    return Route(method, rule, Auth.USER, Role.ADMIN, **kw)


def owner_only(method: str, rule: str, **kw: Any) -> Route:
    """Owner-only settings writes: the write permission first, then the owner gate."""
    return Route(
        method,
        rule,
        Auth.USER,
        Role.OWNER,
        codes={Role.ADMIN: "external_access_owner_required"},
        **kw,
    )


def public(method: str, rule: str) -> Route:
    return Route(method, rule, Auth.PUBLIC)


def path_token(method: str, rule: str) -> Route:
    return Route(method, rule, Auth.PATH_TOKEN)


def runner(method: str, rule: str, body: Any = None, **kw: Any) -> Route:
    return Route(method, rule, Auth.RUNNER, body=body, **kw)


def runner_websocket(rule: str) -> Route:
    return Route("GET", rule, Auth.RUNNER, websocket=True)


def setup_step(method: str, rule: str, body: Any = None) -> Route:
    return Route(method, rule, Auth.SETUP, body=body)


PIPELINE_BODY = {"name": "p2", "execution_config": {"platforms": ["android"]}}
STORAGE_BODY = {"provider": "disabled"}
# Port 9 on loopback refuses connections: a test message fails at once, in the background.
CHANNEL_BODY = {
    "name": "matrix",
    "kind": "webhook",
    "events": ["build_failed"],
    "url": "http://127.0.0.1:9/hook",
}
VARIABLE_BODY = {"name": "MATRIX_VAR", "value": "plain", "secret": False}
NAMED_VARIABLE_BODY = {"value": "matrix-secret-value", "secret": True}
IOS_BODY = {"export_method": "ad_hoc", "bundle_ids": ["com.example.app"]}
# Nothing listens on the discard port: discovery fails at once, without leaving loopback.
DEAD_ISSUER = "http://127.0.0.1:9"

ROUTES = [
    # health, documents, public setup status
    public("GET", "/healthz"),
    public("GET", "/readyz"),
    public("GET", "/metrics"),
    public("GET", "/v1/openapi.json"),
    public("GET", "/v1/public/setup-status"),
    public("GET", "/v1/pipelines/schema"),
    public("POST", "/v1/setup/bootstrap-token/verify"),
    public("POST", "/v1/auth/local/login"),
    public("GET", "/v1/auth/oidc/start"),
    public("POST", "/v1/auth/oidc/callback"),
    public("POST", "/v1/auth/trusted-proxy/login"),
    public("POST", "/v1/webhooks/github"),
    public("POST", "/v1/webhooks/gitlab"),
    # setup steps (the world is past setup)
    setup_step("POST", "/v1/setup/preferences", body={"runtime_mode": "local"}),
    setup_step(
        "POST", "/v1/setup/oidc/configure", body={"issuer_url": DEAD_ISSUER, "client_id": "c"}
    ),
    setup_step(
        "POST",
        "/v1/setup/owner/start-oidc",
        body={"redirect_uri": "http://localhost/auth/callback"},
    ),
    setup_step("POST", "/v1/setup/owner/verify-oidc", body={"code": "c", "state": "s"}),
    setup_step("POST", "/v1/setup/local-owner/create", body={"email": "o@example.com"}),
    setup_step("POST", "/v1/setup/trusted-proxy/configure", body={}),
    setup_step("POST", "/v1/setup/owner/claim-trusted-proxy"),
    setup_step("POST", "/v1/setup/complete"),
    Route("GET", "/v1/setup/summary", Auth.SETUP_READ),
    # credentials carried in the path
    path_token("GET", "/install/artifact/<token>"),
    path_token("GET", "/v1/artifacts/dl/<token>"),
    path_token("GET", "/install/ios/<token>/manifest.plist"),
    path_token("GET", "/v1/artifacts/install/ios/<token>/manifest.plist"),
    path_token("GET", "/v1/artifacts/download/<token>"),
    path_token("GET", "/v1/artifacts/local-download/<token>"),
    path_token("GET", "/install/download/<token>"),
    path_token("PUT", "/v1/artifacts/local-upload/<token>"),
    # auth and the caller
    Route("POST", "/v1/auth/logout", Auth.SESSION_ONLY),
    user("GET", "/v1/users/me"),
    # users, API tokens, the audit log
    admin("GET", "/v1/users"),
    admin("POST", "/v1/users/invite", body={"email": "new@example.com", "role": "qa_viewer"}),
    admin("PATCH", "/v1/users/<target_id>/role", body={"role": "qa_viewer"}),
    admin("DELETE", "/v1/users/<target_id>"),
    admin("POST", "/v1/users/<target_id>/enable"),
    user("GET", "/v1/api-tokens", Role.DEVELOPER),
    user("POST", "/v1/api-tokens", Role.DEVELOPER, body={"name": "t", "role": "qa_viewer"}),
    user("DELETE", "/v1/api-tokens/<api_token_id>", Role.DEVELOPER),
    admin("GET", "/v1/audit-logs"),
    # integrations (the flows need remote mode; this world is local)
    user("GET", "/v1/integrations"),
    user("GET", "/v1/integration-repositories"),
    user("GET", "/v1/integrations/local-git"),
    admin("DELETE", "/v1/integrations/local-git/<integration_id>"),
    user("GET", "/v1/integrations/<integration_id>"),
    admin("DELETE", "/v1/integrations/<integration_id>"),
    user("GET", "/v1/integrations/<integration_id>/repositories"),
    user("GET", "/v1/integrations/<integration_id>/installations"),
    admin("POST", "/v1/integrations/<integration_id>/installations", remote_only=True),
    admin("POST", "/v1/integrations/<integration_id>/gitlab-token/check", remote_only=True),
    admin(
        "POST",
        "/v1/integration-repositories/<integration_id>/gitlab-webhook-secret",
        remote_only=True,
    ),
    admin(
        "POST",
        "/v1/integrations/github/start",
        body={"webhook_url": "https://ci.example.com", "redirect_url": "https://ci.example.com"},
        remote_only=True,
    ),
    admin("POST", "/v1/integrations/github/complete", body={"code": "c"}, remote_only=True),
    admin(
        "POST",
        "/v1/integrations/gitlab/start",
        body={"host_url": "https://gitlab.example.com"},
        remote_only=True,
    ),
    admin(
        "POST",
        "/v1/integrations/gitlab/authorize",
        body={"integration_id": "<integration_id>", "redirect_url": "https://ci.example.com"},
        remote_only=True,
    ),
    public("GET", "/v1/integrations/github/create"),
    public("GET", "/v1/integrations/github/callback"),
    public("GET", "/v1/integrations/github/installed"),
    public("GET", "/v1/integrations/gitlab/callback"),
    # projects and members (developer = project developer, QA = project viewer)
    user("GET", "/v1/projects"),
    admin(
        "POST",
        "/v1/projects",
        denied="insufficient_role",
        body={"name": "x", "local_repository_path": "/nonexistent"},
    ),
    user("GET", "/v1/projects/<project_id>"),
    admin("PATCH", "/v1/projects/<project_id>", body={"description": "d"}),
    admin("DELETE", "/v1/projects/<project_id>"),
    admin("GET", "/v1/projects/<project_id>/members"),
    admin("GET", "/v1/projects/<project_id>/members/candidates"),
    admin(
        "POST",
        "/v1/projects/<project_id>/members",
        body={"user_id": "<spare_id>", "role": "viewer"},
    ),
    admin("PATCH", "/v1/projects/<project_id>/members/<member_id>", body={"role": "developer"}),
    admin("DELETE", "/v1/projects/<project_id>/members/<member_id>"),
    # pipelines
    user("GET", "/v1/projects/<project_id>/pipelines"),
    user("POST", "/v1/projects/<project_id>/pipelines", Role.DEVELOPER, body=PIPELINE_BODY),
    user("POST", "/v1/pipelines/validate", body={"execution_config": {"platforms": ["ios"]}}),
    user("GET", "/v1/pipelines/<pipeline_id>"),
    user("PATCH", "/v1/pipelines/<pipeline_id>", Role.DEVELOPER, body={"enabled": True}),
    admin("DELETE", "/v1/pipelines/<pipeline_id>"),
    # retention: reading the project's needs project Read, changing it project Write
    user("GET", "/v1/projects/<project_id>/retention"),
    admin("PUT", "/v1/projects/<project_id>/retention", body={"keep_last_builds": 5}),
    admin("DELETE", "/v1/projects/<project_id>/retention"),
    # previews: the repository's pipeline files (manage_pipelines), the next changelog
    # (trigger_build; without pipeline_id it is 400 once allowed)
    user("GET", "/v1/projects/<project_id>/repository-workflows", Role.DEVELOPER),
    user("GET", "/v1/projects/<project_id>/builds/changelog-preview", Role.DEVELOPER),
    # variables and secrets: reading needs manage_pipelines, writing the maintainer role
    user("GET", "/v1/projects/<project_id>/variables", Role.DEVELOPER),
    admin("POST", "/v1/projects/<project_id>/variables", body=VARIABLE_BODY),
    admin("PUT", "/v1/projects/<project_id>/variables/<variable>", body=NAMED_VARIABLE_BODY),
    admin("DELETE", "/v1/projects/<project_id>/variables/<variable>"),
    user("GET", "/v1/pipelines/<pipeline_id>/variables", Role.DEVELOPER),
    admin("POST", "/v1/pipelines/<pipeline_id>/variables", body=VARIABLE_BODY),
    admin("PUT", "/v1/pipelines/<pipeline_id>/variables/<variable>", body=NAMED_VARIABLE_BODY),
    admin("DELETE", "/v1/pipelines/<pipeline_id>/variables/<variable>"),
    # iOS signing: manage_pipelines (App Store Connect is not asked: no API key is stored)
    user("GET", "/v1/pipelines/<pipeline_id>/ios-signing", Role.DEVELOPER),
    user("PUT", "/v1/pipelines/<pipeline_id>/ios-signing", Role.DEVELOPER, body=IOS_BODY),
    user("POST", "/v1/pipelines/<pipeline_id>/ios-signing/sync", Role.DEVELOPER),
    user("GET", "/v1/pipelines/<pipeline_id>/ios-signing/devices", Role.DEVELOPER),
    user(
        "POST",
        "/v1/pipelines/<pipeline_id>/ios-signing/devices/register",
        Role.DEVELOPER,
        body={"name": "QA iPhone", "udid": "00008030-000A"},
    ),
    # signing material: manage_pipelines
    user("GET", "/v1/pipelines/<pipeline_id>/android-signing", Role.DEVELOPER),
    user(
        "PUT",
        "/v1/pipelines/<pipeline_id>/android-signing",
        Role.DEVELOPER,
        body={"debug": {"enabled": False}},
    ),
    # builds and their logs
    user(
        "POST",
        "/v1/projects/<project_id>/builds",
        Role.DEVELOPER,
        body={"pipeline_id": "<pipeline_id>"},
    ),
    user("GET", "/v1/builds"),
    user("GET", "/v1/builds/<build_id>"),
    user("POST", "/v1/builds/<build_id>/cancel", Role.DEVELOPER),
    user("POST", "/v1/builds/<done_build_id>/rerun", Role.DEVELOPER),
    user("GET", "/v1/builds/<build_id>/logs"),
    user("POST", "/v1/builds/<build_id>/stream-token"),
    Route("GET", "/v1/builds/<done_build_id>/logs/stream", Auth.SESSION_ONLY),
    user("GET", "/v1/events/stream"),
    # artifacts
    user("GET", "/v1/builds/<build_id>/artifacts"),
    user("GET", "/v1/projects/<project_id>/artifacts"),
    user("POST", "/v1/artifacts/query", body={"build_ids": ["<build_id>"]}),
    user("POST", "/v1/artifacts/<artifact_id>/download-link"),
    user("POST", "/v1/artifacts/<artifact_id>/scoped-token", Role.DEVELOPER),
    user("GET", "/v1/artifacts/<artifact_id>/scoped-tokens", Role.DEVELOPER),
    # Developers may revoke only the tokens they minted; this one is the owner's.
    admin("DELETE", "/v1/artifact-tokens/<artifact_token_id>"),
    user("POST", "/v1/artifacts/<artifact_id>/install-link"),
    # runners (user side)
    admin("POST", "/v1/runners/register", body={"name": "r2"}, enrollment=True),
    user("GET", "/v1/runners", Role.DEVELOPER),
    user("GET", "/v1/runners/<runner_id>", Role.DEVELOPER),
    admin("PATCH", "/v1/runners/<runner_id>", body={"name": "renamed"}),
    admin("POST", "/v1/runners/<runner_id>/drain"),
    admin("POST", "/v1/runners/<runner_id>/undrain"),
    admin("DELETE", "/v1/runners/<runner_id>"),
    admin("POST", "/v1/runner-enrollment-tokens", body={"label": "fleet"}),
    admin("GET", "/v1/runner-enrollment-tokens"),
    admin("DELETE", "/v1/runner-enrollment-tokens/<enrollment_token_id>"),
    # settings
    admin("GET", "/v1/settings/artifact-storage"),
    admin("PUT", "/v1/settings/artifact-storage", body=STORAGE_BODY),
    admin("GET", "/v1/settings/retention"),
    admin("PUT", "/v1/settings/retention", body={"log_retention_days": 30}),
    admin("GET", "/v1/settings/retention/last-cleanup"),
    admin("GET", "/v1/settings/preferences"),
    admin("PUT", "/v1/settings/preferences", body={"key_storage_mode": "file"}),
    admin("GET", "/v1/settings/external-access/network"),
    owner_only("PUT", "/v1/settings/external-access/network", body={"allowed_origins": []}),
    admin("GET", "/v1/settings/external-access/trusted-proxy"),
    owner_only("PUT", "/v1/settings/external-access/trusted-proxy", body={}),
    admin("GET", "/v1/settings/external-access/preflight"),
    admin("GET", "/v1/settings/external-access/oidc"),
    owner_only(
        "PUT",
        "/v1/settings/external-access/oidc",
        body={"issuer_url": DEAD_ISSUER, "client_id": "c"},
    ),
    owner_only(
        "POST",
        "/v1/settings/external-access/oidc/test-connection",
        body={"issuer_url": DEAD_ISSUER},
    ),
    # notification channels
    admin("GET", "/v1/settings/notification-channels"),
    admin("POST", "/v1/settings/notification-channels", body=CHANNEL_BODY),
    admin("GET", "/v1/settings/notification-channels/<channel_id>"),
    admin("PATCH", "/v1/settings/notification-channels/<channel_id>", body={"name": "renamed"}),
    admin("POST", "/v1/settings/notification-channels/<channel_id>/test"),
    admin("GET", "/v1/settings/notification-channels/<channel_id>/deliveries"),
    admin("DELETE", "/v1/settings/notification-channels/<channel_id>"),
    # the runner protocol
    runner_websocket("/v1/runners/<runner_id>/channel"),
    runner("POST", "/v1/runners/<runner_id>/heartbeat", body={"status": "online"}),
    runner("POST", "/v1/runners/<runner_id>/claim", body={"protocol_version": 4}),
    runner("GET", "/v1/runners/<runner_id>/jobs/<job_build_id>"),
    runner(
        "POST", "/v1/runners/<runner_id>/jobs/<job_build_id>/status", body={"status": "running"}
    ),
    runner("POST", "/v1/runners/<runner_id>/jobs/<job_build_id>/logs", body={"chunks": []}),
    runner(
        "POST",
        "/v1/runners/<runner_id>/jobs/<job_build_id>/artifacts",
        body={"name": "a.txt", "artifact_type": "generic"},
    ),
    runner("POST", "/v1/runners/<runner_id>/jobs/<job_build_id>/artifacts/<artifact_id>/complete"),
    runner(
        "POST",
        "/v1/runners/<runner_id>/jobs/<job_build_id>/artifacts/<artifact_id>/abort",
        body={"error_message": "x"},
    ),
    runner(
        "GET",
        "/v1/runners/<runner_id>/jobs/<job_build_id>/android-signing",
        headers={"X-Oore-Signing-Token": "<signing_token>"},
    ),
    runner(
        "GET",
        "/v1/runners/<runner_id>/jobs/<job_build_id>/ios-signing",
        headers={"X-Oore-Signing-Token": "<signing_token>"},
    ),
]


def _shape(rule: str) -> str:
    """A rule with its placeholders blanked: the table names them for filling in."""
    return re.sub(r"<[^>]*>", "<>", rule)


def _route_keys(app: QuartTrio) -> set[tuple[str, str]]:
    keys = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                keys.add((method, _shape(rule.rule)))
    return keys


async def test_the_table_names_every_route_the_app_serves(app: QuartTrio) -> None:
    served = _route_keys(app)
    listed = {(r.method, _shape(r.rule)) for r in ROUTES}
    assert sorted(served - listed) == [], "routes without an access rule in the table"
    assert sorted(listed - served) == [], "table rows for routes the app does not serve"


@dataclass
class World:
    """A project with a pipeline, builds, a runner holding a job, an artifact and users."""

    api: Api
    tokens: dict[Role, str]
    ids: dict[str, str]
    runner_token: str
    other_runner_token: str
    api_token: str
    enrollment_token: str
    refused: list[tuple[str | None, str]]

    def path(self, rule: str) -> str:
        for name, value in self.ids.items():
            rule = rule.replace(f"<{name}>", value)
        return rule

    def fill(self, body: Any) -> Any:
        if isinstance(body, str):
            return self.path(body)
        if isinstance(body, list):
            return [self.fill(item) for item in body]
        if isinstance(body, dict):
            return {key: self.fill(value) for key, value in body.items()}
        return body

    async def call(
        self, route: Route, token: str | None, *, authorization: str | None = None
    ) -> Reply:
        """The route called with ``token`` as a Bearer credential, or with a whole
        ``authorization`` header value."""
        if authorization is None and token is not None:
            authorization = f"Bearer {token}"
        if route.websocket:
            return await _upgrade(self.api, self.path(route.rule), authorization)
        headers = {} if authorization is None else {"Authorization": authorization}
        return await self.api.call(
            route.method,
            self.path(route.rule),
            json=self.fill(route.body),
            headers={
                **{name: self.path(value) for name, value in route.headers.items()},
                **headers,
            },
        )


async def _upgrade(api: Api, path: str, authorization: str | None) -> Reply:
    """A WebSocket route's refusal (an HTTP answer), or 101 and its reply to a heartbeat."""
    headers = {} if authorization is None else {"Authorization": authorization}
    async with api.client.websocket(path, headers=headers) as ws:
        try:
            await ws.send(json.dumps({"id": 1, "op": "heartbeat", "status": "online"}))
            reply = json.loads(await ws.receive())
        except WebsocketResponseError as refused:
            answer = refused.response
            return Reply(answer.status_code, await answer.get_json(), answer.headers)
    return Reply(101, reply, Headers())


@pytest.fixture
def guess_limit() -> int:
    """Every route is tried with wrong credentials from one address here: no lockout (the
    lockout itself is tests/http/test_guesses.py's)."""
    return 0


@pytest.fixture
async def world(
    api: Api, owner_token: str, make_user: UserFactory, repo: Path, store: Store, clock: FakeClock
) -> World:
    admin_user = await make_user(Role.ADMIN)
    developer = await make_user(Role.DEVELOPER)
    qa = await make_user(Role.QA_VIEWER)
    member = await make_user(Role.DEVELOPER)
    spare = await make_user(Role.DEVELOPER)
    target = await make_user(Role.DEVELOPER)
    api_token = await api.post(
        "/v1/api-tokens", json={"name": "ci", "role": "developer"}, token=owner_token
    )
    assert api_token.status == 200, api_token.body
    setup = await make_setup(api, owner_token, repo)
    for who, role in ((developer, "developer"), (qa, "viewer"), (member, "viewer")):
        added = await api.post(
            f"/v1/projects/{setup.project_id}/members",
            json={"user_id": who.user.id, "role": role},
            token=owner_token,
        )
        assert added.status == 201, added.body
    job = await running_job(setup, "holder")
    artifact = await job.publish("app.txt", b"hello")
    scoped = await api.post(f"/v1/artifacts/{artifact['id']}/scoped-token", token=owner_token)
    assert scoped.status == 200, scoped.body
    done = await setup.trigger()
    cancelled = await api.post(f"/v1/builds/{done['id']}/cancel", token=owner_token)
    assert cancelled.status == 200, cancelled.body
    queued = await setup.trigger()
    enrollment = await api.post(
        "/v1/runner-enrollment-tokens", json={"label": "x"}, token=owner_token
    )
    assert enrollment.status == 201, enrollment.body
    other = await setup.runner("other")
    channel = await api.post(
        "/v1/settings/notification-channels", json=CHANNEL_BODY, token=owner_token
    )
    assert channel.status == 201, channel.body

    now = clock.now()
    expired = new_token()
    await store.users.create_session(
        hash_token(expired), admin_user.user.id, now - USER_SESSION_TTL, now
    )
    revoked = new_token()
    await store.users.create_session(hash_token(revoked), admin_user.user.id, now, now + 60)
    logout = await api.post("/v1/auth/logout", token=revoked)
    assert logout.status == 200, logout.body
    revoked_api = await api.post(
        "/v1/api-tokens", json={"name": "gone", "role": "admin"}, token=owner_token
    )
    gone = await api.call("DELETE", f"/v1/api-tokens/{revoked_api.body['id']}", token=owner_token)
    assert gone.status == 200, gone.body
    short_api = await api.post(
        "/v1/api-tokens",
        json={"name": "short", "role": "admin", "expires_at": now + 30},
        token=owner_token,
    )
    assert short_api.status == 200, short_api.body
    clock.advance(31)
    refused: list[tuple[str | None, str]] = [
        (None, "missing_auth"),
        (job.runner.token, "invalid_session"),  # credentials of the wrong kind
        (enrollment.body["token"], "invalid_session"),
        (expired, "invalid_session"),
        (revoked, "invalid_session"),
        (revoked_api.body["token"], "invalid_session"),
        (short_api.body["token"], "invalid_session"),
        # An Authorization header of another scheme or spelling presents no credential.
        ("Basic x", "missing_auth"),
        (f"bearer {owner_token}", "missing_auth"),
        ("Bearer not-a-token", "invalid_session"),
    ]
    return World(
        api=api,
        tokens={
            Role.OWNER: owner_token,
            Role.ADMIN: admin_user.token,
            Role.DEVELOPER: developer.token,
            Role.QA_VIEWER: qa.token,
        },
        ids={
            "project_id": setup.project_id,
            "pipeline_id": setup.pipeline_id,
            "build_id": queued["id"],
            "done_build_id": done["id"],
            "job_build_id": job.build_id,
            "signing_token": job.signing_token,
            "runner_id": job.runner.id,
            "artifact_id": artifact["id"],
            "artifact_token_id": scoped.body["id"],
            "enrollment_token_id": enrollment.body["enrollment_token"]["id"],
            "member_id": member.user.id,
            "spare_id": spare.user.id,
            "target_id": target.user.id,
            "api_token_id": api_token.body["id"],
            "channel_id": channel.body["channel"]["id"],
            "integration_id": "00000000-0000-4000-8000-0000000000a1",
            "token": new_token(),
            "variable": "MATRIX_VAR",
        },
        runner_token=job.runner.token,
        other_runner_token=other.token,
        api_token=api_token.body["token"],
        enrollment_token=enrollment.body["token"],
        refused=refused,
    )


def _expected_denial(route: Route, role: Role) -> str | None:
    if RANK.index(role) >= RANK.index(route.lowest):
        return None
    return route.codes.get(role, route.denied)


# Routes whose success changes the world for the routes after them (they end the callers'
# sessions, delete the project or pipeline, or switch storage off) get a world of their own;
# every other route shares one world, in table order, and their problems are reported
# together.
ISOLATED = {
    ("POST", "/v1/auth/logout"),
    ("DELETE", "/v1/projects/<project_id>"),
    ("DELETE", "/v1/pipelines/<pipeline_id>"),
    ("PUT", "/v1/settings/artifact-storage"),
}


async def _user_route_problems(world: World, route: Route) -> list[str]:
    """What differs from the table for one user route, as readable lines."""
    problems: list[str] = []

    def expect(what: str, reply: Reply, status: int, code: str | None) -> None:
        if (reply.status, reply.code) != (status, code):
            problems.append(f"{route.id} {what}: {reply.status} {reply.body}")

    for token, code in world.refused:
        if route.enrollment and token == world.enrollment_token:
            continue
        if token is not None and " " in token:  # a whole header value
            reply = await world.call(route, None, authorization=token)
        else:
            reply = await world.call(route, token)
        expect(f"refused credential {str(token)[:8]}", reply, 401, code)
    if route.auth is Auth.SESSION_ONLY:
        expect("API token", await world.call(route, world.api_token), 401, "invalid_session")
    for role in RANK:
        reply = await world.call(route, world.tokens[role])
        denial = _expected_denial(route, role)
        if denial is not None:
            expect(role.value, reply, 403, denial)
        elif route.remote_only and (reply.status, reply.code) == (403, "mode_restricted"):
            continue
        elif reply.status in (401, 403, 500):
            problems.append(f"{route.id} {role.value}: {reply.status} {reply.body}")
    return problems


USER_ROUTES = [r for r in ROUTES if r.auth in (Auth.USER, Auth.SESSION_ONLY)]
SHARED = [r for r in USER_ROUTES if (r.method, r.rule) not in ISOLATED]
ALONE = [r for r in USER_ROUTES if (r.method, r.rule) in ISOLATED]


async def test_user_routes_refuse_bad_credentials_and_follow_the_roles(world: World) -> None:
    problems: list[str] = []
    for route in SHARED:
        problems += await _user_route_problems(world, route)
    assert problems == []


@pytest.mark.parametrize("route", ALONE, ids=[r.id for r in ALONE])
async def test_routes_that_change_the_world_follow_the_roles(world: World, route: Route) -> None:
    assert await _user_route_problems(world, route) == []


async def test_runner_routes_take_only_their_own_runner_token(world: World) -> None:
    problems: list[str] = []
    for route in (r for r in ROUTES if r.auth is Auth.RUNNER):
        refused: list[tuple[str | None, int, str]] = [
            (None, 401, "missing_auth"),
            (world.tokens[Role.OWNER], 401, "invalid_token"),
            (new_token(), 401, "invalid_token"),
            (world.other_runner_token, 403, "runner_mismatch"),
        ]
        for token, status, code in refused:
            reply = await world.call(route, token)
            if (reply.status, reply.code) != (status, code):
                problems.append(f"{route.id} {str(token)[:8]}: {reply.status} {reply.body}")
        for header, code in (
            (f"Token {world.runner_token}", "missing_auth"),
            (f"bearer {world.runner_token}", "missing_auth"),
            ("Bearer not-a-token", "invalid_token"),
        ):
            reply = await world.call(route, None, authorization=header)
            if (reply.status, reply.code) != (401, code):
                problems.append(f"{route.id} {header[:8]}: {reply.status} {reply.body}")
        reply = await world.call(route, world.runner_token)
        if reply.status in (401, 403, 500):
            problems.append(f"{route.id} own token: {reply.status} {reply.body}")
    assert problems == []


SESSION_CODES = ("missing_auth", "invalid_session", "permission_denied", "insufficient_role")


async def test_public_and_setup_routes_ask_for_no_user_session(world: World) -> None:
    problems: list[str] = []
    for route in ROUTES:
        if route.auth is Auth.PUBLIC:
            reply = await world.call(route, None)
            if reply.status == 500 or reply.code in SESSION_CODES:
                problems.append(f"{route.id}: {reply.status} {reply.body}")
        elif route.auth is Auth.PATH_TOKEN:
            # A made-up credential in the path is refused with a code of its own.
            reply = await world.call(route, world.tokens[Role.OWNER])
            if reply.status not in (401, 404, 410) or reply.code is None:
                problems.append(f"{route.id}: {reply.status} {reply.body}")
        elif route.auth is Auth.SETUP:
            # Every setup step is closed once setup is complete, whatever is presented.
            for token in (None, world.tokens[Role.OWNER], new_token()):
                reply = await world.call(route, token)
                if (reply.status, reply.code) != (409, "already_configured"):
                    problems.append(f"{route.id}: {reply.status} {reply.body}")
        elif route.auth is Auth.SETUP_READ:
            # The summary needs a setup session (none is open once setup is complete), or
            # the owner's or an admin's sign-in.
            expected: list[tuple[str | None, int, str | None]] = [
                (None, 401, "no_session"),
                (new_token(), 401, "no_session"),
                (world.tokens[Role.OWNER], 200, None),
                (world.tokens[Role.ADMIN], 200, None),
                (world.tokens[Role.DEVELOPER], 403, "insufficient_role"),
            ]
            for token, status, code in expected:
                reply = await world.call(route, token)
                if (reply.status, reply.code) != (status, code):
                    problems.append(f"{route.id}: {reply.status} {reply.body}")
    assert problems == []
