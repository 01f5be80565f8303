"""A real ``oore runner`` whose network drops mid-log, the daemon staying up: the build
goes on, and its log is every line once, in order, with no gap.

The runner reaches the daemon through a relay in this test. The cut first swallows what
the daemon answers (the runner's batches still arrive and are committed, their answers
never come back, so the runner must send them again), then resets every connection and
refuses new ones for a moment.
"""

from __future__ import annotations

import socket
import struct
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.e2e.conftest import DaemonFactory
from tests.e2e.test_database_outage import StartRunner, start_runner
from tests.e2e.test_requeued_build_log import Api, wait_until
from tests.e2e.test_runner_agent import committed_repo

__all__ = ["start_runner"]

# The cut leaves the runner's streams to the garbage collector mid-read; not ours.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

LINES = 600
CUT_AFTER = 100  # stored lines before the cut
SWALLOW = 0.8  # seconds the daemon's answers are lost (batches leave every 0.25 s)
DOWN = 1.5  # seconds new connections are refused


def pipeline() -> str:
    printing = (
        f'for i in $(seq 1 {LINES}); do echo "line $i"; '
        "if [ $((i % 20)) -eq 0 ]; then sleep 0.1; fi; done"
    )
    return f"version: 1\nplatforms: [android]\ncommands:\n  build:\n    - {printing!r}\n"


def reset(stream: trio.SocketStream) -> None:
    """Close with RST, as a dropped network shows itself to the other end."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Relay:
    """A loopback TCP relay to the daemon that :meth:`cut` drops."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.swallowing = False
        self.swallowed = 0  # bytes of answers lost
        self.down = False
        self._open: set[trio.CancelScope] = set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._relay, listeners)

    async def _relay(self, client: trio.SocketStream) -> None:
        if self.down:
            reset(client)
            await client.aclose()
            return
        server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        with trio.CancelScope() as scope:
            self._open.add(scope)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, client, server, False, nursery.cancel_scope)
                nursery.start_soon(self._pump, server, client, True, nursery.cancel_scope)
        self._open.discard(scope)
        for stream in (client, server):
            reset(stream)
            await stream.aclose()

    async def _pump(
        self, src: trio.SocketStream, dst: trio.SocketStream, answers: bool, both: trio.CancelScope
    ) -> None:
        try:
            while data := await src.receive_some(65536):
                if answers and self.swallowing:
                    self.swallowed += len(data)
                    continue
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        both.cancel()

    async def drop(self) -> None:
        """Reset every connection, refuse new ones for :data:`DOWN` seconds, then relay
        everything again."""
        self.down = True
        for scope in list(self._open):
            scope.cancel()
        await trio.sleep(DOWN)
        self.down = False
        self.swallowing = False


@pytest.mark.timeout(180)
async def test_a_runner_whose_network_drops_mid_log_resumes_without_gap_or_repeat(
    make_daemon: DaemonFactory, start_runner: StartRunner, tmp_path: Path
) -> None:
    repo = committed_repo(tmp_path / "repo", {".oore.yaml": pipeline()})
    daemon = make_daemon().start()
    port = int(daemon.url.rsplit(":", 1)[1])
    relay = Relay(port)
    async with (
        httpx.AsyncClient(base_url=daemon.url, timeout=30) as client,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(relay.serve)
        token = (await client.post("/v1/auth/local/login", json={})).json()["session_token"]
        api = Api(client, token)
        project = (
            await api.call(
                "POST",
                "/v1/projects",
                {"name": "app", "local_repository_path": str(repo)},
                expect=201,
            )
        )["project"]
        pipeline_id = (
            await api.call(
                "POST", f"/v1/projects/{project['id']}/pipelines", {"name": "ci"}, expect=201
            )
        )["pipeline"]["id"]
        build_id = (
            await api.call(
                "POST",
                f"/v1/projects/{project['id']}/builds",
                {"pipeline_id": pipeline_id},
                expect=201,
            )
        )["build"]["id"]
        runner: subprocess.Popen[bytes] = start_runner(f"http://127.0.0.1:{relay.port}", token)

        async def stored() -> int:
            total: int = (await api.logs(build_id))["total"]
            return total

        async def enough() -> bool:
            return await stored() >= CUT_AFTER

        await wait_until("the first lines", enough)
        before = await stored()
        relay.swallowing = True
        await trio.sleep(SWALLOW)
        during = await stored()
        await relay.drop()
        # Batches were committed while their answers were lost: the runner sends them
        # again, and the daemon must not store them twice.
        assert during > before and relay.swallowed > 0

        async def finished() -> dict[str, Any] | None:
            build = await api.build(build_id)
            return build if build.get("finished_at") else None

        done = await wait_until("the build to end", finished)
        assert done["status"] == "succeeded" and done["attempt"] == 1, done
        logs = await api.logs(build_id)
        sequences = [line["sequence"] for line in logs["logs"]]
        assert sequences == list(range(len(sequences))) and logs["total"] == len(sequences)
        numbered = [line["content"] for line in logs["logs"] if line["content"].startswith("line ")]
        assert numbered == [f"line {i}" for i in range(1, LINES + 1)]
        assert runner.poll() is None
        nursery.cancel_scope.cancel()
    assert daemon.stop() == 0
