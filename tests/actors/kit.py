"""Messages shared by the actor tests' toy actors."""

from __future__ import annotations

from dataclasses import dataclass

import trio

from oore.actors import Reply


class Boom(Exception):
    """The failure test actors raise on purpose."""


@dataclass(frozen=True)
class Add:
    n: int


@dataclass(frozen=True)
class Total:
    reply: Reply[int]


@dataclass(frozen=True)
class Explode:
    reply: Reply[None]


@dataclass(frozen=True)
class Hold:
    gate: trio.Event
