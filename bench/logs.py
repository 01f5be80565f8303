"""logs: one build's runner appends lines at a fixed rate while V viewers stream it (SSE).

Each line carries the time it was sent, so every viewer measures end-to-end latency: per
read, that of the oldest line it brought (the others waited less). Each viewer also counts
lines lost (sent, never received) and reads that were out of order (a first line not
after the previous read's last, or ids not consecutive within the read). ``--stalled``
makes that fraction of viewers stop reading until the runner is done (they must still end
with every line). The runner's append latency is measured with the viewers and, first,
with none. The server's RSS and CPU come from /proc. The runner speaks ``--transport``
(the agent's channel by default, or HTTP). Viewers are raw sockets in ``--procs`` load
processes, read by one epoll loop in each; the runner is this process.

``--daemons N`` starts N daemons on one PostgreSQL: the runner appends through the first
and the viewers watch through the others (round-robin), so every line reaches them from
another daemon. ``--workers M`` starts each daemon with ``--workers M``. The CPU is given
per daemon, worker and PostgreSQL, and for the viewer processes. The fan-out counters come
from /metrics, which a daemon with workers answers for one worker only: they are left out
then.
"""

from __future__ import annotations

import argparse
import math
import re
import resource
import select
import socket
import time
from typing import Any

import httpx
import trio

from bench.channel import TRANSPORTS, open_link
from bench.harness import (
    SET_UP_TIMEOUT,
    BackgroundLoad,
    Cluster,
    StartGate,
    Target,
    add_cluster_options,
    daemon_counters,
    done_progress,
    percentile,
    prepare,
    progress,
    report,
    started_cluster,
)

BATCH_INTERVAL = 0.05
CONNECT_AT_ONCE = 200
START_LEAD = 0.25  # seconds from the last viewer process ready (its streams open) to the start
_EVENT = re.compile(rb'id: (\d+)\ndata: \{"sequence":\d+,"content":"\d+ ([0-9.]+)')


class _Whole:
    """A body that ends when the connection closes (the daemon's own listener sends one)."""

    ended = False

    def feed(self, data: bytes) -> bytes:
        return data


class _Chunked:
    """Incremental decoder of an HTTP/1.1 chunked body (Hypercorn's, for the app alone)."""

    def __init__(self) -> None:
        self.raw = b""
        self.left = -1  # -1: at a size line; > 0: chunk bytes to read; 0: its CRLF next
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        self.raw += data
        out = bytearray()
        while not self.ended:
            if self.left == -1:
                end = self.raw.find(b"\r\n")
                if end < 0:
                    break
                size = int(self.raw[:end].split(b";")[0], 16)
                self.raw = self.raw[end + 2 :]
                self.ended = size == 0
                self.left = size
            elif self.left > 0:
                taken = self.raw[: self.left]
                out += taken
                self.raw = self.raw[len(taken) :]
                self.left -= len(taken)
                if self.left > 0:
                    break
            else:
                if len(self.raw) < 2:
                    break
                self.raw = self.raw[2:]
                self.left = -1
        return bytes(out)


