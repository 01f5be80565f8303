"""How daemons sharing one PostgreSQL work as one: PostgreSQL decides, daemons tell.

Every daemon may take any request. What must be decided once (who claims a build, who
holds a token, which daemon runs the maintenance duties) is decided by the database; what
the other daemons must hear of (a build queued or canceled, a runner changed, a setting,
a log's new lines) travels as coalesced notices (:mod:`oore.cluster.notices`), with a
fallback poll for a notice that was lost; the maintenance duties run on one daemon,
elected through a lease row (:mod:`oore.cluster.leader`). One daemon alone runs the same
code: it simply hears nothing from others.
"""

from dataclasses import dataclass

from oore.cluster.leader import Leadership
from oore.cluster.notices import Notices, Subscription

__all__ = ["ClusterState", "Leadership", "Notices", "Subscription", "cluster_state"]


@dataclass(frozen=True)
class ClusterState:
    """This daemon's part in the cluster, as ``/metrics`` shows it."""

    daemon: str  # this process's name in notices and the leader lease
    leading: bool
    terms: int  # times it became the leader
    listening: bool
    notices_sent: int
    notices_received: int
    notices_unsent: int  # sends that failed (the others catch up by polling)
    resyncs: int


def cluster_state(notices: Notices, leadership: Leadership) -> ClusterState:
    return ClusterState(
        daemon=notices.sender,
        leading=leadership.leading,
        terms=leadership.terms,
        listening=notices.listening,
        notices_sent=notices.sent,
        notices_received=notices.received,
        notices_unsent=notices.send_failures,
        resyncs=notices.resyncs,
    )
