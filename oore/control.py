"""The control socket: a private Unix socket in the data directory for out-of-band commands.

Only someone who can open files in the data directory (mode 0700) can reach it, which is
what makes a bootstrap token minted here trustworthy. One JSON line in, one JSON line out.
"""

from __future__ import annotations

import json
import os
import socket as stdsocket
from functools import partial
from pathlib import Path
from typing import Any

import trio

from oore.domain.setup import BOOTSTRAP_TTL_MAX, BOOTSTRAP_TTL_MIN
from oore.errors import ApiError
from oore.services.identity import Identity

MAX_LINE = 64 * 1024
CLIENT_TIMEOUT = 10.0


class OperatorError(Exception):
    """The daemon could not be reached or refused the command."""


async def _dispatch(identity: Identity, request: dict[str, Any]) -> dict[str, Any]:
    op = request.get("op")
    if op == "mint_bootstrap_token":
        ttl = request.get("ttl_seconds")
        if not isinstance(ttl, int) or not BOOTSTRAP_TTL_MIN <= ttl <= BOOTSTRAP_TTL_MAX:
            return {"ok": False, "code": "invalid_input", "error": "ttl must be 1s..1h"}
        issued = await identity.mint_bootstrap_token(ttl)
        return {"ok": True, "token": issued.token, "expires_at": issued.expires_at}
    return {"ok": False, "code": "unknown_op", "error": f"unknown operation {op!r}"}


async def _read_line(stream: trio.abc.ReceiveStream) -> bytes:
    buffer = b""
    while b"\n" not in buffer:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        buffer += chunk
        if len(buffer) > MAX_LINE:
            raise OperatorError("request too long")
    return buffer.split(b"\n", 1)[0]


async def serve_control(
    path: Path, identity: Identity, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Listen on ``path`` until cancelled; the socket file is removed on exit."""
    await trio.to_thread.run_sync(partial(path.unlink, missing_ok=True))
    sock = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    await sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(16)
    listener = trio.SocketListener(sock)

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            with trio.move_on_after(CLIENT_TIMEOUT):
                try:
                    request = json.loads(await _read_line(stream))
                    if not isinstance(request, dict):
                        raise ValueError("request must be a JSON object")
                    reply = await _dispatch(identity, request)
                except ApiError as exc:
                    reply = {"ok": False, **exc.to_json()}
                except (ValueError, OperatorError) as exc:
                    reply = {"ok": False, "code": "invalid_request", "error": str(exc)}
                await stream.send_all(json.dumps(reply).encode() + b"\n")

    try:
        async with listener:
            task_status.started()
            await trio.serve_listeners(handle, [listener])
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(partial(path.unlink, missing_ok=True))


def call_control(path: Path, request: dict[str, Any]) -> dict[str, Any]:
    """Send one command to a running daemon (blocking; for the CLI)."""
    try:
        with stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM) as sock:
            sock.settimeout(CLIENT_TIMEOUT)
            sock.connect(str(path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        raise OperatorError(
            f"oored is not running on this data directory ({path.parent})"
        ) from None
    except OSError as exc:
        raise OperatorError(f"could not talk to oored at {path}: {exc}") from None
    try:
        reply: dict[str, Any] = json.loads(data)
    except json.JSONDecodeError:
        raise OperatorError("oored sent an unreadable answer") from None
    return reply
