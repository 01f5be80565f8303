"""How daemons sharing one PostgreSQL work as one: PostgreSQL decides, daemons tell.

Every daemon may take any request. What must be decided once (who claims a build, who
holds a token, which daemon runs the maintenance duties) is decided by the database; what
the other daemons must hear of (a build queued or canceled, a runner changed, a setting,
a log's new lines) travels as coalesced notices (:mod:`oore.cluster.notices`), with a
fallback poll for a notice that was lost; the maintenance duties run on one daemon,
elected through a lease row (:mod:`oore.cluster.leader`). One daemon alone runs the same
code: it simply hears nothing from others.
"""

from oore.cluster.leader import Leadership
from oore.cluster.notices import Notices, Subscription

__all__ = ["Leadership", "Notices", "Subscription"]
