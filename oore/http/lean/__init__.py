"""The lean listener: the daemon's hot connections served by oore itself, not the ASGI stack.

Every connection the daemon accepts goes first through :func:`~oore.http.lean.routes.dispatch`
(see oore/http/server.py), which reads the head of its first request. A request one of
the lean routes takes (the runner channel's WebSocket upgrade,
``GET /v1/runners/{id}/channel``; a build's log stream; the hottest API reads, see
:mod:`.reads`) is served here; anything else is handed to Hypercorn with the bytes already
read, exactly as if Hypercorn had read them (keep-alive, limits, the Host/Origin guard,
security headers, request ids and access logging are Quart's and Hypercorn's as before).
A read keeps its connection open; the next request on it is dispatched the same way, so
the connection goes to Hypercorn at its first request no lean route takes.

Why the runner channel leaves the general stack: it carries every claim, heartbeat,
status report and log batch of a fleet, so its per-connection and per-frame costs are the
daemon's. Under Hypercorn and Quart a channel frame went through wsproto's handshake
object, Hypercorn's stream and queue, Quart's websocket context and the stdlib JSON
module: about 1.2 ms of daemon CPU per claim (788 durable claims/s over the channel on
2 cores, where the target is 5,000) and 57.7 KB of daemon memory per idle connected runner
(target 8 KB). Here a channel is one socket, wsproto's frame parser (no handshake object,
no permessage-deflate), a bounded send buffer and orjson, and the connection's task; the
REST API stays on Quart.

Modules: :mod:`.head` reads and parses a request head; :mod:`.answers` writes plain HTTP
answers (errors, the 101); :mod:`.websocket` is a server WebSocket over a trio stream with
a bounded send buffer; :mod:`.routes` is the routing table and the dispatch;
:mod:`.runner_channel` is the runner channel (its upgrade checks and its session);
:mod:`.log_stream` a build's live log; :mod:`.reads` the hot reads. A
server-sent-event stream (``text/event-stream``) fits the same shape: a route that
matches its head and writes to the connection it owns.
"""

from oore.http.lean.routes import LeanRoute, LeanRoutes, Shutdown, dispatch

__all__ = ["LeanRoute", "LeanRoutes", "Shutdown", "dispatch"]
