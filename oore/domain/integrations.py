"""Source integrations as the API shows them (contract §2.9, §9.1, §9.2): the models, the
URL rules the flows check, and what the sealed OAuth/manifest state holds. Pure: no I/O."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from oore.domain.client_ip import parse_ip
from oore.domain.network import normalise_origin
from oore.errors import InvalidInput

STATE_TTL_SECONDS = 600
INSTALL_COOKIE_TTL_SECONDS = 1800
INSTALL_COOKIE = "oore_gh_install_state"
GITHUB_WEBHOOK_SUFFIX = "/v1/webhooks/github"
GITLAB_CALLBACK_PATH = "/v1/integrations/gitlab/callback"
GITLAB_SCOPES = "read_api read_repository"
WEBHOOK_SECRET_PREFIX = "oore_"
INTEGRATIONS_LIMIT = (20, 200)
REPOSITORIES_LIMIT = (20, 100)
ALL_REPOSITORIES_LIMIT = (100, 100)
INTEGRATION_SORTS = ("name", "provider", "status")


class IntegrationProvider(StrEnum):
    GITHUB = "github"
    GITLAB = "gitlab"
    LOCAL_GIT = "local_git"


class AuthMode(StrEnum):
    GITHUB_APP = "github_app"
    OAUTH_APP = "oauth_app"
    PERSONAL_TOKEN = "personal_token"
    LOCAL = "local"


class IntegrationStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    ERROR = "error"


@dataclass(frozen=True)
class Problem:
    """A credential problem the operator must see; the integration is ``error`` meanwhile."""

    code: str
    message: str
    at: int

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "at": self.at}


@dataclass(frozen=True)
class Integration:
    id: str
    provider: IntegrationProvider
    host_url: str | None
    auth_mode: AuthMode
    status: IntegrationStatus
    display_name: str | None
    app_id: str | None
    app_slug: str | None
    created_by: str | None
    created_at: int
    updated_at: int
    problem: Problem | None = None
    last_webhook_at: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The §2.9 ``Integration`` shape; ``app_id``/``app_slug`` omitted when unset."""
        body: dict[str, Any] = {
            "id": self.id,
            "provider": self.provider.value,
            "host_url": self.host_url,
            "auth_mode": self.auth_mode.value,
            "status": self.status.value,
            "display_name": self.display_name,
        }
        if self.app_id is not None:
            body["app_id"] = self.app_id
        if self.app_slug is not None:
            body["app_slug"] = self.app_slug
        body["created_by"] = self.created_by
        body["created_at"] = self.created_at
        body["updated_at"] = self.updated_at
        return body


@dataclass(frozen=True)
class Installation:
    id: str
    integration_id: str
    external_id: str
    account_name: str
    account_type: str | None
    created_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "integration_id": self.integration_id,
            "external_id": self.external_id,
            "account_name": self.account_name,
            "account_type": self.account_type,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class IntegrationRepository:
    id: str
    installation_id: str
    external_id: str
    full_name: str
    default_branch: str | None
    is_private: bool
    avatar_url: str | None
    created_at: int
    updated_at: int

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "installation_id": self.installation_id,
            "external_id": self.external_id,
            "full_name": self.full_name,
            "default_branch": self.default_branch,
            "is_private": self.is_private,
        }
        if self.avatar_url is not None:
            body["avatar_url"] = self.avatar_url
        body["created_at"] = self.created_at
        body["updated_at"] = self.updated_at
        return body


@dataclass(frozen=True)
class RemoteRepository:
    """A repository as a provider lists it, ready to be stored under an installation."""

    external_id: str
    full_name: str
    default_branch: str | None
    is_private: bool
    avatar_url: str | None


# -- URL rules ------------------------------------------------------------------------------


