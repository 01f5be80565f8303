"""``oore build run|list|show|logs|cancel|rerun``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from oore.client.api import Api, CliError
from oore.client.sse import LogLine, follow_log
from oore.client.terminal import is_tty, strip_ansi, table
from oore.commands import resolve
from oore.commands.base import BUILD_EXIT, EXIT_OK, Context, Groups, command, when

STATUSES = (
    "queued", "scheduled", "assigned", "running",
    "succeeded", "failed", "canceled", "timed_out", "expired",
)  # fmt: skip
LOG_PAGE = 5000
LAST_SEQUENCE = 2**63 - 1  # before it: every line


def _label(build: dict[str, Any]) -> str:
    project = (build.get("context") or {}).get("project_name") or build.get("project_id", "")
    return f"{project}#{build.get('build_number')}"


def _summary(build: dict[str, Any]) -> str:
    return f"build {_label(build)} {build.get('status')} (id {build.get('id')})"


class LogPrinter:
    """Writes log lines: colours kept for a terminal, stripped for a pipe; JSON lines with
    ``--json``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.colour = is_tty(ctx.out)

    def line(self, line: LogLine) -> None:
        if self.ctx.as_json:
            entry = {"sequence": line.sequence, "content": line.content, "stream": line.stream}
            self.ctx.out.write(json.dumps(entry) + "\n")
        else:
            text = line.content if self.colour else strip_ansi(line.content)
            self.ctx.out.write(text + "\n")
        self.ctx.out.flush()


def _follow(ctx: Context, build_id: str, tail: int | None = None) -> dict[str, Any]:
    printer = LogPrinter(ctx)

    def attempt(number: int) -> None:
        ctx.say(f"[oore] the build was requeued: attempt {number}")

    def retry(note: str) -> None:
        ctx.say(f"[oore] the log stream failed: {note}")

    for line in follow_log(ctx.api, build_id, on_attempt=attempt, on_retry=retry, tail=tail):
        printer.line(line)
    build: dict[str, Any] = ctx.api.get(f"/v1/builds/{build_id}")["build"]
    return build


def _finished(ctx: Context, build: dict[str, Any]) -> int:
    status = str(build.get("status"))
    if not ctx.as_json:
        ctx.say(f"[oore] {_summary(build)}")
    return BUILD_EXIT.get(status, EXIT_OK)


def _run(ctx: Context, args: argparse.Namespace) -> int:
    api = ctx.api
    project = resolve.project(api, args.project)
    pipeline = resolve.pipeline(api, project["id"], args.pipeline)
    body: dict[str, Any] = {"pipeline_id": pipeline["id"]}
    if args.branch:
        body["branch"] = args.branch
    if args.commit:
        body["commit_sha"] = args.commit
    build = api.post(f"/v1/projects/{project['id']}/builds", body)["build"]
    named = {**build, "context": {"project_name": project.get("name")}}
    if not args.follow:
        ctx.emit({"build": build}, build["id"])
        if not ctx.as_json:
            ctx.say(_summary(named))
        return EXIT_OK
    ctx.say(f"[oore] {_summary(named)}; following its log")
    final = _follow(ctx, build["id"])
    if ctx.as_json:
        ctx.emit({"build": final}, None)
    return _finished(ctx, final)


def _list(ctx: Context, args: argparse.Namespace) -> int:
    api = ctx.api
    project_id = resolve.project(api, args.project)["id"] if args.project else None
    answer = api.get(
        "/v1/builds",
        status=args.status,
        project_id=project_id,
        branch=args.branch,
        limit=args.limit,
    )
    builds = answer.get("builds", [])
    rows = [
        (
            b.get("id"),
            _label(b),
            (b.get("context") or {}).get("pipeline_name", ""),
            b.get("status"),
            b.get("branch", ""),
            when(b.get("created_at")),
        )
        for b in builds
    ]
    ctx.emit(answer, table(rows, ("ID", "BUILD", "PIPELINE", "STATUS", "BRANCH", "CREATED")))
    return EXIT_OK


def _show(ctx: Context, args: argparse.Namespace) -> int:
    api = ctx.api
    detail = api.get(f"/v1/builds/{resolve.build_id(api, args.build)}")
    build = detail["build"]
    lines = [
        _summary(build),
        f"pipeline  {(build.get('context') or {}).get('pipeline_name', build.get('pipeline_id'))}",
        f"branch    {build.get('branch', '')}",
        f"commit    {build.get('commit_sha', '')}",
        f"trigger   {build.get('trigger_type')}",
        f"queued    {when(build.get('queued_at'))}",
        f"started   {when(build.get('started_at'))}",
        f"finished  {when(build.get('finished_at'))}",
        f"attempt   {build.get('attempt')}",
    ]
    if "exit_code" in build:
        lines.append(f"exit code {build['exit_code']}")
    steps = build.get("step_results") or []
    if steps:
        lines.append("")
        lines.append(
            table(
                [(s.get("name"), s.get("status"), s.get("exit_code", "")) for s in steps],
                ("STEP", "STATUS", "EXIT"),
            )
        )
    ctx.emit(detail, "\n".join(lines))
    return EXIT_OK


