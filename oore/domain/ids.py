"""Typed identifiers."""

from __future__ import annotations

import uuid
from typing import NewType

InstanceId = NewType("InstanceId", str)
UserId = NewType("UserId", str)


def new_id() -> str:
    """A fresh UUID v4 as text."""
    return str(uuid.uuid4())
