"""The runner channel as a Quart route, for the app served on its own (by any ASGI server,
or Quart's test client). The daemon serves the same URL on its lean listener
(oore/http/lean/runner_channel.py, which says what the channel is) before Hypercorn and
Quart see the connection; both run the same :class:`RunnerSession`.
"""

from __future__ import annotations

import trio
from quart import Blueprint, websocket

from oore.http.context import services
from oore.http.lean.runner_channel import RunnerSession
from oore.http.runner_ops import RunnerOps

blueprint = Blueprint("runner_channel", __name__)


@blueprint.websocket("/v1/runners/<runner_id>/channel")
async def channel(runner_id: str) -> None:
    """Authenticate the upgrade (401/403 as HTTP answers), then serve the runner's frames."""
    authorization = websocket.headers.get("Authorization")
    app = services()
    await app.runners.authenticate(authorization, runner_id)
    await websocket.accept()
    ops = RunnerOps(app.runners, app.builds, app.logs)
    await RunnerSession(ops, runner_id, authorization, _QuartSocket(), cpu=app.cpu).serve()


class _QuartSocket:
    """Quart's websocket as a session's FrameSocket."""

    async def receive(self) -> str | bytes | None:
        return await websocket.receive()

    async def send_text(self, payload: bytes) -> None:
        await websocket.send(payload.decode())

    async def close(self, code: int, reason: str) -> None:
        await websocket.close(code, reason)

    def on_open(self, scope: trio.CancelScope) -> None:
        """Nothing to keep: this socket has no send buffer of its own to give up on."""
