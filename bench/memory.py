"""memory: the daemon's resident memory per idle runner and per idle SSE viewer.

Each repetition starts a fresh ``oored`` with one running build and registers N runners,
then reads the daemon's VmRSS (/proc/<pid>/status) once it is idle (``baseline``). A
load process then makes each runner heartbeat once and park a long-poll claim
(``wait_seconds``: 60, parked again whenever it is answered empty), over its channel or
over HTTP (``--transport``), and holds them: RSS again. Then it opens V idle SSE viewers
of the running build's log (the owner's session; nothing is appended, so they only get
keep-alive comments) and holds them too: RSS again.
Figures: KB per idle runner (RSS delta / N), KB per idle viewer (RSS delta / V), the RSS
at each step, and, for information, the RSS delta per registration. The runners and
viewers are raw sockets in a load process of their own, never the server's.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from functools import partial
from typing import Any

import httpx
import trio

from bench import procfs
from bench.channel import FAILURES as LINK_FAILURES
from bench.channel import TRANSPORTS, Refused, open_link
from bench.harness import (
    BackgroundLoad,
    Server,
    Target,
    done_progress,
    prepare,
    progress,
    register_runners,
    report,
    started_daemon,
)
from bench.rawhttp import FAILURES, RawConn

SETTLE = 1.0  # seconds waited once the daemon is idle before reading its RSS
CONNECT_AT_ONCE = 50  # the server's listen backlog is finite
STEP_TIMEOUT = 300.0
CLAIM = json.dumps({"protocol_version": 4, "wait_seconds": 60}).encode()
HEARTBEAT = json.dumps({"status": "online"}).encode()


class _Tally:
    """How many of ``expected`` connections are ready or failed; ``settled`` once all are."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.ready = 0
        self.failed = 0
        self.error = ""
        self.settled = trio.Event()
        self._check()

    def _check(self) -> None:
        if self.ready + self.failed >= self.expected:
            self.settled.set()

    def up(self) -> None:
        self.ready += 1
        self._check()

    def fail(self, exc: BaseException) -> None:
        self.failed += 1
        self.error = self.error or f"{type(exc).__name__}: {exc}"
        self._check()


async def _channel_runner(
    url: str, runner_id: str, token: str, gate: trio.Semaphore, tally: _Tally
) -> None:
    """A runner on its channel: one heartbeat, then a claim parked (again and again)."""
    try:
        async with trio.open_nursery() as reader:
            async with gate:
                link = await open_link("channel", reader, url, runner_id, token)
                await link.heartbeat()
            tally.up()  # the claim below goes out at once
            while True:
                if await link.claim(wait_seconds=60) is not None:
                    raise RuntimeError("a parked claim got a job")
    except (*LINK_FAILURES, Refused, RuntimeError) as exc:
        tally.fail(exc)


async def _runner(
    host: str, port: int, runner_id: str, token: str, gate: trio.Semaphore, tally: _Tally
) -> None:
    """A runner over HTTP: one heartbeat, then a claim parked (again and again)."""
    path = f"/v1/runners/{runner_id}"
    try:
        async with gate:
            conn = await RawConn.open(host, port)
            status, body = await conn.request("POST", f"{path}/heartbeat", token, HEARTBEAT)
            if status != 204:
                raise RuntimeError(f"heartbeat: {status} {body[:80]!r}")
            await conn.send("POST", f"{path}/claim", token, CLAIM)
        tally.up()
        while True:  # parked; answered empty after wait_seconds, then parked again
            status, body = await conn.response()
            if status != 200 or b'"job"' in body:
                raise RuntimeError(f"claim: {status} {body[:80]!r}")
            await conn.send("POST", f"{path}/claim", token, CLAIM)
    except (*FAILURES, RuntimeError) as exc:
        tally.fail(exc)


