"""Projects API and project members (contract §2.5)."""

from __future__ import annotations

from quart import Blueprint

blueprint = Blueprint("projects", __name__)
