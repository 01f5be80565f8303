"""``oore projects``, ``oore pipelines``, ``oore project create`` and ``oore pipeline create``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

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


def _create_project(ctx: Context, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name}
    if args.repo is not None:
        # The daemon reads the checkout itself, so it needs the path from its own side.
        body["local_repository_path"] = str(Path(args.repo).expanduser().resolve())
    if args.repository_id is not None:
        body["repository_id"] = args.repository_id
    for key in ("default_branch", "description"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    answer = ctx.api.post("/v1/projects", body)
    made = answer["project"]
    ctx.emit(answer, f"project {made.get('name')} ({made.get('id')})")
    return EXIT_OK


def _create_pipeline(ctx: Context, args: argparse.Namespace) -> int:
    owner = resolve.project(ctx.api, args.project)
    body: dict[str, Any] = {"name": args.name}
    if args.config_path is not None:
        body["config_path"] = args.config_path
    if args.labels is not None:
        body["runner_labels"] = [label.strip() for label in args.labels.split(",")]
    answer = ctx.api.post(f"/v1/projects/{owner['id']}/pipelines", body)
    made = answer["pipeline"]
    ctx.emit(
        answer,
        f"pipeline {owner.get('name')}/{made.get('name')} ({made.get('id')}) runs "
        f"{made.get('config_path') or '.oore.yaml'}",
    )
    return EXIT_OK


def add(groups: Groups) -> None:
    command(groups, "projects", _projects, "list the projects you can see")
    pipelines = command(groups, "pipelines", _pipelines, "list pipelines")
    pipelines.add_argument("project", nargs="?", help="only this project's (name or id)")

    project = groups.add_parser("project", help="create a project")
    create = command(
        project.add_subparsers(dest="command", required=True),
        "create",
        _create_project,
        "create a project from a git repository",
    )
    create.add_argument("name")
    source = create.add_mutually_exclusive_group(required=True)
    source.add_argument("--repo", help="a git checkout on the daemon's machine")
    source.add_argument("--repository-id", help="a repository of a connected integration")
    create.add_argument("--default-branch", help="the branch builds use when none is given")
    create.add_argument("--description")

    pipeline = groups.add_parser("pipeline", help="create a pipeline")
    create = command(
        pipeline.add_subparsers(dest="command", required=True),
        "create",
        _create_pipeline,
        "create a pipeline that runs the repository's pipeline file",
    )
    create.add_argument("project", help="the project (name or id)")
    create.add_argument("name")
    create.add_argument("--config-path", help="the pipeline file (default: .oore.yaml)")
    create.add_argument("--labels", help="comma-separated runner labels a runner must have")
