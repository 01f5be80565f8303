"""``oore``: the operator command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from oore.config import default_data_dir
from oore.control import OperatorError, call_control
from oore.datadir import SOCKET_FILE
from oore.domain.setup import parse_ttl


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
