"""Marks: what a committed write may have changed, as the answer caches forget by them.

The store gives the marks of each write (oore/store/changes.py); the answers kept in
memory (oore/http/lean/cache.py) each depend on some, and are dropped when one of them
comes, from this daemon's writes or, by notice, from another daemon's.
"""

from __future__ import annotations

WORLD = "world"  # anything may have changed: every kept answer goes
BUILDS = "builds"  # some build changed: lists of builds
RUNNERS = "runners"  # some runner's state changed: runner lists, why queued builds wait
ANY_BUILD = "build:*"  # any one build may have changed: every answer about one build
_BUILD = "build:"


def build_mark(build_id: str) -> str:
    """The mark of one build: its status, its events or its lines changed."""
    return _BUILD + build_id


def is_build_mark(mark: str) -> bool:
    """A mark of one build, or of any one build."""
    return mark.startswith(_BUILD)