async def view(
    host: str,
    port: int,
    path: str,
    token: str,
    stall_until: float | None,
    connecting: trio.Semaphore,
    out: list[Any],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """One viewer of the stream at ``path`` as a task, started once its headers are in;
    it reads until ``event: done`` and appends what it saw to ``out`` (see
    :meth:`_Reader.report`). Each read is checked as a whole, as :func:`_watch` does."""
    sock = trio.socket.socket()
    if stall_until is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader = _Reader(stall_until)
    async with connecting:  # held until the stream's headers are in
        await sock.connect((host, port))
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n"
        await sock.send(request.encode())
        while reader.decoder is None:
            data = await sock.recv(65536)
            if not data:
                raise RuntimeError("stream closed before its headers")
            reader.feed(data, time.time())
    task_status.started()
    if stall_until is not None:
        await trio.sleep(max(0.0, stall_until - time.time()))  # a wall-clock instant
    while reader.ended is None:
        data = await sock.recv(1 << 16)
        if not data:
            break
        reader.feed(data, time.time())
    sock.close()
    out.append(reader.report())


def _viewers(
    results: Any,
    urls: list[str],
    path: str,
    token: str,
    count: int,
    stalled: int,
    gate: StartGate,
    seconds: float,
) -> None:
    cpu_before, wall_before = _own_cpu(), time.monotonic()
    watched = _watch(urls, path, token, count, stalled, gate, seconds)
    cores = (_own_cpu() - cpu_before) / (time.monotonic() - wall_before)
    results.put({**watched, "cpu_cores": cores})


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Reader:
    """One viewer read without a task of its own: the bytes of its stream so far, checked a
    read at a time (see :func:`_watch`)."""

    __slots__ = (
        "decoder",
        "ended",
        "got",
        "head",
        "last",
        "latencies",
        "pending",
        "reordered",
        "stall_until",
        "stalled",
    )

    def __init__(self, stall_until: float | None) -> None:
        self.stall_until = stall_until
        self.stalled = stall_until is not None
        self.head = b""  # until the response head is in; then None-like b"" with decoder set
        self.decoder: _Whole | _Chunked | None = None
        self.pending = b""
        self.last = -1
        self.got = 0
        self.reordered = 0
        self.latencies: list[float] = []
        self.ended: str | None = None

    def feed(self, data: bytes, now: float) -> None:
        """Take in bytes read; sets ``ended`` once the stream is over."""
        if self.decoder is None:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, body = self.head.split(b"\r\n\r\n", 1)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"stream refused: {head[:60]!r}")
            chunked = b"transfer-encoding: chunked" in head.lower()
            self.decoder = _Chunked() if chunked else _Whole()
            self.head = b""
            data = body
        text = self.pending + self.decoder.feed(data)
        cut = text.rfind(b"\n\n")
        if cut < 0:
            self.pending = text
            return
        complete, self.pending = text[: cut + 2], text[cut + 2 :]
        events = complete.count(b"event: log\n")
        if events:
            # Order: the ids of a read follow the previous read's and each other.
            start = complete.find(b"event: log\nid: ") + 15
            first_id = int(complete[start : complete.index(b"\n", start)])
            end = complete.rfind(b"\nid: ") + 5
            last_id = int(complete[end : complete.index(b"\n", end)])
            if first_id <= self.last or last_id - first_id + 1 != events:
                self.reordered += 1
            self.last = max(self.last, last_id)
            # Lines the runner sent (not the server's own, a cap's notice); the oldest of
            # the read stands for its latency: the others waited less.
            self.got += complete.count(b'"content":"') - complete.count(b'"content":"[oore]')
            oldest = _EVENT.search(complete)
            if oldest is not None:
                self.latencies.append(now - float(oldest[2]))
        done = complete.find(b"event: done")
        if done >= 0:
            self.ended = complete[done:].partition(b"data: ")[2].split(b"\n", 1)[0].decode()
        elif self.decoder.ended:
            self.ended = "closed"

    def report(self) -> dict[str, Any]:
        return {
            "got": self.got,
            "reordered": self.reordered,
            "latencies": self.latencies,
            "stalled": self.stalled,
            "ended": self.ended or "closed",
        }


