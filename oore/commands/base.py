"""What every command shares: common options, the API client, output and exit codes.

Exit codes: 0 done (or the build succeeded), 1 the build failed, 2 bad usage, 3 the server
refused the request, 4 the server cannot be reached, 5 not signed in, 6 the build was
canceled, 7 the build timed out or expired, 130 interrupted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO, TypeAlias

import httpx

from oore.client.api import Api, CliError
from oore.client.config import ConfigError, resolve_server, resolve_token

EXIT_OK = 0
EXIT_BUILD_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_UNREACHABLE = 4
EXIT_CANCELED = 6
EXIT_TIMED_OUT = 7
EXIT_INTERRUPTED = 130

BUILD_EXIT = {
    "succeeded": EXIT_OK,
    "failed": EXIT_BUILD_FAILED,
    "canceled": EXIT_CANCELED,
    "timed_out": EXIT_TIMED_OUT,
    "expired": EXIT_TIMED_OUT,
}


@dataclass
class Context:
    api: Api
    as_json: bool
    out: TextIO
    err: TextIO

    def emit(self, data: Any, text: str | None) -> None:
        """The API's JSON with ``--json``, else the human text (if any)."""
        if self.as_json:
            self.out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        elif text is not None:
            self.out.write(text + "\n")

    def say(self, text: str) -> None:
        """A note for the person, on standard error so pipes see only the output."""
        self.err.write(text + "\n")


Handler = Callable[[Context, argparse.Namespace], int]
Groups: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def common() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--server",
        help="the server's URL (default: OORE_SERVER, the sign-in's, or http://127.0.0.1:8787)",
    )
    parser.add_argument("--json", action="store_true", help="print the API's JSON")
    return parser


def command(
    parent: Groups, name: str, handler: Handler, help_text: str, description: str | None = None
) -> argparse.ArgumentParser:
    parser = parent.add_parser(
        name, parents=[common()], help=help_text, description=description or help_text
    )
    parser.set_defaults(handler=functools.partial(run, handler))
    return parser


def run(handler: Handler, args: argparse.Namespace) -> int:
    """Run one command with its client; every failure becomes a line and an exit code."""
    try:
        server = resolve_server(args.server)
        with Api(server, resolve_token(server)) as api:
            return handler(Context(api, args.json, sys.stdout, sys.stderr), args)
    except (CliError, ConfigError) as exc:
        code = exc.exit_code if isinstance(exc, CliError) else EXIT_REFUSED
        print(f"oore: {exc}", file=sys.stderr)
        return code
    except BrokenPipeError:
        # `oore build logs N | head`: the reader has what it wanted; flushing at exit
        # would only fail again, so standard output goes nowhere from here.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except httpx.HTTPError as exc:  # e.g. a URL httpx cannot use
        print(f"oore: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyError as exc:
        print(f"oore: the server's answer has no {exc}: is it an oore server?", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as exc:
        print(f"oore: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print("oore: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def when(seconds: object) -> str:
    """A Unix time (seconds or milliseconds) as UTC text; '' when absent."""
    if not isinstance(seconds, int | float):
        return ""
    value = float(seconds) / (1000 if seconds > 10**11 else 1)
    return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
