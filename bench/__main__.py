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
from typing import Any

from bench import (
    claims,
    crash,
    fleet,
    fuzz,
    hostile,
    logs,
    logs_fleet,
    memory,
    pickup,
    readers,
    scaleout,
    suite,
)


def _peers(argv: list[str] | None) -> dict[str, Any]:
    from bench import peers  # pgqueuer is an optional extra: the others run without it

    return peers.main(argv)


SCENARIOS: dict[str, Callable[[list[str] | None], dict[str, Any]]] = {
    "claims": claims.main,
    "crash": crash.main,
    "fleet": fleet.main,
    "fuzz": fuzz.main,
    "hostile": hostile.main,
    "logs": logs.main,
    "logs-fleet": logs_fleet.main,
    "memory": memory.main,
    "peers": _peers,
    "pickup": pickup.main,
    "readers": readers.main,
}
SCENARIOS["all"] = lambda argv: suite.main(SCENARIOS, argv)
SCENARIOS["scaleout"] = lambda argv: scaleout.main(SCENARIOS, argv)


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
