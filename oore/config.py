"""Daemon configuration: command-line flags override the environment, which overrides defaults."""

from __future__ import annotations

import argparse
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from oore import __version__
from oore.domain.network import MAX_SECRET_LENGTH, host_name
from oore.domain.rate_limit import GUESS_LIMIT
from oore.eventlog import LOG_FORMATS, LogFormat

DEFAULT_LISTEN = "127.0.0.1:8787"
DEFAULT_CORS_ORIGINS = (
    "http://localhost:3000",
    "http://127.0.0.1:3000",
    "http://localhost:4173",
    "http://127.0.0.1:4173",
)


# More processes than this on one machine only contend for its cores and its database.
MAX_WORKERS = 64
WORKERS_HELP = (
    "worker processes serving the one port (OORED_WORKERS; default 1: a single process, "
    "no supervisor); with 2 or more, worker 0 serves the runners and the live logs, the "
    "others the API; on a machine of its own, up to one per core, leaving a core to "
    "PostgreSQL"
)


class ConfigError(Exception):
    """A configuration value is unusable; the message is one line for the operator."""


def default_data_dir() -> Path:
    """The per-user data directory used when none is configured."""
    return Path(platformdirs.user_data_dir("oore", appauthor=False))


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6) and check both halves."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"listen address must look like HOST:PORT, got {value!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"listen port must be 0..65535, got {port}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)
    return host, port


def parse_origins(value: str) -> tuple[str, ...]:
    """Split a comma- or newline-separated origin list, dropping blanks and duplicates."""
    seen: list[str] = []
    for raw in value.replace("\n", ",").split(","):
        origin = raw.strip().rstrip("/")
        if not origin:
            continue
        if "://" not in origin:
            raise ValueError(f"CORS origin must be scheme://host[:port], got {origin!r}")
        if origin not in seen:
            seen.append(origin)
    return tuple(seen)


def parse_host_names(value: str) -> tuple[str, ...]:
    """Split a comma- or whitespace-separated list of host names (a port is ignored)."""
    names: list[str] = []
    for raw in value.replace(",", " ").split():
        name = host_name(raw)
        if name is None:
            raise ValueError(f"must be host names like ci.example.com, got {raw!r}")
        if name not in names:
            names.append(name)
    return tuple(names)


class Settings(BaseSettings):
    """Everything `oored` reads from its flags and environment."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    listen: str = Field(
        DEFAULT_LISTEN, validation_alias=AliasChoices("listen", "OORED_LISTEN_ADDR")
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        validation_alias=AliasChoices("data_dir", "OORED_DATA_DIR", "OORE_DATA_DIR"),
    )
    database_url: str | None = Field(
        None, validation_alias=AliasChoices("database_url", "OORED_DATABASE_URL")
    )
    cors_origins_env: Annotated[str | None, NoDecode] = Field(
        None, validation_alias=AliasChoices("cors_origins_env", "OORE_CORS_ORIGINS")
    )
    cors_origin_env: str | None = Field(
        None, validation_alias=AliasChoices("cors_origin_env", "OORE_CORS_ORIGIN")
    )
    allowed_hosts_env: Annotated[str | None, NoDecode] = Field(
        None, validation_alias=AliasChoices("allowed_hosts_env", "OORED_ALLOWED_HOSTS")
    )
    shutdown_grace_seconds: float = Field(
        10.0, gt=0, validation_alias=AliasChoices("shutdown_grace_seconds", "OORED_SHUTDOWN_GRACE")
    )
    database_pool_size: int = Field(
        10, ge=2, le=200, validation_alias=AliasChoices("database_pool_size", "OORED_DB_POOL_SIZE")
    )

    keepalive_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        validation_alias=AliasChoices("keepalive_seconds", "OORED_KEEPALIVE_SECONDS"),
    )
    max_connections: int | None = Field(
        None,
        ge=1,
        validation_alias=AliasChoices("max_connections", "OORED_MAX_CONNECTIONS"),
    )

    runner_lease_seconds: float = Field(
        120.0,
        gt=0,
        le=86400,
        validation_alias=AliasChoices("runner_lease_seconds", "OORED_RUNNER_LEASE_SECONDS"),
    )
    assign_timeout_seconds: float = Field(
        300.0,
        gt=0,
        le=86400,
        validation_alias=AliasChoices("assign_timeout_seconds", "OORED_ASSIGN_TIMEOUT_SECONDS"),
    )
    build_timeout_seconds: float = Field(
        3600.0,
        gt=0,
        le=7 * 86400,
        validation_alias=AliasChoices("build_timeout_seconds", "OORED_BUILD_TIMEOUT_SECONDS"),
    )
    # Daemons sharing a database: a dead leader's maintenance duties move within this.
    leader_lease_seconds: float = Field(
        10.0,
        ge=1,
        le=3600,
        validation_alias=AliasChoices("leader_lease_seconds", "OORED_LEADER_LEASE_SECONDS"),
    )
    log_lines_per_build: int = Field(
        1_000_000,
        ge=1,
        validation_alias=AliasChoices("log_lines_per_build", "OORED_LOG_LINES_PER_BUILD"),
    )
    log_viewers_per_build: int = Field(
        10_000,
        ge=1,
        validation_alias=AliasChoices("log_viewers_per_build", "OORED_LOG_VIEWERS_PER_BUILD"),
    )
    log_viewers_per_user: int = Field(
        10_000,
        ge=1,
        validation_alias=AliasChoices("log_viewers_per_user", "OORED_LOG_VIEWERS_PER_USER"),
    )
    log_viewers_total: int = Field(
        50_000,
        ge=1,
        validation_alias=AliasChoices("log_viewers_total", "OORED_LOG_VIEWERS_TOTAL"),
    )
    event_viewers_per_user: int = Field(
        32,
        ge=1,
        validation_alias=AliasChoices("event_viewers_per_user", "OORED_EVENT_VIEWERS_PER_USER"),
    )
    event_viewers_total: int = Field(
        2_000,
        ge=1,
        validation_alias=AliasChoices("event_viewers_total", "OORED_EVENT_VIEWERS_TOTAL"),
    )

    public_url: str | None = Field(
        None, validation_alias=AliasChoices("public_url", "OORE_PUBLIC_URL")
    )
    github_api_url: str = Field(
        "https://api.github.com",
        validation_alias=AliasChoices("github_api_url", "OORE_GITHUB_API_URL"),
    )
    github_web_url: str = Field(
        "https://github.com",
        validation_alias=AliasChoices("github_web_url", "OORE_GITHUB_WEB_URL"),
    )
    app_store_connect_api_base_url: str = Field(
        "https://api.appstoreconnect.apple.com",
        validation_alias=AliasChoices(
            "app_store_connect_api_base_url", "OORE_APP_STORE_CONNECT_API_BASE_URL"
        ),
    )
    cookie_secure: bool = Field(
        False, validation_alias=AliasChoices("cookie_secure", "OORE_COOKIE_SECURE")
    )
    artifact_delivery_url: str | None = Field(
        None,
        validation_alias=AliasChoices("artifact_delivery_url", "OORE_ARTIFACT_DELIVERY_URL"),
    )
    artifact_ttl_days: int | None = Field(
        None,
        ge=1,
        le=36500,
        validation_alias=AliasChoices("artifact_ttl_days", "OORED_ARTIFACT_TTL_DAYS"),
    )
    s3_bucket: str | None = Field(
        None, validation_alias=AliasChoices("s3_bucket", "OORE_S3_BUCKET")
    )
    s3_endpoint: str | None = Field(
        None, validation_alias=AliasChoices("s3_endpoint", "OORE_S3_ENDPOINT")
    )
    s3_region: str | None = Field(
        None, validation_alias=AliasChoices("s3_region", "OORE_S3_REGION")
    )
    aws_access_key_id: SecretStr | None = Field(
        None, validation_alias=AliasChoices("aws_access_key_id", "AWS_ACCESS_KEY_ID")
    )
    aws_secret_access_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY")
    )
    warpgate_ticket: SecretStr | None = Field(
        None, validation_alias=AliasChoices("warpgate_ticket", "OORE_WARPGATE_TICKET")
    )
    log_format: LogFormat = Field(
        "text", validation_alias=AliasChoices("log_format", "OORED_LOG_FORMAT")
    )
    access_log: bool = Field(False, validation_alias=AliasChoices("access_log", "OORED_ACCESS_LOG"))
    # Failed credential checks a client may make in a minute before it is locked out of
    # credential checks for a minute (0: never locked out).
    credential_guess_limit: int = Field(
        GUESS_LIMIT,
        ge=0,
        validation_alias=AliasChoices("credential_guess_limit", "OORED_CREDENTIAL_GUESS_LIMIT"),
    )
    workers: int = Field(
        1, ge=1, le=MAX_WORKERS, validation_alias=AliasChoices("workers", "OORED_WORKERS")
    )

    @field_validator("log_format", mode="before")
    @classmethod
    def _check_log_format(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in LOG_FORMATS:
            return value.strip().lower()
        raise ValueError(f"must be {' or '.join(LOG_FORMATS)}, got {value!r}")

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("OORED_DATABASE_URL must start with postgresql://")
        return value.strip()

    @field_validator("public_url", "artifact_delivery_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
            raise ValueError("must be http(s)://host[:port] without credentials")
        return value.strip().rstrip("/")

    @field_validator("warpgate_ticket")
    @classmethod
    def _check_warpgate_ticket(cls, value: SecretStr | None) -> SecretStr | None:
        ticket = "" if value is None else value.get_secret_value().strip()
        if not ticket:
            return None
        if len(ticket) > MAX_SECRET_LENGTH:
            raise ValueError(f"must be {MAX_SECRET_LENGTH} characters or fewer")
        return SecretStr(ticket)

    @field_validator("app_store_connect_api_base_url")
    @classmethod
    def _check_api_base_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
            raise ValueError("must be http(s)://host[:port][/path] without credentials")
        return value.strip().rstrip("/")

    @field_validator("allowed_hosts_env")
    @classmethod
    def _check_host_names(cls, value: str | None) -> str | None:
        if value is not None:
            parse_host_names(value)
        return value

    @field_validator("cors_origins_env", "cors_origin_env")
    @classmethod
    def _check_origins(cls, value: str | None) -> str | None:
        if value is not None:
            parse_origins(value)
        return value

    @property
    def listen_host(self) -> str:
        return parse_listen(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return parse_listen(self.listen)[1]

    @property
    def host_names(self) -> tuple[str, ...]:
        """Names the daemon answers to besides loopback, IP literals and the configured URLs:
        the listen host, this machine's name and OORED_ALLOWED_HOSTS."""
        listed = parse_host_names(self.allowed_hosts_env or "")
        machine = socket.gethostname().lower()
        return tuple(dict.fromkeys((self.listen_host.lower(), machine, *listed)))

    @property
    def cors_origins(self) -> tuple[str, ...]:
        """Allowed origins: OORE_CORS_ORIGINS, else OORE_CORS_ORIGIN, else the four defaults."""
        if self.cors_origins_env and parse_origins(self.cors_origins_env):
            return parse_origins(self.cors_origins_env)
        if self.cors_origin_env and parse_origins(self.cors_origin_env):
            return parse_origins(self.cors_origin_env)
        return DEFAULT_CORS_ORIGINS


_SOURCES = {
    "listen": "--listen / OORED_LISTEN_ADDR",
    "data_dir": "--data-dir / OORED_DATA_DIR",
    "database_url": "OORED_DATABASE_URL",
    "cors_origins_env": "OORE_CORS_ORIGINS",
    "cors_origin_env": "OORE_CORS_ORIGIN",
    "allowed_hosts_env": "OORED_ALLOWED_HOSTS",
    "shutdown_grace_seconds": "OORED_SHUTDOWN_GRACE",
    "database_pool_size": "OORED_DB_POOL_SIZE",
    "keepalive_seconds": "OORED_KEEPALIVE_SECONDS",
    "max_connections": "OORED_MAX_CONNECTIONS",
    "runner_lease_seconds": "OORED_RUNNER_LEASE_SECONDS",
    "assign_timeout_seconds": "OORED_ASSIGN_TIMEOUT_SECONDS",
    "build_timeout_seconds": "OORED_BUILD_TIMEOUT_SECONDS",
    "leader_lease_seconds": "OORED_LEADER_LEASE_SECONDS",
    "log_lines_per_build": "OORED_LOG_LINES_PER_BUILD",
    "log_viewers_per_build": "OORED_LOG_VIEWERS_PER_BUILD",
    "log_viewers_per_user": "OORED_LOG_VIEWERS_PER_USER",
    "log_viewers_total": "OORED_LOG_VIEWERS_TOTAL",
    "event_viewers_per_user": "OORED_EVENT_VIEWERS_PER_USER",
    "event_viewers_total": "OORED_EVENT_VIEWERS_TOTAL",
    "public_url": "OORE_PUBLIC_URL",
    "github_api_url": "OORE_GITHUB_API_URL",
    "github_web_url": "OORE_GITHUB_WEB_URL",
    "app_store_connect_api_base_url": "OORE_APP_STORE_CONNECT_API_BASE_URL",
    "cookie_secure": "OORE_COOKIE_SECURE",
    "artifact_delivery_url": "OORE_ARTIFACT_DELIVERY_URL",
    "artifact_ttl_days": "OORED_ARTIFACT_TTL_DAYS",
    "warpgate_ticket": "OORE_WARPGATE_TICKET",
    "log_format": "--log-format / OORED_LOG_FORMAT",
    "access_log": "OORED_ACCESS_LOG",
    "credential_guess_limit": "OORED_CREDENTIAL_GUESS_LIMIT",
    "workers": "--workers / OORED_WORKERS",
}


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment plus explicit overrides, or raise ConfigError."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        where = _SOURCES.get(field, field or "configuration")
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"invalid {where}: {message}") from None