async def _viewer(
    host: str, port: int, path: str, token: str, gate: trio.Semaphore, tally: _Tally
) -> None:
    try:
        async with gate:
            conn = await RawConn.open(host, port)
            await conn.send("GET", path, token)
            status, _ = await conn.head()
            if status != 200:
                raise RuntimeError(f"stream refused: {status}")
        tally.up()
        while await conn.stream.receive_some(4096):
            pass  # keep-alive comments; the stream stays open
        raise RuntimeError("the stream ended")
    except (*FAILURES, RuntimeError) as exc:
        tally.fail(exc)


def _holder(results: Any, *args: Any) -> None:
    try:
        results.put(trio.run(_hold, *args))
    except BaseException as exc:  # report it rather than leave the gatherer waiting
        results.put({"crashed": f"{type(exc).__name__}: {exc}"})
        raise


async def _hold(
    url: str,
    runners: list[tuple[str, str]],
    stream_path: str,
    token: str,
    viewers: int,
    events: dict[str, Any],
    transport: str,
) -> dict[str, Any]:
    """Park every runner's claim, say so; open the viewers when told, say so; hold both
    until told to stop."""
    host, port_text = url.removeprefix("http://").rsplit(":", 1)
    port = int(port_text)
    gate = trio.Semaphore(CONNECT_AT_ONCE)
    parked, watching = _Tally(len(runners)), _Tally(viewers)

    async def until(done: Any) -> None:
        await trio.to_thread.run_sync(done.wait, abandon_on_cancel=True)

    async with trio.open_nursery() as nursery:
        for runner_id, runner_token in runners:
            if transport == "http":
                nursery.start_soon(_runner, host, port, runner_id, runner_token, gate, parked)
            else:
                nursery.start_soon(_channel_runner, url, runner_id, runner_token, gate, parked)
        await parked.settled.wait()
        events["runners"].set()
        await until(events["go"])
        for _ in range(viewers):
            nursery.start_soon(_viewer, host, port, stream_path, token, gate, watching)
        await watching.settled.wait()
        events["viewers"].set()
        await until(events["stop"])
        nursery.cancel_scope.cancel()
    return {
        "runners_parked": parked.ready,
        "runner_failures": parked.failed,
        "runner_error": parked.error,
        "viewers_open": watching.ready,
        "viewer_failures": watching.failed,
        "viewer_error": watching.error,
    }


async def _running_build(target: Target, transport: str) -> str:
    """A build triggered, claimed by a runner of its own and reported running; its id.
    Another runner parks a claim and a viewer opens the stream, once each, so that
    first-use costs precede the baseline."""
    async with httpx.AsyncClient(base_url=target.url, timeout=60) as client:

        async def post(path: str, body: Any, headers: dict[str, str]) -> Any:
            reply = await client.post(path, json=body, headers=headers)
            reply.raise_for_status()
            return reply.json() if reply.status_code != 204 else None

        reg = await post("/v1/runners/register", {"name": "memory-build"}, target.auth)
        runner_id, auth = reg["runner"]["id"], {"Authorization": f"Bearer {reg['token']}"}
        await post(f"/v1/runners/{runner_id}/heartbeat", {"status": "online"}, auth)
        build = await post(
            f"/v1/projects/{target.project_id}/builds",
            {"pipeline_id": target.pipeline_id, "commit_sha": target.commit_sha},
            target.auth,
        )
        build_id: str = build["build"]["id"]
        claim = await post(f"/v1/runners/{runner_id}/claim", {"protocol_version": 4}, auth)
        if claim.get("job", {}).get("build_id") != build_id:
            raise SystemExit(f"the build runner claimed {claim!r}, not {build_id}")
        await post(f"/v1/runners/{runner_id}/jobs/{build_id}/status", {"status": "running"}, auth)
        warm = await post("/v1/runners/register", {"name": "memory-warm-up"}, target.auth)
        warm_path = f"/v1/runners/{warm['runner']['id']}"
        warm_auth = {"Authorization": f"Bearer {warm['token']}"}
        await post(f"{warm_path}/heartbeat", {"status": "online"}, warm_auth)
        empty = await post(
            f"{warm_path}/claim", {"protocol_version": 4, "wait_seconds": 1}, warm_auth
        )
        if empty:
            raise SystemExit(f"the warm-up claim got {empty!r}")
        if transport == "channel":
            async with trio.open_nursery() as reader:
                link = await open_link(
                    "channel", reader, target.url, warm["runner"]["id"], warm["token"]
                )
                if await link.claim(wait_seconds=1) is not None:
                    raise SystemExit("the warm-up claim on the channel got a job")
                await link.aclose()
        return await _first_stream(client, target, build_id)


