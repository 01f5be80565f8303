"""``python -m bench <scenario> [options]``: run one benchmark scenario against a fresh oored.

Scenarios: claims, crash (SIGKILLs of oored while real runners build), fleet, fuzz
(schemathesis against the OpenAPI document), hostile (slow and idle connections), logs,
logs-fleet, memory, peers (needs the ``bench`` extra: pgqueuer), pickup, readers (API
readers beside runners); ``all`` runs every one of them but crash and fuzz at the issue's
sizes, one after another; ``scaleout`` runs claims, fleet, logs and pickup with
``--workers 1``, ``--workers 2`` and ``--daemons 2`` (several daemons on one PostgreSQL)
side by side. claims, fleet, logs and pickup take ``--daemons N`` and ``--workers M``
themselves too. Each prints a table of medians (min..max over its repetitions) and writes
bench/results/<scenario>.json. ``python -m bench <scenario> --help`` lists its options.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import import_module
from typing import Any

Scenario = Callable[[list[str] | None], dict[str, Any]]

# Each scenario's module, imported only when it runs: one scenario's imports (fuzz's
# schemathesis, peers' pgqueuer, an optional extra) cost nothing to the others or to --help.
MODULES = {
    "claims": "claims",
    "crash": "crash",
    "fleet": "fleet",
    "fuzz": "fuzz",
    "hostile": "hostile",
    "logs": "logs",
    "logs-fleet": "logs_fleet",
    "memory": "memory",
    "peers": "peers",
    "pickup": "pickup",
    "readers": "readers",
    "all": "suite",
    "scaleout": "scaleout",
}
RUNNING_OTHERS = {"all", "scaleout"}  # these run the other scenarios in turn


def _scenario(name: str) -> Scenario:
    """The one scenario named (imported now) that answers its parameters and runs."""

    def run(argv: list[str] | None) -> dict[str, Any]:
        module = import_module(f"bench.{MODULES[name]}")
        if name in RUNNING_OTHERS:
            result: dict[str, Any] = module.main(SCENARIOS, argv)
        else:
            result = module.main(argv)
        return result

    return run


SCENARIOS: dict[str, Scenario] = {name: _scenario(name) for name in MODULES}


def usage() -> str:
    """What ``--help`` prints: how to call it, and the scenarios."""
    names = "|".join(SCENARIOS)
    return f"usage: python -m bench {{{names}}} [options]\n\n{__doc__}"


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if not argv or argv[0] not in SCENARIOS:
        print(usage(), file=sys.stderr)
        return 2
    SCENARIOS[argv[0]](argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