@dataclass(frozen=True)
class WorkerRole:
    """How the supervisor of ``oored --workers N`` started this process: its slot (0..N-1;
    slot 0 serves the control socket) and the descriptor of its channel to the supervisor."""

    slot: int
    channel: int
    # The name the workers' lane sockets start with (see oore/http/lean/lanes.py).
    lanes: str = ""


def settings_from_argv(argv: list[str] | None) -> Settings:
    """Parse `oored` flags; flags win over the environment."""
    return daemon_args(argv)[0]


def daemon_args(argv: list[str] | None) -> tuple[Settings, WorkerRole | None]:
    """The settings, and the worker role when the supervisor started this process."""
    parser = argparse.ArgumentParser(prog="oored", description="Run the oore CI control plane.")
    parser.add_argument("--listen", help=f"HOST:PORT to listen on (default {DEFAULT_LISTEN})")
    parser.add_argument("--data-dir", type=Path, help="data directory (embedded PostgreSQL, keys)")
    parser.add_argument("--version", action="version", version=f"oored {__version__}")
    parser.add_argument(
        "--log-format",
        metavar="{text,json}",
        help="the daemon's log lines: key=value text (default) or one JSON object per line",
    )
    parser.add_argument("--workers", metavar="N", help=WORKERS_HELP)
    # Given by the supervisor to the processes it starts; not for people.
    parser.add_argument("--worker-slot", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-channel", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-lanes", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    settings = load_settings(
        listen=args.listen,
        data_dir=args.data_dir,
        log_format=args.log_format,
        workers=args.workers,
    )
    if args.worker_slot is None or args.worker_channel is None:
        return settings, None
    return settings, WorkerRole(args.worker_slot, args.worker_channel, args.worker_lanes)
