"""``oore artifact list|download``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from oore.client.api import CliError
from oore.client.download import download
from oore.client.terminal import human_size, table
from oore.commands import resolve
from oore.commands.base import EXIT_OK, Context, Groups, command

BUILD_REF = "the build: its id, or PROJECT#NUMBER"


def _artifacts(ctx: Context, build: str) -> list[dict[str, Any]]:
    api = ctx.api
    found: list[dict[str, Any]] = api.get(f"/v1/builds/{resolve.build_id(api, build)}/artifacts")[
        "artifacts"
    ]
    return found


def _list(ctx: Context, args: argparse.Namespace) -> int:
    found = _artifacts(ctx, args.build)
    rows = [
        (a.get("id"), a.get("name"), a.get("state"), human_size(a.get("file_size") or 0))
        for a in found
    ]
    ctx.emit({"artifacts": found}, table(rows, ("ID", "NAME", "STATE", "SIZE")))
    return EXIT_OK


def _download(ctx: Context, args: argparse.Namespace) -> int:
    found = [a for a in _artifacts(ctx, args.build) if a.get("state") == "available"]
    if args.name is not None:
        found = [a for a in found if args.name in (a.get("name"), a.get("id"))]
        if not found:
            raise CliError(f"the build has no available artifact named {args.name!r}")
    if not found:
        raise CliError("the build has no available artifacts")
    directory = Path(args.output)
    written = []
    for artifact in found:
        path = download(ctx.api, artifact, directory, ctx.err)
        written.append({"id": artifact["id"], "name": artifact["name"], "path": str(path)})
        if not ctx.as_json:
            ctx.out.write(f"{path}\n")
    ctx.emit({"downloaded": written}, None)
    return EXIT_OK


def add(groups: Groups) -> None:
    artifact = groups.add_parser("artifact", help="list and download build artifacts")
    cmds = artifact.add_subparsers(dest="command", required=True)
    listing = command(cmds, "list", _list, "list a build's artifacts")
    listing.add_argument("build", help=BUILD_REF)
    get = command(
        cmds,
        "download",
        _download,
        "download a build's artifacts",
        "Download a build's artifacts (or the one named) into a directory; each file is "
        "checked against the SHA-256 and size the server recorded before it is kept. A "
        "progress bar is drawn on standard error when it is a terminal.",
    )
    get.add_argument("build", help=BUILD_REF)
    get.add_argument("name", nargs="?", help="only this artifact (its name or id)")
    get.add_argument("-o", "--output", default=".", help="the directory (default: here)")
