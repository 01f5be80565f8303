"""Where ``oore`` keeps a sign-in: ``<user config dir>/oore/login.json``, readable by the
user only (0600, in a 0700 directory). ``XDG_CONFIG_HOME`` moves it, as usual."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

DEFAULT_SERVER = "http://127.0.0.1:8787"
SERVER_ENV = "OORE_SERVER"
TOKEN_ENV = "OORE_TOKEN"
LOGIN_FILE = "login.json"


class ConfigError(Exception):
    """The stored sign-in cannot be read or written; the message is for the user."""


@dataclass(frozen=True)
class Login:
    server: str
    token: str
    email: str | None = None


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME")
    if base:
        return Path(base) / "oore"
    return Path(platformdirs.user_config_dir("oore", appauthor=False))


def login_path(environ: Mapping[str, str] | None = None) -> Path:
    return config_dir(environ) / LOGIN_FILE


def load_login(environ: Mapping[str, str] | None = None) -> Login | None:
    path = login_path(environ)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; run oore login again") from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(key), str) for key in ("server", "token")
    ):
        raise ConfigError(f"{path} is not an oore sign-in; run oore login again")
    email = data.get("email")
    return Login(data["server"], data["token"], email if isinstance(email, str) else None)


def save_login(login: Login, environ: Mapping[str, str] | None = None) -> Path:
    """Write the sign-in atomically, 0600 from the first byte."""
    path = login_path(environ)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = path.with_name(f".{LOGIN_FILE}.{os.getpid()}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump({"server": login.server, "token": login.token, "email": login.email}, file)
            file.write("\n")
        os.chmod(partial, 0o600)
        os.replace(partial, path)
    except OSError as exc:
        raise ConfigError(f"cannot save the sign-in in {path}: {exc}") from None
    return path


def forget_login(environ: Mapping[str, str] | None = None) -> bool:
    try:
        login_path(environ).unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ConfigError(f"cannot remove {login_path(environ)}: {exc}") from None
    return True


def normalise_server(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"the server must be an http:// or https:// URL, not {url!r}")
    return url.rstrip("/")


def resolve_server(given: str | None, environ: Mapping[str, str] | None = None) -> str:
    """``--server``, else ``OORE_SERVER``, else the stored sign-in's, else the default."""
    env = os.environ if environ is None else environ
    if given:
        return normalise_server(given)
    if env.get(SERVER_ENV):
        return normalise_server(env[SERVER_ENV])
    login = load_login(env)
    return login.server if login is not None else DEFAULT_SERVER


def resolve_token(server: str, environ: Mapping[str, str] | None = None) -> str | None:
    """``OORE_TOKEN``, else the stored sign-in's token when it is for ``server``."""
    env = os.environ if environ is None else environ
    if env.get(TOKEN_ENV):
        return env[TOKEN_ENV].strip()
    login = load_login(env)
    if login is not None and login.server == server:
        return login.token
    return None
