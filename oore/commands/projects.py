"""``oore projects`` and ``oore pipelines``."""

from __future__ import annotations

import argparse

from oore.client.terminal import table
from oore.commands import resolve
from oore.commands.base import EXIT_OK, Context, Groups, command, when


def _projects(ctx: Context, args: argparse.Namespace) -> int:
    found = ctx.api.pages("/v1/projects", "projects")
    rows = [
        (p.get("id"), p.get("name"), p.get("current_user_role", ""), when(p.get("created_at")))
        for p in found
    ]
    ctx.emit({"projects": found}, table(rows, ("ID", "NAME", "ROLE", "CREATED")))
    return EXIT_OK


def _pipelines(ctx: Context, args: argparse.Namespace) -> int:
    api = ctx.api
    owners = (
        [resolve.project(api, args.project)]
        if args.project
        else api.pages("/v1/projects", "projects")
    )
    found = []
    for owner in owners:
        for item in api.pages(f"/v1/projects/{owner['id']}/pipelines", "pipelines"):
            found.append(item)
    names = {owner["id"]: owner.get("name") for owner in owners}
    rows = [
        (
            p.get("id"),
            names.get(p.get("project_id")),
            p.get("name"),
            p.get("config_path") or "",
            ",".join(p.get("runner_labels") or []),
        )
        for p in found
    ]
    ctx.emit({"pipelines": found}, table(rows, ("ID", "PROJECT", "NAME", "CONFIG", "LABELS")))
    return EXIT_OK


def add(groups: Groups) -> None:
    command(groups, "projects", _projects, "list the projects you can see")
    pipelines = command(groups, "pipelines", _pipelines, "list pipelines")
    pipelines.add_argument("project", nargs="?", help="only this project's (name or id)")
