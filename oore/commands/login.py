"""``oore login`` and ``oore logout``: a session kept in the user's config directory."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from oore.client.api import CliError
from oore.client.config import Login, forget_login, login_path, save_login
from oore.commands.base import EXIT_OK, EXIT_USAGE, Context, Groups, command


def _read_token(args: argparse.Namespace) -> str | None:
    if args.ask_token:
        text = getpass.getpass("Token: ") if sys.stdin.isatty() else sys.stdin.readline()
    elif args.token_file is not None:
        try:
            text = (
                sys.stdin.readline()
                if args.token_file == "-"
                else Path(args.token_file).read_text(encoding="utf-8")
            )
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read the token file {args.token_file}: {exc}") from None
    else:
        return None
    if not text.strip():
        raise CliError("the token is empty", exit_code=EXIT_USAGE)
    return text.strip()


def _login(ctx: Context, args: argparse.Namespace) -> int:
    api = ctx.api
    token = _read_token(args)
    if token is None:
        body = {"email": args.email} if args.email else {}
        answer = api.call("POST", "/v1/auth/local/login", body, auth=False)
        token = str(answer["session_token"])
    api.token = token
    api.http.headers["Authorization"] = f"Bearer {token}"
    user = api.get("/v1/users/me")["user"]
    path = save_login(Login(api.server, token, user.get("email")))
    ctx.emit(
        {"server": api.server, "user": user, "config": str(path)},
        f"signed in to {api.server} as {user.get('email')} ({user.get('role')})",
    )
    if not ctx.as_json:
        ctx.say(f"sign-in saved in {path} (readable by you only)")
    return EXIT_OK


def _logout(ctx: Context, args: argparse.Namespace) -> int:
    api = ctx.api
    if api.token:
        try:
            api.post("/v1/auth/logout")
        except CliError as exc:  # an API token, or a session already gone: forget it anyway
            ctx.say(f"the server did not end the session: {exc}")
    removed = forget_login()
    ctx.emit({"removed": removed}, f"signed out; removed {login_path()}" if removed else None)
    return EXIT_OK


def add(groups: Groups) -> None:
    login = command(
        groups,
        "login",
        _login,
        "sign in and keep the session for later commands",
        "Sign in to an oore server. Without options this is the local sign-in (it works on "
        "the server's own machine, and on a fresh local instance finishes setup as owner). "
        "With --token-file or --ask-token it keeps an existing session or API token instead. "
        "The session is saved, readable by you only, in your config directory "
        "(XDG_CONFIG_HOME/oore/login.json); OORE_TOKEN and OORE_SERVER override it.",
    )
    login.add_argument("--email", help="local sign-in as this user (default: the owner)")
    source = login.add_mutually_exclusive_group()
    source.add_argument(
        "--token-file", metavar="PATH", help="a file holding a token (- reads standard input)"
    )
    source.add_argument("--ask-token", action="store_true", help="type the token when asked")
    command(groups, "logout", _logout, "end the saved session and forget it")
