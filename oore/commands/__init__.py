"""``oore``'s commands for people, one module per group, on top of :mod:`oore.client`.

Every command takes ``--server`` and ``--json``; failures are one line on standard error
and an exit code (see :mod:`oore.commands.base`), never a traceback.
"""

from __future__ import annotations

import argparse

from oore.commands import artifacts, builds, enrollment, login, projects, runners, variables


def add_all(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for module in (login, projects, variables, builds, artifacts, runners, enrollment):
        module.add(groups)
