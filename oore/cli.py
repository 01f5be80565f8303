"""``oore``: the operator command line."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

import trio

from oore.config import default_data_dir
from oore.control import OperatorError, call_control
from oore.datadir import SOCKET_FILE
from oore.domain.setup import parse_ttl
from oore.runner.agent import AgentConfig, AgentError, parse_labels, serve


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


def _runner(args: argparse.Namespace) -> int:
    if not args.server.startswith(("http://", "https://")):
        print("oore runner: --server must be an http:// or https:// URL", file=sys.stderr)
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
    work_dir = Path(args.work_dir) if args.work_dir else default_data_dir() / "runner"
    config = AgentConfig(
        work_dir=work_dir,
        name=name,
        labels=parse_labels(args.labels),
        concurrency=args.concurrency,
        grace=args.grace,
    )
    credential = args.token or args.enrollment_token
    try:
        trio.run(lambda: serve(args.server, config, credential=credential))
    except AgentError as exc:
        print(f"oore runner: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_runner(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    runner = groups.add_parser(
        "runner",
        help="run builds on this machine for an oore server",
        description="Register this machine as a runner (once), then claim and run builds "
        "until SIGINT or SIGTERM. The runner's identity is kept in <work-dir>/runner.json; "
        "once it exists, --token and --enrollment-token are not needed.",
    )
    runner.add_argument("--server", required=True, help="the server's base URL")
    credential = runner.add_mutually_exclusive_group()
    credential.add_argument(
        "--token",
        help="a user session or API token of an owner/admin, used once to register",
    )
    credential.add_argument(
        "--enrollment-token", help="a runner enrollment token, used once to register"
    )
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
    groups = parser.add_subparsers(dest="group", required=True)
    setup = groups.add_parser("setup", help="first-run setup")
    setup_cmds = setup.add_subparsers(dest="command", required=True)
    mint = setup_cmds.add_parser(
        "bootstrap-token", help="mint a single-use bootstrap token (printed once)"
    )
    mint.add_argument("--ttl", default="15m", help="lifetime, 1s..1h (default 15m)")
    mint.set_defaults(handler=_bootstrap_token)
    _add_runner(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
