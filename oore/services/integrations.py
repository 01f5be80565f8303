"""Source integrations (contract §2.9, §9.1, §9.2): GitHub Apps through the manifest flow,
GitLab through OAuth or a personal token, and the local git repositories projects build
from. Credentials are sealed with the instance's key before they reach the store; a
credential the provider stops accepting opens a visible problem on the integration."""

from __future__ import annotations

import html
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from oore.domain.crypto import SecretBox, required_box
from oore.domain.ids import new_id
from oore.domain.integrations import (
    ALL_REPOSITORIES_LIMIT,
    GITLAB_CALLBACK_PATH,
    GITLAB_SCOPES,
    INSTALL_COOKIE_TTL_SECONDS,
    AuthMode,
    Installation,
    Integration,
    IntegrationProvider,
    IntegrationRepository,
    IntegrationStatus,
    Problem,
    SealedState,
    StateKind,
    check_gitlab_host,
    check_redirect_url,
    check_webhook_url,
    github_manifest,
    gitlab_display_name,
    instance_base,
    is_https_origin,
    new_webhook_secret,
    redirect_origin,
)
from oore.domain.rbac import Action, Resource, allowed, require
from oore.domain.setup import RuntimeMode
from oore.domain.tokens import hash_token
from oore.domain.users import Session, User, UserStatus
from oore.errors import ApiError, Conflict, Forbidden, InvalidInput, NotFound
from oore.services.clock import WallClock
from oore.services.identity import AuditSink
from oore.services.network import Network
from oore.services.scm import (
    CredentialRejected,
    GitLabCredential,
    ScmClient,
)
from oore.store import AuditEntry, Store
from oore.store.integrations import (
    IntegrationCounts,
    IntegrationFilter,
    NewIntegration,
)

MAX_PENDING_STATES = 1024
INTEGRATION_DELETED = "canceled: the project's source integration was deleted"
T = TypeVar("T")


@dataclass(frozen=True)
class IntegrationQuery:
    provider: str | None = None
    search: str | None = None
    sort: str | None = None
    descending: bool = True
    limit: int = 20
    offset: int = 0


@dataclass(frozen=True)
class IntegrationDetail:
    integration: Integration
    counts: IntegrationCounts

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "integration": self.integration.to_json(),
            "installation_count": self.counts.installations,
            "repository_count": self.counts.repositories,
        }
        if self.integration.last_webhook_at is not None:
            body["last_webhook_at"] = self.integration.last_webhook_at
        if self.integration.problem is not None:
            body["problem"] = self.integration.problem.to_json()
        return body


@dataclass(frozen=True)
class GitLabStart:
    host_url: str | None
    auth_mode: str | None
    client_id: str | None = None
    client_secret: str | None = None
    access_token: str | None = None


@dataclass(frozen=True)
class Page:
    """What an HTML step answers: a page, or a redirect (with a cookie to set or clear)."""

    html: str
    status: int = 200
    location: str | None = None
    set_cookie: str | None = None
    clear_cookie: bool = False


# The one script a page here runs (the manifest form's submit); its hash is in the page's
# Content-Security-Policy.
MANIFEST_SUBMIT_SCRIPT = "document.getElementById('manifest').submit();"


def html_page(title: str, message: str, *, refresh_to: str | None = None) -> str:
    head = ""
    if refresh_to is not None:
        head = f'<meta http-equiv="refresh" content="2;url={html.escape(refresh_to)}">'
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title>{head}</head><body><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(message)}</p></body></html>"
    )


