"""The app served as the daemon serves it: oore's accept loop, with the lean listener (the
runner channel) in front of Hypercorn, on a loopback port."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.config import Config
from quart_trio import QuartTrio

from oore.http.context import AppServices
from oore.http.lean.runner_channel import ChannelLimits, lean_routes
from oore.http.server import ConnectionLimits, serve
from oore.protocol.runner import MAX_FRAME

LIMITS = ConnectionLimits(max_connections=1000, keepalive_seconds=5.0)


def server_config(bind: str = "127.0.0.1:0") -> Config:
    config = Config()
    config.bind = [bind]
    config.graceful_timeout = 1.0
    config.websocket_max_message_size = MAX_FRAME
    config.keep_alive_timeout = LIMITS.keepalive_seconds
    return config


async def serve_app(
    app: Any,
    services: AppServices,
    *,
    bind: str = "127.0.0.1:0",
    shutdown_trigger: Callable[[], Awaitable[None]],
    lean: bool = True,
    channel: ChannelLimits | None = None,
    access_log: bool = False,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` (with the runner channel on the lean listener unless ``lean`` is
    False) until ``shutdown_trigger`` returns; reports the bound URLs."""
    routes = (
        lean_routes(services, access_log=access_log, limits=channel or ChannelLimits())
        if lean
        else None
    )
    await serve(
        app,
        server_config(bind),
        LIMITS,
        shutdown_trigger=shutdown_trigger,
        lean=routes,
        task_status=task_status,
    )


def services_of(app: QuartTrio) -> AppServices:
    found: AppServices = app.extensions["oore"]
    return found
