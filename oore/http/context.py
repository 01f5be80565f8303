"""What routes reach through the app: the services, the client address, the caller's session."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import trio
from quart import current_app, request

from oore import __version__
from oore.actors import ActorStatistics
from oore.cluster import ClusterState
from oore.domain.client_ip import effective_client_ip
from oore.domain.rate_limit import GuessLimiter, LimitStatistics
from oore.domain.runners import Runner
from oore.domain.users import Session
from oore.http.lean.cache import AnswerCache
from oore.services.access import Access
from oore.services.api_tokens import ApiTokens
from oore.services.artifact_storage import ArtifactStorageService
from oore.services.artifact_tokens import ArtifactTokens
from oore.services.artifacts import Artifacts
from oore.services.audit_log import AuditLog
from oore.services.builds import Builds
from oore.services.database import DatabaseStatus
from oore.services.events import Events
from oore.services.identity import Identity
from oore.services.integrations import Integrations
from oore.services.ios_signing import IosSigning
from oore.services.logs import Logs
from oore.services.metrics import ServiceMetrics
from oore.services.network import Network
from oore.services.notifications import Notifications
from oore.services.previews import Previews
from oore.services.projects import Projects
from oore.services.retention import Retention
from oore.services.runners import Runners
from oore.services.settings import InstanceSettings
from oore.services.setup import Setup
from oore.services.signin import SignIn
from oore.services.signing import Signing
from oore.services.users import Users
from oore.services.variables import Variables
from oore.services.webhooks import Webhooks

CPU_THREADS = 2
SESSION_COOKIE = "oore_session"  # the browser's session (see ``oore/http/cookies.py``)


@dataclass(frozen=True)
class AppServices:
    """Everything the HTTP layer needs, built by the daemon (or a test) and handed to the app."""

    database: DatabaseStatus
    identity: Identity
    access: Access
    projects: Projects
    builds: Builds
    previews: Previews
    runners: Runners
    artifacts: Artifacts
    artifact_storage: ArtifactStorageService
    artifact_tokens: ArtifactTokens
    logs: Logs
    network: Network
    actor_stats: Callable[[], Mapping[str, ActorStatistics]]
    setup: Setup
    instance_settings: InstanceSettings
    users: Users
    api_tokens: ApiTokens
    audit_log: AuditLog
    signin: SignIn
    integrations: Integrations
    webhooks: Webhooks
    notifications: Notifications
    variables: Variables
    ios_signing: IosSigning
    signing: Signing
    metrics: ServiceMetrics
    events: Events
    cluster: Callable[[], ClusterState]
    retention: Retention
    # Failed credential checks per client (oore/domain/rate_limit.py), shared by the Quart
    # app and the lean listener.
    guesses: GuessLimiter
    # The hot reads' answers kept until what they show changes (oore/http/lean/cache.py).
    answers: AnswerCache
    version: str = __version__
    # Session cookies are marked Secure even on plain http (TLS ends at a proxy).
    cookie_secure: bool = False
    # CPU-bound work on client input (large JSON bodies) runs on at most this many threads.
    cpu: trio.CapacityLimiter = field(default_factory=lambda: trio.CapacityLimiter(CPU_THREADS))

    def rate_limits(self) -> list[LimitStatistics]:
        """Every rate limit of this process, for ``/metrics``."""
        return [
            *self.identity.rate_limits(),
            self.signin.limiter.statistics("oidc_start"),
            self.guesses.statistics(),
        ]


def services() -> AppServices:
    found: AppServices = current_app.extensions["oore"]
    return found


def client_ip() -> str | None:
    """The effective client IP of the current request (contract §0.3)."""
    peer = request.remote_addr
    headers = {name.lower(): value for name, value in request.headers.items()}
    return effective_client_ip(peer, headers)


def cookie_session() -> str | None:
    """The session token in the cookie when it is the request's credential (no header)."""
    if "Authorization" in request.headers:
        return None
    return request.cookies.get(SESSION_COOKIE) or None


def user_authorization() -> str | None:
    """The caller's user credential as an Authorization value: the header, else the
    session cookie's token."""
    header = request.headers.get("Authorization")
    if header is not None:
        return header
    token = cookie_session()
    return None if token is None else f"Bearer {token}"


async def require_session() -> Session:
    """The caller's user session; 401 ``missing_auth`` / ``invalid_session`` otherwise."""
    return await services().identity.authenticate(user_authorization())


async def require_user_session() -> Session:
    """Like :func:`require_session`, but an API token is 401 ``invalid_session``."""
    return await services().identity.authenticate_session(user_authorization())


async def require_setup_session() -> int:
    """Validate the caller's setup session and slide it; returns its new expiry (§2.2)."""
    return await services().identity.check_setup_session(request.headers.get("Authorization"))


async def require_runner(runner_id: str) -> Runner:
    """The runner owning the presented token; 401 without one, 403 for another runner's path."""
    return await services().runners.authenticate(request.headers.get("Authorization"), runner_id)
