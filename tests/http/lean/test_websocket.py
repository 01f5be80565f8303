"""The lean WebSocket over trio's in-memory lockstep streams, where a send completes only
as the peer reads: so a test decides when the other side is reading."""

from __future__ import annotations

import trio
import trio.testing
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, TextMessage

from oore.http.lean.websocket import WebSocket


async def test_a_close_answered_while_another_task_is_sending_still_goes_out() -> None:
    server, client = trio.testing.lockstep_stream_pair()
    ws = WebSocket(server, max_message=1024, send_limit=1024 * 1024)
    frames = Connection(ConnectionType.CLIENT)
    received: list[object] = []

    async def read_until_closed() -> None:
        with trio.fail_after(5):
            while not any(isinstance(e, CloseConnection) for e in received):
                frames.receive_data(bytes(await client.receive_some(65536)))
                received.extend(frames.events())

    sending = trio.CancelScope()

    async def reply() -> None:
        with sending:
            await ws.send_text(b'{"id": 1, "ok": true}')

    async def session() -> None:
        # The channel ends as a session ends it: once receive() says the connection is
        # over, the tasks still sending are cancelled.
        assert await ws.receive() is None
        sending.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reply)  # a reply is being sent; the runner is not reading yet
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(session)
        await client.send_all(bytes(frames.send(CloseConnection(code=1000))))  # it closes
        await read_until_closed()
    texts = [e.data for e in received if isinstance(e, TextMessage)]
    assert texts == ['{"id": 1, "ok": true}']
    assert ws.close_code == 1000
