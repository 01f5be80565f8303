"""Pipelines API (contract §2.6)."""

from __future__ import annotations

from quart import Blueprint

blueprint = Blueprint("pipelines", __name__)
