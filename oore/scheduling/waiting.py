"""Why queued builds wait: no online runner could take them."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace

from oore.domain.builds import (
    Build,
    BuildStatus,
    WaitingReason,
    runner_policy_block,
    waiting_reason,
)
from oore.domain.runners import MACOS_OS_NAMES
from oore.eventlog import event
from oore.scheduling.ports import Clock
from oore.store import Store

log = logging.getLogger(__name__)

WAITING_LOGGED = 10_000  # build ids remembered as already logged waiting


class WaitingBuilds:
    """Why queued builds wait: no online runner could take them (``waiting_reason``), or
    only runners the runner pause holds back (``runner_policy_block_reason``).

    Asked when builds are queued and shown; each build waiting is logged once (the ids
    logged are remembered, a bounded number of them).
    """

    def __init__(
        self, store: Store, clock: Clock, runner_lease: float, paused: Callable[[], bool]
    ) -> None:
        self._store = store
        self._clock = clock
        self._lease = int(runner_lease)
        self._paused = paused
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
        wanted = list(needs | {frozenset()})
        paused = self._paused()
        if paused:
            by_os = await self._store.runners.online_holding_by_os(
                since, wanted, list(MACOS_OS_NAMES)
            )
            held = {need: macos or other for need, (macos, other) in by_os.items()}
        else:
            held = await self._store.runners.online_holding(since, wanted)
        explained = []
        for build in builds:
            if build.status is BuildStatus.QUEUED:
                need = frozenset(build.required_labels)
                reason = waiting_reason(
                    build.required_labels,
                    anyone_online=held[frozenset()],
                    labels_held=held[need],
                )
                block = None
                if paused:
                    macos, other = by_os[need]
                    block = runner_policy_block(paused=True, macos_held=macos, other_held=other)
                build = replace(build, waiting=reason, block_reason=block)
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
