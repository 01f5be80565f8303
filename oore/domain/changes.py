"""Marks: what a committed write may have changed, as the answer caches forget by them.

The store gives the marks of each write (oore/store/changes.py); the answers kept in
memory (oore/http/lean/cache.py) each depend on some, and are dropped when one of them
comes, from this daemon's writes or, by notice, from another daemon's.
"""

from __future__ import annotations

WORLD = "world"  # anything may have changed: every kept answer goes
BUILDS = "builds"  # builds changed in a way not told apart: every list of builds
RUNNERS = "runners"  # some runner's state changed: runner lists, why queued builds wait
ANY_BUILD = "build:*"  # any one build may have changed: every answer about one build
_BUILD = "build:"
# A build came or went (a list's total and its pages moved), or its status or runner
# changed (a list filtered or sorted by status, a runner's current builds), in a scope:
# every build, one project's, or one pipeline's. A build's project, pipeline, branch and
# creation time never change, so a list narrowed by them and sorted by time shows the same
# builds in the same order until one comes or goes; only the builds it shows may change.
_CAME = "builds+:"
_MOVED = "builds~:"
EVERY = "*"


def build_mark(build_id: str) -> str:
    """The mark of one build: its status, its events or its lines changed."""
    return _BUILD + build_id


def is_build_mark(mark: str) -> bool:
    """A mark of one build, or of any one build."""
    return mark.startswith(_BUILD)


def scopes_of(project_id: str, pipeline_id: str) -> tuple[str, ...]:
    """The scopes a build is in: every build's, its project's and its pipeline's."""
    return (EVERY, f"project:{project_id}", f"pipeline:{pipeline_id}")


def list_scope(project_id: str | None, pipeline_id: str | None) -> str:
    """The narrowest scope a list of builds is narrowed to (its pipeline's, its project's,
    or every build's); the ids as PostgreSQL writes them."""
    if pipeline_id is not None:
        return f"pipeline:{pipeline_id}"
    return EVERY if project_id is None else f"project:{project_id}"


def came_mark(scope: str) -> str:
    """The mark of a build created or removed in ``scope``."""
    return _CAME + scope


def moved_mark(scope: str) -> str:
    """The mark of a build in ``scope`` whose status or runner changed."""
    return _MOVED + scope
