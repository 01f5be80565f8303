"""``oore``: the command line: operator commands (setup, the runner agent) here, the
commands for people in :mod:`oore.commands`."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

import trio

from oore import __version__, commands
from oore.client.config import SERVER_ENV, ConfigError, resolve_server
from oore.commands import runners as runner_commands
from oore.config import default_data_dir
from oore.control import OperatorError, call_control
from oore.datadir import SOCKET_FILE
from oore.domain.setup import parse_ttl
from oore.runner.agent import AgentConfig, AgentError, parse_labels, serve
from oore.runner.client import RunnerCredentials
from oore.runner.servers import split_server_urls


def _data_dir(args: argparse.Namespace) -> Path:
    if args.data_dir is not None:
        return Path(args.data_dir)
    env = os.environ.get("OORED_DATA_DIR") or os.environ.get("OORE_DATA_DIR")
    return Path(env) if env else default_data_dir()


def _bootstrap_token(args: argparse.Namespace) -> int:
    try:
        ttl = parse_ttl(args.ttl)
    except ValueError as exc:
        print(f"oore: invalid --ttl: {exc}", file=sys.stderr)
        return 2
    try:
        reply = call_control(
            _data_dir(args) / SOCKET_FILE, {"op": "mint_bootstrap_token", "ttl_seconds": ttl}
        )
    except OperatorError as exc:
        print(f"oore: {exc}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"oore: {reply.get('error')} ({reply.get('code')})", file=sys.stderr)
        return 1
    print(reply["token"])
    print(f"expires at {reply['expires_at']} (Unix time); it is shown only once", file=sys.stderr)
    return 0


TOKEN_ENV = "OORE_RUNNER_TOKEN"
ENROLLMENT_TOKEN_ENV = "OORE_RUNNER_ENROLLMENT_TOKEN"


class CredentialError(Exception):
    """The register credential could not be read; the message is for the operator."""


@dataclass(frozen=True)
class _Source:
    """One kind of register credential: its option stem, its variable, what it is."""

    stem: str
    env: str
    what: str

    def attr(self, suffix: str = "") -> str:
        return f"{self.stem}{suffix}".replace("-", "_")


_SOURCES = (
    _Source("token", TOKEN_ENV, "User session or API token"),
    _Source("enrollment-token", ENROLLMENT_TOKEN_ENV, "Enrollment token"),
)


def _read_file(name: str) -> str:
    try:
        if name == "-":
            return sys.stdin.readline()
        return Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialError(f"cannot read the token file {name}: {exc}") from None


def _ask(what: str) -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline()
    return getpass.getpass(f"{what}: ")


def register_credential(args: argparse.Namespace, environ: MutableMapping[str, str]) -> str | None:
    """The one register credential given, from a file, the environment or a prompt; the
    variables are removed from ``environ`` so build steps never inherit them. A value on
    the command line is refused: every user of the machine can read it in ``ps``."""
    found: list[str] = []
    for source in _SOURCES:
        from_env = environ.pop(source.env, None)
        if getattr(args, source.attr()) is not None:
            raise CredentialError(
                f"--{source.stem} is refused: a token on the command line is visible to every "
                f"user of this machine; set {source.env}, use --{source.stem}-file, or "
                f"--ask-{source.stem} to type it"
            )
        if getattr(args, "ask_" + source.attr()):
            found.append(_ask(source.what))
        file_name = getattr(args, source.attr("-file"))
        if file_name is not None:
            found.append(_read_file(file_name))
        if from_env:
            found.append(from_env)
    if len(found) > 1:
        raise CredentialError("give one register credential, not several")
    if found and not found[0].strip():
        raise CredentialError("the register credential is empty")
    return found[0].strip() if found else None


def runner_credentials(text: str, runner_id: str | None) -> str | RunnerCredentials:
    """The credential as given, or a runner's own identity: its token with ``--runner-id``,
    or the whole answer of ``POST /v1/runners/register`` (``{"runner": {"id"}, "token"}``)."""
    if runner_id is not None:
        return RunnerCredentials(runner_id, text)
    if text.startswith("{"):
        try:
            answer = json.loads(text)
        except ValueError:
            raise CredentialError("the credential looks like JSON but is not") from None
        runner = answer.get("runner") if isinstance(answer, dict) else None
        token = answer.get("token") if isinstance(answer, dict) else None
        if not (isinstance(runner, dict) and isinstance(runner.get("id"), str)) or not (
            isinstance(token, str) and token
        ):
            raise CredentialError(
                "a JSON credential must be the answer of POST /v1/runners/register: "
                '{"runner": {"id": ...}, "token": ...}'
            )
        return RunnerCredentials(runner["id"], token)
    return text


def server_urls(given: list[str] | None, environ: Mapping[str, str]) -> tuple[str, ...]:
    """The runner's servers: ``--server`` (repeated, or comma-separated), else
    ``OORE_SERVER`` (comma-separated), else the sign-in's. ValueError for a URL that is not
    http(s); ConfigError when the sign-in cannot be read."""
    values = given or [environ.get(SERVER_ENV, "")]
    if not any(value.strip(" ,") for value in values):
        values = [resolve_server(None, environ)]
    return split_server_urls(values)


def _runner(args: argparse.Namespace) -> int:
    if args.action is not None:
        if args.runner_id is None:
            print(f"oore runner {args.action}: name the runner (its id or name)", file=sys.stderr)
            return 2
        # Any of the URLs serves the API: they are one installation.
        args.server = args.server[0].split(",")[0].strip() if args.server else None
        return runner_commands.drain(args)
    if args.runner_id is not None:
        print("oore runner: unexpected argument; did you mean drain or undrain?", file=sys.stderr)
        return 2
    try:
        servers = server_urls(args.server, os.environ)
    except ConfigError as exc:
        print(f"oore runner: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(
            f"oore runner: --server must be an http:// or https:// URL, or several separated "
            f"by commas: {exc}",
            file=sys.stderr,
        )
        return 2
    if not 1 <= args.concurrency <= 100:
        print("oore runner: --concurrency must be 1..100", file=sys.stderr)
        return 2
    if args.grace < 0:
        print("oore runner: --grace must not be negative", file=sys.stderr)
        return 2
    name = args.name or socket.gethostname()
    if not 1 <= len(name) <= 255:
        print("oore runner: --name must be 1..255 characters", file=sys.stderr)
        return 2
    try:
        given = register_credential(args, os.environ)
        credential = None if given is None else runner_credentials(given, args.runner)
    except CredentialError as exc:
        print(f"oore runner: {exc}", file=sys.stderr)
        return 2
    work_dir = Path(args.work_dir) if args.work_dir else default_data_dir() / "runner"
    config = AgentConfig(
        work_dir=work_dir,
        name=name,
        labels=parse_labels(args.labels),
        concurrency=args.concurrency,
        grace=args.grace,
    )
    try:
        trio.run(lambda: serve(servers, config, credential=credential))
    except AgentError as exc:
        print(f"oore runner: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_runner(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    runner = groups.add_parser(
        "runner",
        help="run builds on this machine for an oore server",
        description="Register this machine as a runner (once), then claim and run builds "
        "until SIGINT or SIGTERM. Registering takes a user session or API token of an "
        f"owner/admin, or a runner enrollment token: set it in {TOKEN_ENV} or "
        f"{ENROLLMENT_TOKEN_ENV}, name a file holding it (--token-file, "
        "--enrollment-token-file; - reads standard input), or type it when asked "
        "(--ask-token, --ask-enrollment-token). Tokens are never taken from the "
        "command line, where every user of the machine can read them, and the variables "
        "are not passed on to builds. The runner's identity is kept in "
        "<work-dir>/runner.json; once it exists, no token is needed. A runner already "
        "registered over the API (POST /v1/runners/register) runs with its own token: give "
        "that token the same ways with --runner ID, or the whole JSON answer of the "
        "register call. `oore runner drain|undrain RUNNER` stops or resumes a runner taking "
        "builds.",
    )
    runner.add_argument(
        "action", nargs="?", choices=runner_commands.ACTIONS, help=argparse.SUPPRESS
    )
    runner.add_argument("runner_id", nargs="?", help=argparse.SUPPRESS)
    runner.add_argument(
        "--server",
        action="append",
        metavar="URL",
        help="the server's base URL (default: OORE_SERVER or the sign-in's); several daemons "
        "of one installation: repeat it or separate the URLs by commas, and the runner moves "
        "on to the next when the one it talks to stops answering",
    )
    runner.add_argument("--json", action="store_true", help="drain/undrain: print the JSON")
    runner.add_argument(
        "--runner",
        metavar="ID",
        help="the token given is this runner's own, from POST /v1/runners/register",
    )
    credential = runner.add_mutually_exclusive_group()
    credential.add_argument(
        "--token-file",
        metavar="PATH",
        help="a file holding a user session or API token of an owner/admin, used once to "
        f"register (- reads standard input); or set {TOKEN_ENV}",
    )
    credential.add_argument("--ask-token", action="store_true", help="ask for that token instead")
    credential.add_argument(
        "--enrollment-token-file",
        metavar="PATH",
        help="a file holding a runner enrollment token, used once to register (- reads "
        f"standard input); or set {ENROLLMENT_TOKEN_ENV}",
    )
    credential.add_argument(
        "--ask-enrollment-token", action="store_true", help="ask for that token instead"
    )
    # Refused with a message saying why (see register_credential).
    runner.add_argument("--token", help=argparse.SUPPRESS)
    runner.add_argument("--enrollment-token", help=argparse.SUPPRESS)
    runner.add_argument("--name", help="the runner's name (default: this host's name)")
    runner.add_argument("--labels", help="comma-separated labels, e.g. macos,xcode16")
    runner.add_argument("--concurrency", type=int, default=1, help="builds run at once (default 1)")
    runner.add_argument(
        "--work-dir", help="checkouts and the runner identity (default: <data dir>/runner)"
    )
    runner.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="seconds between SIGTERM and SIGKILL when a build is cancelled (default 10)",
    )
    runner.set_defaults(handler=_runner)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oore", description="Operate an oore CI control plane.")
    parser.add_argument("--data-dir", help="the daemon's data directory (default: OORED_DATA_DIR)")
    parser.add_argument("--version", action="version", version=f"oore {__version__}")
    groups = parser.add_subparsers(dest="group", required=True)
    setup = groups.add_parser("setup", help="first-run setup")
    setup_cmds = setup.add_subparsers(dest="command", required=True)
    mint = setup_cmds.add_parser(
        "bootstrap-token", help="mint a single-use bootstrap token (printed once)"
    )
    mint.add_argument("--ttl", default="15m", help="lifetime, 1s..1h (default 15m)")
    mint.set_defaults(handler=_bootstrap_token)
    _add_runner(groups)
    commands.add_all(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
