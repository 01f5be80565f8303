"""The scheduling supervision tree, and how it starts.

    scheduling (supervisor)
    ├── claims       one task: commits the claims ready together, one transaction each batch
    ├── heartbeats   group commit of heartbeats that change a runner's status
    ├── deadlines    one task: the assign and build timeouts of every bound build (a heap)
    └── leases       one task: every runner's lease (a heap), ``last_seen`` in batches

The dispatcher and the build state machines have no task: they are plain objects changed
by the calls of :class:`~oore.scheduling.facade.Scheduling`, which the tasks above serve.
Each task is restarted after a crash; its state lives on its handle, which outlives it.
"""

from __future__ import annotations

import logging

from oore.actors import Supervisor, supervisor_spec
from oore.domain.crypto import SecretBox
from oore.scheduling.facade import Scheduling, SchedulingConfig
from oore.scheduling.ports import Clock, Events, Metrics
from oore.store import Store

log = logging.getLogger(__name__)


def scheduling_tree(scheduling: Scheduling) -> Supervisor:
    """The subtree to put under the root supervisor, in start order."""
    return Supervisor(
        "scheduling",
        [
            scheduling.claims.spec(),
            scheduling.heartbeats.spec(),
            scheduling.deadlines.spec(),
            scheduling.leases.spec(),
        ],
        max_restarts=5,
        period=10.0,
    )


async def start_scheduling(
    store: Store,
    clock: Clock,
    config: SchedulingConfig,
    parent: Supervisor,
    metrics: Metrics,
    *,
    events: Events,
    secrets: SecretBox | None = None,
) -> Scheduling:
    """Start the scheduling subtree under ``parent`` (which stops it) and recover its state
    from the database: the queue, the held builds, their deadlines, their runners' leases."""
    scheduling = Scheduling(store, clock, config, metrics, events, secrets)
    recovered = await store.builds.recover_scheduled(clock.now())
    if recovered:
        log.info("moved %d scheduled builds back to the queue", recovered)
    scheduling.dispatcher.load(await store.builds.queued(), await store.builds.active_counts())
    await parent.start_child(supervisor_spec(scheduling_tree(scheduling)))
    await scheduling.recover()
    return scheduling
