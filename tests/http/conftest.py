"""HTTP tests: the real app on a real database, driven in-process through Quart's test client."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers

from oore.domain.crypto import SecretBox
from oore.domain.rate_limit import GUESS_LIMIT
from oore.domain.tokens import hash_token, new_token
from oore.domain.users import USER_SESSION_TTL, Role, User, UserStatus
from oore.http.app import create_app
from oore.runtime import Runtime, open_runtime
from oore.scheduling import SchedulingConfig
from oore.services.apple import AppleConfig
from oore.services.artifact_storage import ArtifactsConfig
from oore.services.events import EventsConfig
from oore.services.logs import LogConfig
from oore.services.network import LOCAL_ORIGINS, NetworkDefaults
from oore.services.scm import ScmConfig
from oore.store import Store

LOOPBACK = ("127.0.0.1", 40000)
REMOTE = ("203.0.113.7", 40000)


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: int = 1_800_000_000) -> None:
        self.value = now

    def now(self) -> int:
        return self.value

    def advance(self, seconds: int) -> None:
        self.value += seconds


@dataclass
class Reply:
    status: int
    body: Any
    headers: Headers

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


class Api:
    """Small wrapper: JSON in, status + decoded JSON out, loopback peer unless told."""

    def __init__(self, app: QuartTrio) -> None:
        self.app = app
        self.client = app.test_client()

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        peer: tuple[str, int] = LOOPBACK,
    ) -> Reply:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        payload: dict[str, Any] = {}
        if json is not None:
            payload["json"] = json
        if data is not None:
            payload["data"] = data
        response = await self.client.open(
            path, method=method, headers=sent, scope_base={"client": peer}, **payload
        )
        raw = await response.get_data(as_text=True)
        body: Any = None
        if response.mimetype == "application/json" and raw:
            body = await response.get_json()
        elif raw:
            body = raw
        return Reply(response.status_code, body, response.headers)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Reply:
        return await self.call("POST", path, **kw)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def scheduling_config() -> SchedulingConfig:
    """Leases and timeouts of the runtime under test; modules override it to shorten them."""
    return SchedulingConfig()


@pytest.fixture
def log_config() -> LogConfig:
    """Log limits of the runtime under test; modules override it."""
    return LogConfig()


@pytest.fixture
def events_config() -> EventsConfig:
    """Limits of the live events streams of the runtime under test. A stream ends at once
    here, so the tests that call every GET route get whole answers; the events stream's
    own tests override it."""
    return EventsConfig(stream_seconds=0)


@pytest.fixture
def artifacts_config(tmp_path: Path) -> ArtifactsConfig:
    """Artifact storage of the runtime under test: local under a temporary data directory."""
    return ArtifactsConfig(data_dir=tmp_path / "data", secrets=SecretBox(bytes(range(32))))


@pytest.fixture
def network_defaults(artifacts_config: ArtifactsConfig) -> NetworkDefaults:
    """The network settings of the runtime before any are saved (the daemon's environment)."""
    return NetworkDefaults(
        (*LOCAL_ORIGINS, "https://ci.example.com"),
        artifacts_config.public_url,
        artifacts_config.artifact_delivery_url,
    )


@pytest.fixture
def scm_config() -> ScmConfig:
    """Where the runtime under test finds GitHub; tests/scm_kit.py points it at loopback."""
    return ScmConfig()


@pytest.fixture
def apple_config() -> AppleConfig:
    """Where the runtime under test finds App Store Connect; tests/apple_kit.py points it
    at loopback."""
    return AppleConfig()


@pytest.fixture
def guess_limit(request: pytest.FixtureRequest) -> int:
    """Failed credential checks per client and minute before a lockout. A test that walks
    routes with :func:`refused_sessions` sends many wrong credentials from one address on
    purpose and is not about the lockout: none for it (0); modules may override."""
    return 0 if "refused_sessions" in request.fixturenames else GUESS_LIMIT


@pytest.fixture
async def runtime(
    store: Store,
    clock: FakeClock,
    scheduling_config: SchedulingConfig,
    log_config: LogConfig,
    artifacts_config: ArtifactsConfig,
    network_defaults: NetworkDefaults,
    scm_config: ScmConfig,
    events_config: EventsConfig,
    apple_config: AppleConfig,
    guess_limit: int,
) -> AsyncIterator[Runtime]:
    await store.instance.ensure(clock.now())
    async with open_runtime(
        store,
        clock,
        scheduling_config,
        log_config,
        artifacts_config,
        network_defaults,
        scm_config=scm_config,
        apple_config=apple_config,
        events_config=events_config,
        guess_limit=guess_limit,
    ) as opened:
        yield opened


@pytest.fixture
def app(store: Store, runtime: Runtime) -> QuartTrio:
    return create_app(runtime.app_services(store))


@pytest.fixture
def api(app: QuartTrio) -> Api:
    return Api(app)


@pytest.fixture
async def owner_token(api: Api) -> str:
    reply = await api.post("/v1/auth/local/login", json={})
    assert reply.status == 200, reply.body
    token: str = reply.body["session_token"]
    return token


@dataclass(frozen=True)
class SignedIn:
    """A user with a live session token."""

    user: User
    token: str


class UserFactory(Protocol):
    async def __call__(self, role: Role, email: str | None = None) -> SignedIn: ...


@pytest.fixture
def make_user(store: Store, clock: FakeClock, owner_token: str) -> UserFactory:
    """Active users of any role with a session each (setup is completed first)."""
    counter = itertools.count(1)

    async def make(role: Role, email: str | None = None) -> SignedIn:
        address = email or f"{role.value}{next(counter)}@example.com"
        user = await store.users.create(
            email=address, role=role, status=UserStatus.ACTIVE, subject=None, now=clock.now()
        )
        token = new_token()
        await store.users.create_session(
            hash_token(token), user.id, clock.now(), clock.now() + USER_SESSION_TTL
        )
        return SignedIn(user, token)

    return make


@pytest.fixture
async def refused_sessions(
    store: Store, clock: FakeClock, make_user: UserFactory
) -> list[tuple[str | None, str]]:
    """Credentials every user route refuses (contract §0.2), each with its 401 code."""
    now = clock.now()
    expired = await make_user(Role.ADMIN)
    expired_token = new_token()
    await store.users.create_session(
        hash_token(expired_token), expired.user.id, now - USER_SESSION_TTL, now
    )
    disabled = await store.users.create(
        email="disabled@example.com",
        role=Role.ADMIN,
        status=UserStatus.DISABLED,
        subject=None,
        now=now,
    )
    disabled_token = new_token()
    await store.users.create_session(
        hash_token(disabled_token), disabled.id, now, now + USER_SESSION_TTL
    )
    return [
        (None, "missing_auth"),
        ("ab" * 32, "invalid_session"),
        ("not-a-token", "invalid_session"),
        (expired_token, "invalid_session"),
        (disabled_token, "invalid_session"),
    ]
