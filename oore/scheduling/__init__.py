"""The runner hot path: dispatcher, claims in batches, build state machines, deadlines and
leases, behind one facade (:class:`Scheduling`); its supervision tree is in ``tree``."""

from oore.scheduling.builds import FILE_TIMEOUT_KEY, BuildTimeouts, log_ended
from oore.scheduling.dispatcher import RunnerSlot
from oore.scheduling.facade import Scheduling, SchedulingConfig
from oore.scheduling.job import Job
from oore.scheduling.tree import scheduling_tree, start_scheduling
from oore.scheduling.waiting import WaitingBuilds

__all__ = [
    "FILE_TIMEOUT_KEY",
    "BuildTimeouts",
    "Job",
    "RunnerSlot",
    "Scheduling",
    "SchedulingConfig",
    "WaitingBuilds",
    "log_ended",
    "scheduling_tree",
    "start_scheduling",
]
