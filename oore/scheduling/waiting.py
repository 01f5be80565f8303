"""Why queued builds wait: no online runner could take them."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace

from oore.domain.builds import Build, BuildStatus, WaitingReason, waiting_reason
from oore.eventlog import event
from oore.scheduling.ports import Clock
from oore.store import Store

log = logging.getLogger(__name__)

WAITING_LOGGED = 10_000  # build ids remembered as already logged waiting


class WaitingBuilds:
    """Why queued builds wait: no online runner could take them (``waiting_reason``).

    Asked when builds are queued and shown; each build waiting is logged once (the ids
    logged are remembered, a bounded number of them).
    """

    def __init__(self, store: Store, clock: Clock, runner_lease: float) -> None:
        self._store = store
        self._clock = clock
        self._lease = int(runner_lease)
        self._logged: OrderedDict[str, None] = OrderedDict()

    async def explain(self, builds: Sequence[Build]) -> list[Build]:
        """The builds, the queued ones with their waiting reason (one database call, and
        none when no build is queued)."""
        needs = {
            frozenset(build.required_labels)
            for build in builds
            if build.status is BuildStatus.QUEUED
        }
        if not needs:
            return list(builds)
        since = self._clock.now() - self._lease
        held = await self._store.runners.online_holding(since, list(needs | {frozenset()}))
        explained = []
        for build in builds:
            if build.status is BuildStatus.QUEUED:
                reason = waiting_reason(
                    build.required_labels,
                    anyone_online=held[frozenset()],
                    labels_held=held[frozenset(build.required_labels)],
                )
                build = replace(build, waiting=reason)
                if build.waiting is not None:
                    self._log_once(build, build.waiting)
            explained.append(build)
        return explained

    def _log_once(self, build: Build, reason: WaitingReason) -> None:
        if build.id in self._logged:
            return
        self._logged[build.id] = None
        if len(self._logged) > WAITING_LOGGED:
            self._logged.popitem(last=False)
        event(
            log,
            "build.waiting",
            build.log_fields(),
            reason=reason.code,
            message=reason.message,
            level=logging.WARNING,
        )
