"""``oore variables PROJECT`` and ``oore variable set|delete PROJECT NAME``.

A variable belongs to a project, or with ``--pipeline`` to one of its pipelines. A secret's
value is never taken from the command line, where every user of the machine can read it
in the process list: it comes from standard input (piped) or a hidden prompt.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from oore.client.api import Api, CliError
from oore.client.terminal import table
from oore.commands import resolve
from oore.commands.base import EXIT_OK, EXIT_USAGE, Context, Groups, command


def _scope(api: Api, args: argparse.Namespace) -> tuple[str, str]:
    """The variables path of the project or of its pipeline, and its name for people."""
    owner = resolve.project(api, args.project)
    if args.pipeline is None:
        return f"/v1/projects/{owner['id']}/variables", f"project {owner.get('name')}"
    chosen = resolve.pipeline(api, owner["id"], args.pipeline)
    return (
        f"/v1/pipelines/{chosen['id']}/variables",
        f"pipeline {owner.get('name')}/{chosen.get('name')}",
    )


def _list(ctx: Context, args: argparse.Namespace) -> int:
    path, _ = _scope(ctx.api, args)
    answer = ctx.api.get(path)
    rows = [
        (v.get("name"), "secret" if v.get("secret") else "plain", v.get("value") or "")
        for v in answer.get("variables", [])
    ]
    ctx.emit(answer, table(rows, ("NAME", "KIND", "VALUE")))
    return EXIT_OK


def _read_value(args: argparse.Namespace) -> str:
    if args.value is not None:
        if args.secret:
            raise CliError(
                "a secret's value is read from standard input or a prompt, never from the "
                "command line (other users can read it in the process list)",
                exit_code=EXIT_USAGE,
            )
        value: str = args.value
        return value
    if sys.stdin.isatty():
        return getpass.getpass(f"{args.name}: ")
    return sys.stdin.read().removesuffix("\n")


def _set(ctx: Context, args: argparse.Namespace) -> int:
    path, where = _scope(ctx.api, args)
    value = _read_value(args)
    body: dict[str, Any] = {"value": value, "secret": args.secret}
    answer = ctx.api.call("PUT", f"{path}/{args.name}", body)
    kind = "secret" if args.secret else "variable"
    ctx.emit(answer, f"{kind} {args.name} set on {where}")
    return EXIT_OK


def _delete(ctx: Context, args: argparse.Namespace) -> int:
    path, where = _scope(ctx.api, args)
    answer = ctx.api.call("DELETE", f"{path}/{args.name}")
    ctx.emit(answer, f"{args.name} deleted from {where}")
    return EXIT_OK


def _scoped(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", help="the project (name or id)")
    parser.add_argument("--pipeline", help="the pipeline's own variables instead (name or id)")


def add(groups: Groups) -> None:
    listing = command(
        groups, "variables", _list, "list a project's or pipeline's variables (no secrets)"
    )
    _scoped(listing)
    group = groups.add_parser("variable", help="set or delete a variable or secret")
    cmds = group.add_subparsers(dest="command", required=True)
    setting = command(
        cmds,
        "set",
        _set,
        "create or replace a variable; its value from VALUE, standard input or a prompt",
    )
    _scoped(setting)
    setting.add_argument("name", help="a shell name: letters, digits and _")
    setting.add_argument("value", nargs="?", help="the value of a plain variable")
    setting.add_argument(
        "--secret",
        action="store_true",
        help="keep it secret: encrypted, never shown, masked in logs (value not from argv)",
    )
    deleting = command(cmds, "delete", _delete, "delete a variable or secret")
    _scoped(deleting)
    deleting.add_argument("name")