def _stored_log(ctx: Context, api: Api, build_id: str, tail: int | None = None) -> None:
    if tail is not None:
        _stored_tail(ctx, api, build_id, tail)
        return
    printer = LogPrinter(ctx)
    after = -1
    while True:
        page = api.get(f"/v1/builds/{build_id}/logs", after_sequence=after, limit=LOG_PAGE)
        lines = page.get("logs", [])
        for entry in lines:
            printer.line(
                LogLine(int(entry["sequence"]), str(entry["content"]), str(entry["stream"]))
            )
            after = int(entry["sequence"])
        if len(lines) < LOG_PAGE:
            return


def _stored_tail(ctx: Context, api: Api, build_id: str, tail: int) -> None:
    """The last ``tail`` lines, read backwards a page at a time, printed in order."""
    pages: list[list[dict[str, Any]]] = []
    before, wanted = LAST_SEQUENCE, tail
    while wanted > 0:
        limit = min(wanted, LOG_PAGE)
        page = api.get(f"/v1/builds/{build_id}/logs", before_sequence=before, limit=limit)
        lines = page.get("logs", [])
        if lines:
            pages.append(lines)
            before, wanted = int(lines[0]["sequence"]), wanted - len(lines)
        if len(lines) < limit:
            break
    printer = LogPrinter(ctx)
    for lines in reversed(pages):
        for entry in lines:
            printer.line(
                LogLine(int(entry["sequence"]), str(entry["content"]), str(entry["stream"]))
            )


def _logs(ctx: Context, args: argparse.Namespace) -> int:
    api = ctx.api
    build_id = resolve.build_id(api, args.build)
    if args.tail is not None and args.tail < 0:
        raise CliError("--tail must not be negative")
    if args.follow:
        final = _follow(ctx, build_id, args.tail)
        return _finished(ctx, final) if args.exit_status else EXIT_OK
    _stored_log(ctx, api, build_id, args.tail)
    return EXIT_OK


def _cancel(ctx: Context, args: argparse.Namespace) -> int:
    api = ctx.api
    build_id = resolve.build_id(api, args.build)
    answer = api.post(f"/v1/builds/{build_id}/cancel")
    ctx.emit(answer, _summary(api.get(f"/v1/builds/{build_id}")["build"]))
    return EXIT_OK


def _rerun(ctx: Context, args: argparse.Namespace) -> int:
    api = ctx.api
    answer = api.post(f"/v1/builds/{resolve.build_id(api, args.build)}/rerun")
    build_id = answer["build"]["id"]
    ctx.emit(answer, build_id)
    if not ctx.as_json:
        ctx.say(_summary(api.get(f"/v1/builds/{build_id}")["build"]))
    if args.follow:
        return _finished(ctx, _follow(ctx, build_id))
    return EXIT_OK


BUILD_REF = "the build: its id, or PROJECT#NUMBER"


def add(groups: Groups) -> None:
    build = groups.add_parser("build", help="run, list, watch and cancel builds")
    cmds = build.add_subparsers(dest="command", required=True)
    run = command(
        cmds,
        "run",
        _run,
        "queue a build of a project's pipeline",
        "Queue a build and print its id. With --follow, stream its log and exit with its "
        "result: 0 succeeded, 1 failed, 6 canceled, 7 timed out or expired.",
    )
    run.add_argument("project", help="the project's name or id")
    run.add_argument("--pipeline", help="name or id (needed when the project has several)")
    run.add_argument("--branch", help="the branch to build (default: the project's)")
    run.add_argument("--commit", help="the commit to build")
    run.add_argument("--follow", "-f", action="store_true", help="stream the log to the end")
    listing = command(cmds, "list", _list, "list builds, newest first")
    listing.add_argument("--status", choices=STATUSES, help="only builds in this state")
    listing.add_argument("--project", help="only this project's builds (name or id)")
    listing.add_argument("--branch", help="only builds of this branch")
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    show = command(cmds, "show", _show, "a build's state, steps and times")
    show.add_argument("build", help=BUILD_REF)
    logs = command(
        cmds,
        "logs",
        _logs,
        "print a build's log",
        "Print a build's log. With --follow, stream it live until the build ends (resuming "
        "where it was when the connection drops). Colours are kept on a terminal and "
        "stripped when the output is piped; --json prints one JSON object per line.",
    )
    logs.add_argument("build", help=BUILD_REF)
    logs.add_argument("--follow", "-f", action="store_true", help="stream it until the end")
    logs.add_argument(
        "--tail",
        "-n",
        type=int,
        metavar="N",
        help="only the last N lines (with --follow: then the live ones)",
    )
    logs.add_argument(
        "--exit-status",
        action="store_true",
        help="with --follow, exit with the build's result as `build run --follow` does",
    )
    cancel = command(cmds, "cancel", _cancel, "cancel a build that has not finished")
    cancel.add_argument("build", help=BUILD_REF)
    rerun = command(cmds, "rerun", _rerun, "queue a finished build again")
    rerun.add_argument("build", help=BUILD_REF)
    rerun.add_argument("--follow", "-f", action="store_true", help="stream the new build's log")
