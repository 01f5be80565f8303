"""The live events stream (``GET /v1/events/stream``): who sees what, and its SSE bytes.

Events, in the order things happened:

* ``ready`` (``{}``): the stream is open and every later change will be sent; a client
  (re)loads its lists now, so nothing falls between that load and the first event.
* ``build`` (``{"build": <as GET /v1/builds/{id}>}``): a build the user may read was
  created or changed status.
* ``runner`` (``{"runner": <as GET /v1/runners/{id}>}``, or ``{"runner": {"id": ...},
  "deleted": true}``): a runner was registered, changed (status, draining, name...) or
  deleted; only to users who may read runners.
* ``resync`` (``{}``): changes were skipped (the client read too slowly, or what it may
  see changed); it reloads its lists.
* ``done`` (plain-text reason ``authorization_ended``): the session ended; the server
  closes the stream. It also closes it, without an event, after its lifetime: the client
  reconnects (EventSource does so by itself, after the ``retry`` delay sent first).

Comments (``: ping``) keep the connection alive in silence. Events carry no ids: there is
no replay, a reconnecting client reloads its lists on ``ready``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

RECONNECT_MS = 2000
READY = f"retry: {RECONNECT_MS}\nevent: ready\ndata: {{}}\n\n".encode()
RESYNC = b"event: resync\ndata: {}\n\n"
PING = b": ping\n\n"


@dataclass(frozen=True)
class Audience:
    """What one stream may be sent: the builds of ``projects`` (None: of every project),
    and runner changes if ``runners``."""

    projects: frozenset[str] | None
    runners: bool

    def sees_project(self, project_id: str) -> bool:
        return self.projects is None or project_id in self.projects


def _event(name: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body, separators=(",", ":"))
    return f"event: {name}\ndata: {data}\n\n".encode()


def build_event(build: dict[str, Any]) -> bytes:
    return _event("build", {"build": build})


def runner_event(runner: dict[str, Any]) -> bytes:
    return _event("runner", {"runner": runner})


def runner_deleted_event(runner_id: str) -> bytes:
    return _event("runner", {"runner": {"id": runner_id}, "deleted": True})
