"""``oore enrollment-token create|list|revoke``: tokens fleets register runners with."""

from __future__ import annotations

import argparse
from typing import Any

from oore.client.terminal import table
from oore.commands.base import EXIT_OK, Context, Groups, command, when

TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> int:
    """``90``, ``15m``, ``12h``, ``7d`` as seconds."""
    unit = text[-1:] if text[-1:] in TTL_UNITS else "s"
    number = text[:-1] if text[-1:] in TTL_UNITS else text
    if not number.isdigit() or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 3600, 15m, 12h, 7d")
    return int(number) * TTL_UNITS[unit]


def _create(ctx: Context, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {} if args.label is None else {"label": args.label}
    if args.labels:
        body["labels"] = [label.strip() for label in args.labels.split(",") if label.strip()]
    if args.max_uses is not None:
        body["max_uses"] = args.max_uses
    if args.ttl is not None:
        body["ttl_seconds"] = args.ttl
    answer = ctx.api.post("/v1/runner-enrollment-tokens", body)
    ctx.emit(answer, answer["token"])
    if not ctx.as_json:
        made = answer["enrollment_token"]
        expires = when(made.get("expires_at")) or "never"
        ctx.say(
            f"enrollment token {made.get('id')} ({made.get('label')}); expires {expires}; "
            "shown only once. A runner registers with it through OORE_RUNNER_ENROLLMENT_TOKEN."
        )
    return EXIT_OK


def _list(ctx: Context, args: argparse.Namespace) -> int:
    answer = ctx.api.get("/v1/runner-enrollment-tokens")
    rows = [
        (
            t.get("id"),
            t.get("label"),
            ",".join(t.get("labels") or []),
            t.get("use_count", t.get("uses", "")),
            t.get("max_uses", ""),
            when(t.get("expires_at")) or "never",
        )
        for t in answer.get("tokens", [])
    ]
    ctx.emit(answer, table(rows, ("ID", "LABEL", "LABELS", "USED", "MAX", "EXPIRES")))
    return EXIT_OK


def _revoke(ctx: Context, args: argparse.Namespace) -> int:
    answer = ctx.api.call("DELETE", f"/v1/runner-enrollment-tokens/{args.token_id}")
    ctx.emit(answer, f"revoked enrollment token {args.token_id}")
    return EXIT_OK


def add(groups: Groups) -> None:
    group = groups.add_parser("enrollment-token", help="tokens runners register with")
    cmds = group.add_subparsers(dest="command", required=True)
    create = command(
        cmds,
        "create",
        _create,
        "mint an enrollment token (printed once, on standard output)",
    )
    create.add_argument("--label", help="what the token is for (default: its labels)")
    create.add_argument("--labels", help="comma-separated labels its runners get")
    create.add_argument("--max-uses", type=int, help="how many runners may register with it")
    create.add_argument("--ttl", type=parse_ttl, help="lifetime: 3600, 15m, 12h, 7d")
    command(cmds, "list", _list, "list enrollment tokens (never the tokens themselves)")
    revoke = command(cmds, "revoke", _revoke, "revoke an enrollment token")
    revoke.add_argument("token_id", help="the token's id")