def _watch(
    urls: list[str],
    path: str,
    token: str,
    count: int,
    stalled: int,
    gate: StartGate,
    seconds: float,
) -> dict[str, Any]:
    """``count`` viewers in one epoll loop, dealt over ``urls`` in turn, the first
    ``stalled`` of which read nothing until a second after the run (``seconds`` from the
    start the ``gate`` sets once every viewer process has all its streams open). Cheaper
    per read than a task per viewer, so that ten thousand viewers of a busy build measure
    the server rather than themselves."""
    until = math.inf  # when the stalled ones read again: known once the start is
    said_ready = 0.0  # when this process told the gate all its streams are open
    addresses = []
    for url in urls:
        host, port_text = url.removeprefix("http://").rsplit(":", 1)
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
        addresses.append(((host, int(port_text)), request))
    poll = select.epoll()
    readers: dict[int, _Reader] = {}
    sockets: dict[int, socket.socket] = {}
    waiting: list[int] = []  # stalled ones, registered once ``until`` has passed
    opening: dict[int, _Reader] = {}
    started = 0
    finished: list[_Reader] = []

    def open_more() -> int:
        opened = 0
        while started + opened < count and len(opening) < CONNECT_AT_ONCE:
            index = started + opened
            sock = socket.socket()
            stall = math.inf if index < stalled else None  # a stalled reader
            if stall is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            address, request = addresses[index % len(addresses)]
            sock.connect(address)
            sock.sendall(request)
            sock.setblocking(False)
            reader = _Reader(stall)
            opening[sock.fileno()] = reader
            sockets[sock.fileno()] = sock
            poll.register(sock.fileno(), select.EPOLLIN)
            opened += 1
        return opened

    started += open_more()
    while len(finished) < count:
        now = time.time()
        if not said_ready and started == count and not opening:
            gate.ready.put(True)  # every head is in: the viewers are all there
            said_ready = time.monotonic()
        elif said_ready and until == math.inf:
            if gate.go.is_set():
                until = gate.at.value + seconds + 1
            elif time.monotonic() - said_ready > SET_UP_TIMEOUT:
                raise SystemExit("the start never came")
        if waiting and now >= until:
            for fd in waiting:
                poll.register(fd, select.EPOLLIN)
            waiting = []
        for fd, _ in poll.poll(0.2):
            reader = opening.get(fd) or readers[fd]
            try:
                data = sockets[fd].recv(1 << 20)
            except BlockingIOError:
                continue
            if data:
                reader.feed(data, time.time())
            if fd in opening and reader.decoder is not None:  # its head is in
                del opening[fd]
                readers[fd] = reader
                if reader.ended is None and reader.stall_until is not None:
                    poll.unregister(fd)  # it stops reading now
                    waiting.append(fd)
                    continue
            if not data or reader.ended is not None:
                opening.pop(fd, None)
                poll.unregister(fd)
                readers.pop(fd, None)
                sockets.pop(fd).close()
                finished.append(reader)
        if started < count:
            started += open_more()
    poll.close()
    return {"viewers": [reader.report() for reader in finished]}


async def _running_build(target: Target) -> tuple[str, str, str]:
    """A build claimed and running: its id, its runner's id and token."""
    async with httpx.AsyncClient(base_url=target.url, timeout=60) as client:
        reg = await client.post(
            "/v1/runners/register", json={"name": f"logs-{time.time_ns()}"}, headers=target.auth
        )
        runner_id, token = reg.json()["runner"]["id"], reg.json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        build = await client.post(
            f"/v1/projects/{target.project_id}/builds",
            json={"pipeline_id": target.pipeline_id, "commit_sha": target.commit_sha},
            headers=target.auth,
        )
        build_id = build.json()["build"]["id"]
        claim = await client.post(
            f"/v1/runners/{runner_id}/claim", json={"protocol_version": 4}, headers=headers
        )
        assert claim.json()["job"]["build_id"] == build_id
        await client.post(
            f"/v1/runners/{runner_id}/jobs/{build_id}/status",
            json={"status": "running"},
            headers=headers,
        )
        return build_id, runner_id, token


async def _append(
    target: Target,
    transport: str,
    build: tuple[str, str, str],
    rate: int,
    seconds: float,
) -> tuple[list[float], int]:
    """Append ``rate`` lines/s for ``seconds`` over ``transport``, then end the build; the
    append latencies and the lines sent.

    Like a runner's agent, each append carries every line due by then: an append that
    takes longer than the interval makes the next one larger, so the rate holds."""
    build_id, runner_id, token = build
    latencies: list[float] = []
    padding = "x" * 80
    sequence = 0
    async with trio.open_nursery() as nursery:
        link = await open_link(transport, nursery, target.url, runner_id, token)
        began = trio.current_time()
        tick = began
        while (elapsed := trio.current_time() - began) < seconds:
            now = time.time()
            due = max(sequence + 1, round(rate * (elapsed + BATCH_INTERVAL)))
            chunks = [
                {"sequence": n, "content": f"{n} {now:.6f} {padding}", "stream": "stdout"}
                for n in range(sequence, due)
            ]
            sequence = due
            sent = time.perf_counter()
            await link.logs(build_id, chunks)
            latencies.append(time.perf_counter() - sent)
            tick += BATCH_INTERVAL
            await trio.sleep_until(max(tick, trio.current_time()))
        await link.report(build_id, "succeeded", exit_code=0)
        await link.aclose()
    return latencies, sequence


_COUNTERS = {
    "oore_log_fanout_rounds_total": "fanout_rounds",
    "oore_log_fanout_partial_writes_total": "fanout_partial_writes",
    "oore_log_fanout_lagged_total": "viewers_lagged",
    "oore_log_viewer_catch_ups_total": "viewer_catch_ups",
}


