"""Where ``oore login`` keeps the session, and which server and token a command uses."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from oore.client.config import (
    DEFAULT_SERVER,
    ConfigError,
    Login,
    load_login,
    login_path,
    resolve_server,
    resolve_token,
    save_login,
)


def test_the_sign_in_is_kept_for_this_user_only(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    path = save_login(Login("http://h:1", "t0k", "me@example.com"), env)
    assert path == tmp_path / "cfg" / "oore" / "login.json" == login_path(env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_login(env) == Login("http://h:1", "t0k", "me@example.com")


def test_flag_then_environment_then_sign_in_then_default(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert resolve_server(None, env) == DEFAULT_SERVER
    save_login(Login("http://stored:1", "stored-token"), env)
    assert resolve_server(None, env) == "http://stored:1"
    assert resolve_server(None, {**env, "OORE_SERVER": "https://env/"}) == "https://env"
    assert resolve_server("http://flag:2/", env) == "http://flag:2"
    # The stored token goes only to the server it was issued by.
    assert resolve_token("http://stored:1", env) == "stored-token"
    assert resolve_token("http://flag:2", env) is None
    assert resolve_token("http://flag:2", {**env, "OORE_TOKEN": " t\n"}) == "t"
    with pytest.raises(ConfigError, match="http:// or https://"):
        resolve_server("oore.example", env)


def test_a_damaged_sign_in_says_to_log_in_again(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    login_path(env).parent.mkdir(parents=True)
    login_path(env).write_text("{not json")
    with pytest.raises(ConfigError, match="run oore login again"):
        load_login(env)