async def _first_stream(client: httpx.AsyncClient, target: Target, build_id: str) -> str:
    path = f"/v1/builds/{build_id}/logs/stream"
    async with client.stream("GET", path, headers=target.auth) as stream:
        stream.raise_for_status()
    return build_id


def _settled_rss_kb(server: Server, settle: float) -> int:
    """The daemon's RSS once it is idle and ``settle`` seconds more have passed."""
    procfs.wait_idle(server.pid)
    time.sleep(settle)
    return procfs.rss_kb(server.pid)


def _wait(event: Any, what: str, loader: BackgroundLoad) -> None:
    began = time.monotonic()
    while not event.wait(0.5):
        if not loader.is_alive() or time.monotonic() - began > STEP_TIMEOUT:
            raise SystemExit(f"the load process never got {what}")


def repetition(
    runners: int, viewers: int, transport: str, settle: float = SETTLE
) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    events = {name: context.Event() for name in ("runners", "go", "viewers", "stop")}
    with started_daemon() as server:
        target = prepare(server)
        progress("a running build")
        build_id = trio.run(_running_build, target, transport)
        start_kb = _settled_rss_kb(server, settle)
        progress(f"registering {runners} runners")
        fleet = trio.run(partial(register_runners, target, runners, "memory"))
        baseline_kb = _settled_rss_kb(server, settle)
        progress(f"{runners} runners: a heartbeat each, then a parked claim")
        path = f"/v1/builds/{build_id}/logs/stream"
        args = [(target.url, fleet, path, target.token, viewers, events, transport)]
        loader = BackgroundLoad(_holder, args)
        try:
            _wait(events["runners"], "its runners parked", loader)
            runners_kb = _settled_rss_kb(server, settle)
            progress(f"{viewers} viewers opening the running build's log")
            events["go"].set()
            _wait(events["viewers"], "its viewers open", loader)
            viewers_kb = _settled_rss_kb(server, settle)
        finally:
            for event in events.values():
                event.set()
            progress("closing")
            loader.wait(timeout=120)
    done_progress()
    held = loader.results()[0]
    if "crashed" in held:
        raise SystemExit(f"the load process crashed: {held['crashed']}")
    if held["runner_failures"] or held["viewer_failures"]:
        raise SystemExit(
            f"{held['runner_failures']} runners failed ({held['runner_error']}), "
            f"{held['viewer_failures']} viewers failed ({held['viewer_error']})"
        )
    return {
        "kb_per_idle_runner": (runners_kb - baseline_kb) / runners,
        "kb_per_idle_viewer": (viewers_kb - runners_kb) / viewers,
        "kb_per_registration": (baseline_kb - start_kb) / runners,
        "rss_start_mb": start_kb / 1024,
        "rss_registered_mb": baseline_kb / 1024,
        "rss_runners_idle_mb": runners_kb / 1024,
        "rss_viewers_idle_mb": viewers_kb / 1024,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench memory", description=__doc__)
    parser.add_argument("--runners", type=int, default=2000)
    parser.add_argument("--viewers", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--transport", choices=TRANSPORTS, default=TRANSPORTS[0], help="what the runners speak"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=SETTLE,
        help="seconds waited once the daemon is idle before each RSS reading",
    )
    args = parser.parse_args(argv)
    if args.settle < 0:
        parser.error("--settle must not be negative")
    runs = []
    for i in range(args.repeat):
        progress(f"repetition {i + 1}/{args.repeat}: a fresh oored")
        runs.append(repetition(args.runners, args.viewers, args.transport, args.settle))
    params = {
        "runners": args.runners,
        "viewers": args.viewers,
        "transport": args.transport,
        "settle": args.settle,
    }
    report("memory", params, runs)
    return {"params": params, "runs": runs}