class Integrations:
    """Use cases of the Integrations API group."""

    def __init__(
        self,
        store: Store,
        clock: WallClock,
        audit: AuditSink,
        secrets: SecretBox | None,
        network: Network,
        scm: ScmClient,
        *,
        cookie_secure: bool = False,
    ) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._secrets = secrets
        self._network = network
        self.scm = scm
        self.cookie_secure = cookie_secure

    # -- helpers -------------------------------------------------------------------------

    def _box(self) -> SecretBox:
        return required_box(self._secrets)

    def _seal_json(self, value: dict[str, Any]) -> str:
        return self._box().encrypt(json.dumps(value, separators=(",", ":")))

    def _open_json(self, stored: str | None) -> dict[str, Any]:
        if stored is None:
            return {}
        found = json.loads(self._box().decrypt(stored))
        return found if isinstance(found, dict) else {}

    async def _record(
        self, user: User, action: str, resource_id: str, details: dict[str, Any] | None
    ) -> None:
        await self._audit.submit_one(
            AuditEntry.by(
                user,
                action,
                "integration",
                resource_id,
                details=details,
                created_at=self._clock.now(),
            )
        )

    async def _require_remote(self) -> None:
        prefs = await self._store.instance.preferences()
        if prefs.runtime_mode is not RuntimeMode.REMOTE:
            raise Forbidden("mode_restricted", "Integrations need the remote runtime mode")

    async def _writer(self, session: Session) -> None:
        require(session.user.role, Resource.INTEGRATIONS, Action.WRITE)
        await self._require_remote()

    async def _found(self, integration_id: str) -> Integration:
        found = await self._store.integrations.get(integration_id)
        if found is None:
            raise NotFound("not_found", "Integration not found")
        return found

    async def _seal_state(self, state: SealedState, ttl: int) -> str:
        """The sealed state, its nonce recorded (as a hash) for any daemon to use up once."""
        sealed = self._box().encrypt(state.dumps())
        await self._store.integration_states.issue(
            hash_token(state.nonce),
            expires_at=state.created_at + ttl,
            capacity=MAX_PENDING_STATES,
            now=self._clock.now(),
        )
        return sealed

    async def _open_state(
        self, sealed: str | None, kind: StateKind, ttl: int
    ) -> SealedState | None:
        """The state if it opens, is of ``kind``, fresh, and unused (it is used up now)."""
        if not sealed or self._secrets is None:
            return None
        try:
            state = SealedState.loads(self._secrets.decrypt(sealed))
        except ApiError:
            return None
        now = self._clock.now()
        if state is None or state.kind is not kind or state.expired(now, ttl):
            return None
        if not await self._store.integration_states.consume(hash_token(state.nonce), now):
            return None
        return state

    async def _initiator(self, state: SealedState) -> User | None:
        """The user who started the flow, if still active and allowed to write."""
        user = await self._store.users.get(state.user_id)
        if user is None or user.status is not UserStatus.ACTIVE:
            return None
        if not allowed(user.role, Resource.INTEGRATIONS, Action.WRITE):
            return None
        return user

    async def watched(self, integration: Integration, call: Callable[[], Awaitable[T]]) -> T:
        """Run a call that presents the integration's stored credential: a refusal records
        a problem on it, a success clears a standing one."""
        try:
            result = await call()
        except CredentialRejected as exc:
            await self._store.integrations.record_problem(
                integration.id, Problem(exc.code, exc.message, self._clock.now())
            )
            raise
        if integration.problem is not None:
            await self._store.integrations.clear_problem(integration.id, self._clock.now())
        return result

    async def github_token(self, integration: Integration, installation_id: str) -> str:
        """An installation token of the GitHub App for one of its installations (ids of
        this store); 409 ``invalid_source_state`` without usable credentials."""
        stored = await self._store.integrations.credentials(integration.id)
        pem = self._open_json(stored.credentials_enc if stored else None).get("pem")
        installation = next(
            (
                found
                for found in await self._store.integrations.installations(integration.id)
                if found.id == installation_id
            ),
            None,
        )
        if not isinstance(pem, str) or integration.app_id is None or installation is None:
            raise Conflict("invalid_source_state", "The integration has no usable credentials")
        async with self.scm.session() as scm:
            token = await scm.installation_token(
                integration.app_id, pem, installation.external_id, self._clock.now()
            )
        return token.token

    async def gitlab_credential(self, integration: Integration) -> tuple[str, GitLabCredential]:
        """The GitLab host and the stored token; 409 ``invalid_source_state`` without one."""
        stored = await self._store.integrations.credentials(integration.id)
        token = self._open_json(stored.credentials_enc if stored else None).get("access_token")
        if not isinstance(token, str) or integration.host_url is None:
            raise Conflict("invalid_source_state", "The integration has no access token yet")
        oauth = integration.auth_mode is AuthMode.OAUTH_APP
        return integration.host_url, GitLabCredential(token, oauth=oauth)

    # -- reading -------------------------------------------------------------------------

    async def page(
        self, session: Session, query: IntegrationQuery
    ) -> tuple[list[Integration], int, int]:
        require(session.user.role, Resource.INTEGRATIONS, Action.READ)
        return await self._store.integrations.page(
            IntegrationFilter(query.provider, query.search, query.sort, query.descending),
            limit=query.limit,
            offset=query.offset,
        )

    async def detail(self, session: Session, integration_id: str) -> IntegrationDetail:
        require(session.user.role, Resource.INTEGRATIONS, Action.READ)
        integration = await self._found(integration_id)
        counts = await self._store.integrations.counts(integration.id)
        return IntegrationDetail(integration, counts)

    async def repositories(
        self, session: Session, integration_id: str, search: str | None, limit: int, offset: int
    ) -> tuple[list[IntegrationRepository], int]:
        require(session.user.role, Resource.INTEGRATIONS, Action.READ)
        integration = await self._found(integration_id)
        return await self._store.integrations.repositories(
            integration.id, search=search, limit=limit, offset=offset
        )

    async def all_repositories(
        self,
        session: Session,
        search: str | None,
        provider: str | None,
        limit: int = ALL_REPOSITORIES_LIMIT[0],
        offset: int = 0,
    ) -> tuple[list[IntegrationRepository], int]:
        require(session.user.role, Resource.INTEGRATIONS, Action.READ)
        return await self._store.integrations.repositories(
            None, search=search, limit=limit, offset=offset, provider=provider
        )

    async def installations(self, session: Session, integration_id: str) -> list[Installation]:
        require(session.user.role, Resource.INTEGRATIONS, Action.READ)
        integration = await self._found(integration_id)
        return await self._store.integrations.installations(integration.id)

    # -- deleting ------------------------------------------------------------------------

    async def delete(self, session: Session, integration_id: str) -> None:
        require(session.user.role, Resource.INTEGRATIONS, Action.DELETE)
        integration = await self._found(integration_id)
        canceled = await self._store.integrations.delete(
            integration.id, cancel_reason=INTEGRATION_DELETED, now=self._clock.now()
        )
        if canceled is None:
            raise NotFound("not_found", "Integration not found")
        await self._record(
            session.user,
            "integration_deleted",
            integration.id,
            {"provider": integration.provider.value, "canceled_builds": canceled},
        )

    # -- GitHub --------------------------------------------------------------------------

    async def github_start(
        self, session: Session, webhook_url: str | None, redirect_url: str | None
    ) -> str:
        """``POST /v1/integrations/github/start`` → the ``create_url`` to open."""
        await self._writer(session)
        webhook = check_webhook_url(webhook_url)
        redirect = check_redirect_url(redirect_url, self._network.allowed_origins)
        state = SealedState(
            kind=StateKind.GITHUB_MANIFEST,
            nonce=new_id(),
            user_id=session.user.id,
            user_email=session.user.email,
            redirect_url=redirect,
            created_at=self._clock.now(),
            webhook_url=webhook,
        )
        sealed = await self._seal_state(state, 600)
        base = instance_base(webhook)
        return f"{base}/v1/integrations/github/create?state={quote(sealed, safe='')}"

    def github_create_page(self, sealed: str | None) -> str:
        """The page that posts the app manifest to GitHub (the state is checked later)."""
        state = None
        if sealed and self._secrets is not None:
            try:
                state = SealedState.loads(self._secrets.decrypt(sealed))
            except ApiError:
                state = None
        if (
            sealed is None
            or state is None
            or state.kind is not StateKind.GITHUB_MANIFEST
            or state.webhook_url is None
            or state.expired(self._clock.now())
        ):
            return html_page("GitHub App setup failed", "This link is invalid or has expired.")
        base = instance_base(state.webhook_url)
        manifest = json.dumps(github_manifest(base, state.webhook_url))
        action = (
            f"{self.scm.config.github_web_url.rstrip('/')}/settings/apps/new?"
            f"{urlencode({'state': sealed})}"
        )
        return (
            '<!doctype html><html><head><meta charset="utf-8"><title>Create the GitHub App'
            f'</title></head><body><form id="manifest" method="post" '
            f'action="{html.escape(action)}"><input type="hidden" name="manifest" '
            f'value="{html.escape(manifest)}"><noscript><button type="submit">Continue to '
            f"GitHub</button></noscript></form><script>{MANIFEST_SUBMIT_SCRIPT}</script>"
            "</body></html>"
        )

    async def _store_github_app(self, user: User, code: str) -> Integration:
        async with self.scm.session() as scm:
            app = await scm.convert_manifest(code)
        credentials = self._seal_json(
            {"client_id": app.client_id, "client_secret": app.client_secret, "pem": app.pem}
        )
        webhook_secret = (
            None if app.webhook_secret is None else self._box().encrypt(app.webhook_secret)
        )
        integration = await self._store.integrations.create(
            NewIntegration(
                provider=IntegrationProvider.GITHUB,
                auth_mode=AuthMode.GITHUB_APP,
                status=IntegrationStatus.ACTIVE,
                host_url=self.scm.config.github_web_url.rstrip("/"),
                display_name=app.name,
                app_id=app.app_id,
                app_slug=app.slug,
                credentials_enc=credentials,
                webhook_secret_enc=webhook_secret,
                created_by=user.id,
                now=self._clock.now(),
            )
        )
        await self._record(
            user, "integration_created", integration.id, {"provider": "github", "app": app.slug}
        )
        return integration

    async def github_complete(self, session: Session, code: str | None) -> Integration:
        """``POST /v1/integrations/github/complete``: convert the code, store the app."""
        await self._writer(session)
        if code is None or not code.strip():
            raise InvalidInput("invalid_input", "code is required")
        return await self._store_github_app(session.user, code.strip())

    async def github_callback(self, code: str | None, sealed: str | None) -> Page:
        """GitHub sent the browser back with a manifest code."""
        state = await self._open_state(sealed, StateKind.GITHUB_MANIFEST, 600)
        if state is None or not code:
            return Page(html_page("GitHub App setup failed", "This link is invalid or expired."))
        user = await self._initiator(state)
        if user is None:
            return Page(html_page("GitHub App setup failed", "You may no longer do this."))
        try:
            check_redirect_url(state.redirect_url, self._network.allowed_origins)
            integration = await self._store_github_app(user, code)
        except ApiError as exc:
            return Page(html_page("GitHub App setup failed", exc.message))
        install = SealedState(
            kind=StateKind.GITHUB_INSTALL,
            nonce=new_id(),
            user_id=user.id,
            user_email=user.email,
            redirect_url=state.redirect_url,
            created_at=self._clock.now(),
            integration_id=integration.id,
        )
        cookie = await self._seal_state(install, INSTALL_COOKIE_TTL_SECONDS)
        web = self.scm.config.github_web_url.rstrip("/")
        slug = quote(integration.app_slug or "", safe="")
        return Page(
            html_page("GitHub App created", "Continue to install it."),
            status=303,
            location=f"{web}/apps/{slug}/installations/new",
            set_cookie=cookie,
        )

    async def github_installed(self, cookie: str | None) -> Page:
        """GitHub finished an installation; only the cookie says which integration."""
        state = await self._open_state(cookie, StateKind.GITHUB_INSTALL, INSTALL_COOKIE_TTL_SECONDS)
        fallback = "/settings/integrations?github=success"
        if state is None or state.integration_id is None:
            return Page(
                html_page("GitHub App installed", "Return to oore.", refresh_to=fallback),
                clear_cookie=True,
            )
        frontend = redirect_origin(state.redirect_url)
        fallback = f"{frontend}/settings/integrations?github=success"
        user = await self._initiator(state)
        integration = await self._store.integrations.get(state.integration_id)
        if user is None or integration is None:
            return Page(
                html_page("GitHub App installed", "Return to oore.", refresh_to=fallback),
                clear_cookie=True,
            )
        try:
            await self._sync(integration)
        except ApiError as exc:
            return Page(
                html_page("GitHub App installed", f"Syncing failed: {exc.message}"),
                clear_cookie=True,
            )
        target = f"{frontend}/settings/integrations/{integration.id}?installed=true"
        return Page(
            html_page("GitHub App installed", "Returning to oore.", refresh_to=target),
            clear_cookie=True,
        )

    async def _sync_github(self, integration: Integration) -> list[Installation]:
        stored = await self._store.integrations.credentials(integration.id)
        creds = self._open_json(stored.credentials_enc if stored else None)
        pem, app_id = creds.get("pem"), integration.app_id
        if not isinstance(pem, str) or app_id is None:
            raise Conflict("invalid_source_state", "The integration has no usable credentials")
        now = self._clock.now()
        web = self.scm.config.github_web_url.rstrip("/")
        synced: list[Installation] = []
        async with self.scm.session() as scm:
            for remote in await scm.list_installations(app_id, pem, now):
                installation = await self._store.integrations.add_installation(
                    integration.id,
                    external_id=remote.id,
                    account_name=remote.account_login,
                    account_type=remote.account_type,
                    now=now,
                )
                token = await scm.installation_token(app_id, pem, remote.id, now)
                repositories = await scm.installation_repositories(token.token)
                await self._store.integrations.upsert_repositories(
                    installation.id, repositories, host_url=web, now=now, prune=True
                )
                synced.append(installation)
        return synced

    # -- GitLab --------------------------------------------------------------------------

    async def _sync_gitlab(self, integration: Integration) -> list[Installation]:
        host, credential = await self.gitlab_credential(integration)
        now = self._clock.now()
        async with self.scm.session() as scm:
            user = await scm.gitlab_user(host, credential)
            projects = await scm.gitlab_projects(host, credential)
        installation = await self._store.integrations.add_installation(
            integration.id,
            external_id=user.id,
            account_name=user.username,
            account_type="User",
            now=now,
        )
        await self._store.integrations.upsert_repositories(
            installation.id, projects, host_url=host, now=now, prune=True
        )
        return [installation]

    async def _sync(self, integration: Integration) -> list[Installation]:
        if integration.provider is IntegrationProvider.GITHUB:
            return await self.watched(integration, lambda: self._sync_github(integration))
        if integration.provider is IntegrationProvider.GITLAB:
            return await self.watched(integration, lambda: self._sync_gitlab(integration))
        return await self._store.integrations.installations(integration.id)

    async def sync_installations(self, session: Session, integration_id: str) -> list[Installation]:
        """``POST /v1/integrations/{id}/installations``: fetch installations and repositories."""
        await self._writer(session)
        integration = await self._found(integration_id)
        return await self._sync(integration)

    async def gitlab_start(self, session: Session, req: GitLabStart) -> Integration:
        """``POST /v1/integrations/gitlab/start``."""
        await self._writer(session)
        host = check_gitlab_host(req.host_url)
        mode = req.auth_mode
        now = self._clock.now()
        if mode == AuthMode.PERSONAL_TOKEN.value:
            token = (req.access_token or "").strip()
            if not token:
                raise InvalidInput("invalid_input", "access_token is required")
            credential = GitLabCredential(token)
            async with self.scm.session() as scm:
                user = await scm.gitlab_user(host, credential)
            integration = await self._store.integrations.create(
                NewIntegration(
                    provider=IntegrationProvider.GITLAB,
                    auth_mode=AuthMode.PERSONAL_TOKEN,
                    status=IntegrationStatus.ACTIVE,
                    host_url=host,
                    display_name=gitlab_display_name(user.name, host),
                    credentials_enc=self._seal_json({"access_token": token}),
                    created_by=session.user.id,
                    now=now,
                )
            )
            await self._record(
                session.user, "integration_created", integration.id, {"provider": "gitlab"}
            )
            await self._sync(integration)
            return await self._found(integration.id)
        if mode == AuthMode.OAUTH_APP.value:
            client_id = (req.client_id or "").strip()
            client_secret = (req.client_secret or "").strip()
            if not client_id or not client_secret:
                raise InvalidInput("invalid_input", "client_id and client_secret are required")
            async with self.scm.session() as scm:
                await scm.gitlab_version(host)
            integration = await self._store.integrations.create(
                NewIntegration(
                    provider=IntegrationProvider.GITLAB,
                    auth_mode=AuthMode.OAUTH_APP,
                    status=IntegrationStatus.INACTIVE,
                    host_url=host,
                    display_name=gitlab_display_name("GitLab", host),
                    credentials_enc=self._seal_json(
                        {"client_id": client_id, "client_secret": client_secret}
                    ),
                    created_by=session.user.id,
                    now=now,
                )
            )
            await self._record(
                session.user, "integration_created", integration.id, {"provider": "gitlab"}
            )
            return integration
        raise InvalidInput("invalid_input", "auth_mode must be oauth_app or personal_token")

    async def gitlab_authorize(
        self, session: Session, integration_id: str | None, redirect_url: str | None
    ) -> str:
        """``POST /v1/integrations/gitlab/authorize`` → the GitLab authorize URL."""
        await self._writer(session)
        if integration_id is None or not integration_id.strip():
            raise InvalidInput("invalid_input", "integration_id is required")
        redirect = check_redirect_url(redirect_url, self._network.allowed_origins)
        integration = await self._found(integration_id.strip())
        if integration.provider is not IntegrationProvider.GITLAB or (
            integration.auth_mode is not AuthMode.OAUTH_APP
        ):
            raise InvalidInput("invalid_auth_mode", "The integration is not a GitLab OAuth app")
        if not is_https_origin(integration.host_url):
            raise InvalidInput("invalid_input", "The stored GitLab host is not an https origin")
        stored = await self._store.integrations.credentials(integration.id)
        client_id = self._open_json(stored.credentials_enc if stored else None).get("client_id")
        if not isinstance(client_id, str):
            raise Conflict("invalid_source_state", "The integration has no OAuth client")
        state = SealedState(
            kind=StateKind.GITLAB_OAUTH,
            nonce=new_id(),
            user_id=session.user.id,
            user_email=session.user.email,
            redirect_url=redirect,
            created_at=self._clock.now(),
            integration_id=integration.id,
        )
        query = urlencode(
            {
                "client_id": client_id,
                "redirect_uri": redirect_origin(redirect) + GITLAB_CALLBACK_PATH,
                "response_type": "code",
                "state": await self._seal_state(state, 600),
                "scope": GITLAB_SCOPES,
            }
        )
        return f"{integration.host_url}/oauth/authorize?{query}"

    async def gitlab_callback(self, code: str | None, sealed: str | None) -> Page:
        """GitLab sent the browser back with an authorization code."""
        state = await self._open_state(sealed, StateKind.GITLAB_OAUTH, 600)
        if state is None or not code or state.integration_id is None:
            return Page(html_page("GitLab sign-in failed", "This link is invalid or expired."))
        user = await self._initiator(state)
        integration = await self._store.integrations.get(state.integration_id)
        if user is None or integration is None or integration.host_url is None:
            return Page(html_page("GitLab sign-in failed", "You may no longer do this."))
        stored = await self._store.integrations.credentials(integration.id)
        creds = self._open_json(stored.credentials_enc if stored else None)
        origin = redirect_origin(state.redirect_url)
        try:
            async with self.scm.session() as scm:
                tokens = await scm.gitlab_exchange(
                    integration.host_url,
                    client_id=str(creds.get("client_id", "")),
                    client_secret=str(creds.get("client_secret", "")),
                    code=code,
                    redirect_uri=origin + GITLAB_CALLBACK_PATH,
                )
            now = self._clock.now()
            creds.update(
                access_token=tokens.access_token,
                refresh_token=tokens.refresh_token,
                expires_at=None if tokens.expires_in is None else now + tokens.expires_in,
            )
            updated = await self._store.integrations.update(
                integration.id,
                now=now,
                status=IntegrationStatus.ACTIVE,
                credentials_enc=self._seal_json(creds),
            )
            assert updated is not None
            await self._sync(updated)
        except ApiError as exc:
            return Page(html_page("GitLab sign-in failed", exc.message))
        target = f"{origin}/settings/integrations/{integration.id}?connected=true"
        return Page(html_page("GitLab connected", "Returning to oore.", refresh_to=target))

    async def check_gitlab_token(self, session: Session, integration_id: str) -> IntegrationDetail:
        """``POST /v1/integrations/{id}/gitlab-token/check``: present the stored token."""
        await self._writer(session)
        integration = await self._found(integration_id)
        if integration.provider is not IntegrationProvider.GITLAB:
            raise InvalidInput("invalid_auth_mode", "The integration is not a GitLab one")
        host, credential = await self.gitlab_credential(integration)

        async def probe() -> None:
            async with self.scm.session() as scm:
                await scm.gitlab_user(host, credential)

        await self.watched(integration, probe)
        return await self.detail(session, integration.id)

    async def rotate_gitlab_webhook_secret(
        self, session: Session, repository_id: str
    ) -> dict[str, Any]:
        """A new ``oore_`` secret for a GitLab repository; the old one stops at once."""
        await self._writer(session)
        found = await self._store.integrations.repository(repository_id)
        if found is None:
            raise NotFound("not_found", "Repository not found")
        if found.integration.provider is not IntegrationProvider.GITLAB:
            raise InvalidInput("invalid_input", "Only GitLab repositories have webhook secrets")
        secret = new_webhook_secret()
        now = self._clock.now()
        stored = await self._store.integrations.set_repository_webhook_secret(
            found.repository.id, self._box().encrypt(secret), now
        )
        if not stored:
            raise NotFound("not_found", "Repository not found")
        await self._record(
            session.user,
            "gitlab_webhook_secret_rotated",
            found.integration.id,
            {"repository_id": found.repository.id},
        )
        return {"repository_id": found.repository.id, "webhook_secret": secret, "rotated_at": now}

    # -- local git -----------------------------------------------------------------------

    async def local_git(self, session: Session) -> list[tuple[Integration, str]]:
        require(session.user.role, Resource.INTEGRATIONS, Action.READ)
        return await self._store.integrations.local_integrations()

    async def delete_local_git(self, session: Session, integration_id: str) -> None:
        require(session.user.role, Resource.INTEGRATIONS, Action.DELETE)
        integration = await self._found(integration_id)
        if integration.provider is not IntegrationProvider.LOCAL_GIT:
            raise NotFound("not_found", "Local git integration not found")
        await self.delete(session, integration_id)
