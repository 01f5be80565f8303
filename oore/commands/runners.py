"""``oore runners`` and ``oore runner drain|undrain RUNNER``.

``oore runner`` without an action is the runner agent (see :mod:`oore.cli`); with one it
manages a runner through the API, like the other commands here.
"""

from __future__ import annotations

import argparse

from oore.client.terminal import table
from oore.commands import resolve
from oore.commands.base import EXIT_OK, Context, Groups, command, run, when

ACTIONS = ("drain", "undrain")


def _runners(ctx: Context, args: argparse.Namespace) -> int:
    found = ctx.api.pages("/v1/runners", "runners")
    rows = [
        (
            r.get("id"),
            r.get("name"),
            r.get("status") + (" (draining)" if r.get("draining") else ""),
            ",".join(r.get("labels") or []),
            r.get("max_concurrent"),
            when(r.get("last_heartbeat_at")),
        )
        for r in found
    ]
    headers = ("ID", "NAME", "STATUS", "LABELS", "SLOTS", "LAST HEARTBEAT")
    ctx.emit({"runners": found}, table(rows, headers))
    return EXIT_OK


def _drain(ctx: Context, args: argparse.Namespace) -> int:
    target = resolve.runner(ctx.api, args.runner_id)
    answer = ctx.api.post(f"/v1/runners/{target['id']}/{args.action}")
    state = "draining" if answer["runner"].get("draining") else "taking builds"
    ctx.emit(answer, f"runner {answer['runner'].get('name')} ({target['id']}) is {state}")
    return EXIT_OK


def drain(args: argparse.Namespace) -> int:
    """``oore runner drain|undrain RUNNER``, called from the runner command's parser."""
    return run(_drain, args)


def add(groups: Groups) -> None:
    command(groups, "runners", _runners, "list runners")