def repetition(
    cluster: Cluster,
    target: Target,
    viewers: int,
    rate: int,
    seconds: float,
    stalled: float,
    procs: int,
    transport: str,
) -> dict[str, float]:
    progress("runner alone (0 viewers)")
    alone, _ = trio.run(
        _append, target, transport, trio.run(_running_build, target), rate, seconds / 2
    )
    build = trio.run(_running_build, target)
    build_id = build[0]
    path = f"/v1/builds/{build_id}/logs/stream"
    stalled_count = round(viewers * stalled)
    shares = [viewers // procs + (1 if i < viewers % procs else 0) for i in range(procs)]
    stalls = [
        stalled_count // procs + (1 if i < stalled_count % procs else 0) for i in range(procs)
    ]
    watched = cluster.urls[1:] or cluster.urls  # not the runner's daemon, if there are others
    gate = StartGate.new()
    args = [
        (watched, path, target.token, share, stall, gate, seconds)
        for share, stall in zip(shares, stalls, strict=True)
        if share
    ]
    load = BackgroundLoad(_viewers, args)
    at = gate.open(len(args), load, f"{viewers} viewers connecting", lead=START_LEAD)
    progress(f"{viewers} viewers, {rate} lines/s for {seconds:g}s")
    time.sleep(max(0.0, at - time.time()))
    counted = _counters(cluster)
    meter = cluster.meter()
    meter.start()
    with_viewers, sent = trio.run(_append, target, transport, build, rate, seconds)
    cores = meter.cores()
    rss = cluster.rss_kb()
    results = load.results(timeout=900)
    done_progress()
    counters = {k: v - counted[k] for k, v in _counters(cluster).items()}
    everyone = [v for r in results for v in r["viewers"]]
    live = [v for v in everyone if not v["stalled"]]  # stalled ones are late on purpose
    latencies = [x for v in live for x in v["latencies"]]
    worst_p99 = max((percentile(v["latencies"], 0.99) for v in live if v["latencies"]), default=0)
    return {
        "viewers_finished": float(len(everyone)),
        "lines_sent": float(sent),
        "lines_lost": float(sum(sent - v["got"] for v in everyone)),
        "lines_reordered": float(sum(v["reordered"] for v in everyone)),
        "delivered_lines_per_s": sum(v["got"] for v in everyone) / seconds,
        "latency_p50_ms": percentile(latencies, 0.5) * 1000 if latencies else 0.0,
        "latency_p99_ms": percentile(latencies, 0.99) * 1000 if latencies else 0.0,
        "worst_viewer_p99_ms": worst_p99 * 1000,
        "append_p50_ms": percentile(with_viewers, 0.5) * 1000,
        "append_p99_ms": percentile(with_viewers, 0.99) * 1000,
        "append_p50_ms_0_viewers": percentile(alone, 0.5) * 1000,
        "append_p99_ms_0_viewers": percentile(alone, 0.99) * 1000,
        "server_rss_mb": rss / 1024,
        **cores,
        "viewers_cpu_cores": sum(r["cpu_cores"] for r in results),
        **counters,
    }


def _counters(cluster: Cluster) -> dict[str, float]:
    """The fan-out counters summed over the daemons (none with workers: /metrics is one
    worker's)."""
    if cluster.workers > 1:
        return {}
    every = [daemon_counters(url, _COUNTERS) for url in cluster.urls]
    return {name: sum(counters[name] for counters in every) for name in every[0]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench logs", description=__doc__)
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=200, help="lines per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--stalled", type=float, default=0.0, help="fraction of stalled viewers")
    parser.add_argument("--procs", type=int, default=2, help="viewer processes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--transport", choices=TRANSPORTS, default=TRANSPORTS[0], help="what the runner speaks"
    )
    add_cluster_options(parser)
    args = parser.parse_args(argv)
    with started_cluster(args.daemons, args.workers) as cluster:
        target = prepare(cluster.servers[0])
        runs = [
            repetition(
                cluster,
                target,
                args.viewers,
                args.rate,
                args.seconds,
                args.stalled,
                args.procs,
                args.transport,
            )
            for _ in range(args.repeat)
        ]
    params = {
        "viewers": args.viewers,
        "rate": args.rate,
        "seconds": args.seconds,
        "stalled": args.stalled,
        "procs": args.procs,
        "transport": args.transport,
        "daemons": args.daemons,
        "workers": args.workers,
    }
    report("logs", params, runs)
    return {"params": params, "runs": runs}