def check_gitlab_host(raw: str | None) -> str:
    """A GitLab host as its origin: https, or http only for a literal loopback IP; no
    path, query, fragment or credentials. Else 400 ``invalid_input``."""
    bad = InvalidInput("invalid_input", "host_url must be an https origin")
    if raw is None or not raw.strip():
        raise InvalidInput("invalid_input", "host_url is required")
    try:
        parts = urlsplit(raw.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise bad from None
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise bad
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise bad
    origin = normalise_origin(raw)
    if origin is None:
        raise bad
    if parts.scheme == "http":
        ip = parse_ip(parts.hostname or "")
        if ip is None or not ip.is_loopback:
            raise bad
    return origin


def is_https_origin(raw: str | None) -> bool:
    """Would :func:`check_gitlab_host` accept ``raw``? (the authorize step's re-check)"""
    try:
        check_gitlab_host(raw)
    except InvalidInput:
        return False
    return True


def check_redirect_url(raw: str | None, allowed_origins: tuple[str, ...]) -> str:
    """``raw`` when its scheme, host and port equal an allowed origin and it carries no
    credentials; 400 ``invalid_input`` when absent, ``invalid_redirect_url`` otherwise."""
    if raw is None or not raw.strip():
        raise InvalidInput("invalid_input", "redirect_url is required")
    value = raw.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise InvalidInput("invalid_redirect_url", "redirect_url is not a valid URL") from None
    if parts.username is not None or "@" in parts.netloc:
        raise InvalidInput("invalid_redirect_url", "redirect_url must not carry credentials")
    origin = normalise_origin(value)
    if origin is None or origin not in allowed_origins:
        raise InvalidInput("invalid_redirect_url", "redirect_url origin is not allowed")
    return value


def check_webhook_url(raw: str | None) -> str:
    """A parseable absolute http(s) URL for GitHub to deliver to; 400 ``invalid_input``."""
    if raw is None or not raw.strip():
        raise InvalidInput("invalid_input", "webhook_url is required")
    value = raw.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise InvalidInput("invalid_input", "webhook_url is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("invalid_input", "webhook_url is not a valid URL")
    return value


def instance_base(webhook_url: str) -> str:
    """The server's base URL: the webhook URL without its ``/v1/webhooks/github`` suffix."""
    base = webhook_url.rstrip("/")
    if base.endswith(GITHUB_WEBHOOK_SUFFIX):
        base = base[: -len(GITHUB_WEBHOOK_SUFFIX)]
    return base.rstrip("/")


def redirect_origin(redirect_url: str) -> str:
    origin = normalise_origin(redirect_url)
    assert origin is not None  # checked by check_redirect_url
    return origin


def new_webhook_secret() -> str:
    """A GitLab per-repository webhook secret: ``oore_`` + 64 hex."""
    return WEBHOOK_SECRET_PREFIX + secrets.token_hex(32)


def github_manifest(base_url: str, webhook_url: str) -> dict[str, Any]:
    """The GitHub App manifest the create page posts (§9.1 step 2)."""
    return {
        "name": "oore-ci",
        "url": base_url,
        "hook_attributes": {"url": webhook_url, "active": True},
        "redirect_url": f"{base_url}/v1/integrations/github/callback",
        "setup_url": f"{base_url}/v1/integrations/github/installed",
        "setup_on_update": True,
        "public": False,
        "default_permissions": {
            "contents": "read",
            "metadata": "read",
            "pull_requests": "read",
            "statuses": "write",
            "checks": "write",
        },
        "default_events": ["push", "pull_request", "check_run", "check_suite"],
    }


def gitlab_display_name(name: str, host_url: str) -> str:
    host = urlsplit(host_url).netloc or host_url
    return f"{name} ({host})"


# -- sealed state ----------------------------------------------------------------------------


class StateKind(StrEnum):
    GITHUB_MANIFEST = "github_manifest"
    GITHUB_INSTALL = "github_install"
    GITLAB_OAUTH = "gitlab_oauth"


@dataclass(frozen=True)
class SealedState:
    """What a sealed state carries; ``nonce`` makes every state unique (single use)."""

    kind: StateKind
    nonce: str
    user_id: str
    user_email: str
    redirect_url: str
    created_at: int
    webhook_url: str | None = None
    integration_id: str | None = None

    def dumps(self) -> str:
        body: dict[str, Any] = {
            "kind": self.kind.value,
            "nonce": self.nonce,
            "user_id": self.user_id,
            "user_email": self.user_email,
            "redirect_url": self.redirect_url,
            "created_at": self.created_at,
        }
        if self.webhook_url is not None:
            body["webhook_url"] = self.webhook_url
        if self.integration_id is not None:
            body["integration_id"] = self.integration_id
        return json.dumps(body, separators=(",", ":"))

    @staticmethod
    def loads(text: str) -> SealedState | None:
        """The state in ``text``, or None when it is not one."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                return None
            created = data["created_at"]
            if not isinstance(created, int):
                return None
            strings = {
                name: data[name]
                for name in ("kind", "nonce", "user_id", "user_email", "redirect_url")
            }
            if not all(isinstance(value, str) for value in strings.values()):
                return None
            webhook = data.get("webhook_url")
            integration = data.get("integration_id")
            if not isinstance(webhook, str | None) or not isinstance(integration, str | None):
                return None
            return SealedState(
                kind=StateKind(strings["kind"]),
                nonce=strings["nonce"],
                user_id=strings["user_id"],
                user_email=strings["user_email"],
                redirect_url=strings["redirect_url"],
                created_at=created,
                webhook_url=webhook,
                integration_id=integration,
            )
        except (ValueError, KeyError):
            return None

    def expired(self, now: int, ttl: int = STATE_TTL_SECONDS) -> bool:
        return now - self.created_at > ttl or now < self.created_at - 60
