"""Prometheus metrics: requests by route template, actor statistics, the services' events,
and gauges of live state read when scraped.

Every label takes one of a fixed set of values, whatever clients send: a method outside
the standard ones is ``OTHER``, a path no route matches is ``__unmatched__`` and a status is
the server's own, so the series (and ``/metrics``) cannot grow without bound. The one label
whose values come from users, the runner labels a queued build needs, shows the
:data:`QUEUE_LABEL_SETS` deepest sets and sums the rest as ``other``.

Unfinished builds and runners by state are read from the database at each scrape (two
aggregate queries; concurrent scrapes share one read). While the database cannot answer
within :data:`DATABASE_BUDGET` seconds those families are left out and
``oore_database_up`` says why; the rest of the page is served as usual.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence

import trio
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from quart import Quart, Response, g, request

from oore.actors import ActorStatistics
from oore.cluster import ClusterState
from oore.domain.builds import BuildStatus, LiveBuilds
from oore.domain.rate_limit import LimitStatistics
from oore.domain.runners import RunnerStatus
from oore.errors import ApiError
from oore.http.context import AppServices
from oore.http.lean.cache import AnswerCache
from oore.http.lean.lanes import Lanes
from oore.live.logpeers import LogPeers
from oore.services.database import DatabaseStatus
from oore.services.events import Events
from oore.services.logs import Logs

_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
UNMATCHED = "__unmatched__"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"

DATABASE_BUDGET = 2.0  # seconds a scrape waits for the database's counts
QUEUE_LABEL_SETS = 20  # distinct runner-label sets shown in the queue depth
OTHER_LABELS = "other"
LIVE_STATUSES = (
    BuildStatus.QUEUED,
    BuildStatus.SCHEDULED,
    BuildStatus.ASSIGNED,
    BuildStatus.RUNNING,
)

# Where the app keeps its Metrics (app.extensions), for the lean listener's requests.
METRICS = "oore_metrics"

ActorStatsSource = Callable[[], Mapping[str, ActorStatistics]]


def app_metrics(app: Quart) -> Metrics:
    """The metrics of an app made by oore.http.app.create_app."""
    found: Metrics = app.extensions[METRICS]
    return found


def method_label(method: str) -> str:
    """The method as a label: one of :data:`METHODS`, else ``OTHER``."""
    return method if method in METHODS else OTHER_METHOD


def route_template(rule: str | None) -> str:
    """``/v1/builds/<build_id>`` → ``/v1/builds/{build_id}``."""
    return UNMATCHED if rule is None else _PARAM.sub(r"{\1}", rule)


class _ActorCollector(Collector):
    def __init__(self, source: ActorStatsSource) -> None:
        self._source = source

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        depth = GaugeMetricFamily(
            "oore_actor_mailbox_depth", "Messages waiting in an actor's mailbox", labels=["actor"]
        )
        capacity = GaugeMetricFamily(
            "oore_actor_mailbox_capacity", "Size of an actor's mailbox", labels=["actor"]
        )
        restarts = CounterMetricFamily(
            "oore_actor_restarts", "Times the supervisor restarted an actor", labels=["actor"]
        )
        processed = CounterMetricFamily(
            "oore_actor_processed", "Messages an actor has handled", labels=["actor"]
        )
        for name, stats in sorted(self._source().items()):
            depth.add_metric([name], stats.mailbox_depth)
            capacity.add_metric([name], stats.mailbox_capacity)
            restarts.add_metric([name], stats.restarts)
            processed.add_metric([name], stats.processed)
        yield from (depth, capacity, restarts, processed)


def queue_depths(
    by_labels: Mapping[tuple[str, ...], int], cap: int = QUEUE_LABEL_SETS
) -> dict[str, int]:
    """Queued builds by label value: the ``cap`` deepest label sets as ``a,b`` (``""``: no
    labels required), every other set summed into ``other``."""
    ranked = sorted(by_labels.items(), key=lambda item: (-item[1], item[0]))
    shown: dict[str, int] = {}
    for labels, count in ranked[:cap]:
        key = ",".join(labels)
        shown[key] = shown.get(key, 0) + count
    rest = sum(count for _, count in ranked[cap:])
    if rest:
        shown[OTHER_LABELS] = shown.get(OTHER_LABELS, 0) + rest
    return shown


class _ClusterCollector(Collector):
    """This daemon's part among the daemons sharing its database."""

    def __init__(self, source: Callable[[], ClusterState]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        state = self._source()
        yield GaugeMetricFamily(
            "oore_cluster_leader",
            "1 while this daemon runs the maintenance duties of the daemons on its database",
            value=1 if state.leading else 0,
        )
        yield CounterMetricFamily(
            "oore_cluster_leader_terms",
            "Times this daemon became the leader",
            value=state.terms,
        )
        yield GaugeMetricFamily(
            "oore_cluster_listening",
            "1 while this daemon listens for the other daemons' notices",
            value=1 if state.listening else 0,
        )
        yield CounterMetricFamily(
            "oore_cluster_notices_sent",
            "Notification payloads sent to the other daemons (each carries many changes)",
            value=state.notices_sent,
        )
        yield CounterMetricFamily(
            "oore_cluster_notices_received",
            "Notification payloads received from the other daemons",
            value=state.notices_received,
        )
        yield CounterMetricFamily(
            "oore_cluster_notice_send_failures",
            "Sends of notices that failed (the other daemons catch up by polling)",
            value=state.notices_unsent,
        )
        yield CounterMetricFamily(
            "oore_cluster_resyncs",
            "Times this daemon caught up from the database after (re)connecting its listener",
            value=state.resyncs,
        )


class _LimitsCollector(Collector):
    """The rate limits of this process: what each allows and what it refused (labelled by
    limit only, never by client)."""

    def __init__(self, source: Callable[[], Sequence[LimitStatistics]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        limits = GaugeMetricFamily(
            "oore_rate_limit_limit",
            "Attempts a rate limit allows in its window, per client or (scope=global) overall",
            labels=["limit", "scope"],
        )
        windows = GaugeMetricFamily(
            "oore_rate_limit_window_seconds",
            "The window a rate limit counts over (0: per minted token, no time window)",
            labels=["limit"],
        )
        refused = CounterMetricFamily(
            "oore_rate_limited",
            "Requests a rate limit refused with 429",
            labels=["limit"],
        )
        for stats in self._source():
            limits.add_metric([stats.name, "client"], stats.per_client)
            if stats.overall is not None:
                limits.add_metric([stats.name, "global"], stats.overall)
            windows.add_metric([stats.name], stats.window or 0)
            refused.add_metric([stats.name], stats.refused)
        yield from (limits, windows, refused)


class _AnswersCollector(Collector):
    """The hot reads' kept answers (oore/http/lean/cache.py): found, not found, dropped."""

    def __init__(self, answers: AnswerCache) -> None:
        self._answers = answers

    def collect(self) -> Iterator[Metric]:
        kept = self._answers
        yield CounterMetricFamily(
            "oore_answers_kept_hits", "Hot reads answered from memory", value=kept.hits
        )
        yield CounterMetricFamily(
            "oore_answers_kept_misses",
            "Hot reads that found no kept answer (and read the database)",
            value=kept.misses,
        )
        yield CounterMetricFamily(
            "oore_answers_kept_dropped",
            "Kept answers dropped because a write changed what they show",
            value=kept.dropped,
        )
        yield GaugeMetricFamily("oore_answers_kept", "Answers kept now", value=len(kept))
        yield GaugeMetricFamily(
            "oore_answers_kept_bytes", "Memory the kept answers take, roughly", value=kept.size
        )


class _LanesCollector(Collector):
    """Connections this worker of ``oored --workers N`` handed to, took from, or could not
    hand to another worker (oore/http/lean/lanes.py)."""

    def __init__(self, lanes: Lanes) -> None:
        self._lanes = lanes

    def collect(self) -> Iterator[Metric]:
        counted = CounterMetricFamily(
            "oore_lane_connections",
            "New connections handed to the worker of their lane (handed), taken from another"
            " worker (taken), or served here because their worker could not take them (kept)",
            labels=["way"],
        )
        counted.add_metric(["handed"], self._lanes.handed)
        counted.add_metric(["taken"], self._lanes.taken)
        counted.add_metric(["kept"], self._lanes.kept)
        yield counted


class _LiveCollector(Collector):
    """Gauges of what is true now: the database's counts, its pool, the live streams."""

    def __init__(self, database: DatabaseStatus, logs: Logs, events: Events) -> None:
        self._database = database
        self._logs = logs
        self._events = events
        self._reading = trio.Lock()
        self._read_at = -math.inf
        self._builds: LiveBuilds | None = None
        self._runners: dict[str, int] | None = None

    async def refresh(self) -> None:
        """Read the counts, unless a read that began after this call was made has ended."""
        asked = trio.current_time()
        async with self._reading:
            if self._read_at >= asked:
                return
            self._read_at = trio.current_time()
            self._builds = self._runners = None
            with trio.move_on_after(DATABASE_BUDGET):
                try:
                    builds = await self._database.live_builds()
                    runners = await self._database.runners_by_state()
                except ApiError:
                    return  # the store logged the cause; these families are left out
                self._builds, self._runners = builds, runners

    def collect(self) -> Iterator[Metric]:
        db = self._database
        yield GaugeMetricFamily(
            "oore_database_up",
            "1 while the database answers, 0 during an outage",
            value=1 if db.available else 0,
        )
        usage = db.pool_usage()
        yield GaugeMetricFamily(
            "oore_database_pool_connections_in_use",
            "Pooled database connections running a query now",
            value=usage.in_use,
        )
        yield GaugeMetricFamily(
            "oore_database_pool_connections_open",
            "Database connections the pool holds open",
            value=usage.open,
        )
        yield GaugeMetricFamily(
            "oore_database_pool_connections_max",
            "Database connections the pool may open",
            value=usage.max,
        )
        yield GaugeMetricFamily(
            "oore_log_viewers",
            "Live log streams (SSE viewers) open now",
            value=self._logs.open_streams,
        )
        yield CounterMetricFamily(
            "oore_log_viewer_catch_ups",
            "Times a live log viewer fell behind and caught up from the database",
            value=self._logs.catch_ups,
        )
        commits = self._logs.commits
        committed = commits.statistics()
        yield CounterMetricFamily(
            "oore_log_commits",
            "Transactions that stored runners' log lines (each for the appends of many builds)",
            value=committed.batches,
        )
        yield CounterMetricFamily(
            "oore_log_commit_appends",
            "Log appends (of one build each) those transactions stored",
            value=committed.rows,
        )
        yield CounterMetricFamily(
            "oore_log_commit_seconds",
            "Time spent in those transactions",
            value=commits.busy_seconds,
        )
        fanout = self._logs.streams.fanout.counts
        yield CounterMetricFamily(
            "oore_log_fanout_rounds",
            "Rounds of the log fan-out: one build's lines committed since its previous round",
            value=fanout.rounds,
        )
        yield CounterMetricFamily(
            "oore_log_fanout_direct_writes",
            "Writes of live log lines straight to a viewer's socket by the fan-out",
            value=fanout.direct,
        )
        yield CounterMetricFamily(
            "oore_log_fanout_partial_writes",
            "Direct writes the socket took only part of (the viewer's task wrote the rest)",
            value=fanout.partial,
        )
        yield CounterMetricFamily(
            "oore_log_fanout_lagged",
            "Times a live log viewer's queue overflowed, so it caught up from the database",
            value=fanout.lagged,
        )
        peers = self._logs.streams.peers
        if isinstance(peers, LogPeers):
            heard = peers.counts
            yield CounterMetricFamily(
                "oore_log_peer_notices",
                "Log commits of other daemons this daemon heard of (one per build and notice)",
                value=heard.heard,
            )
            yield CounterMetricFamily(
                "oore_log_peer_reads",
                "Reads of log lines committed elsewhere for the viewers here (many builds each)",
                value=heard.rounds,
            )
            yield CounterMetricFamily(
                "oore_log_peer_lines",
                "Log lines those reads returned",
                value=heard.lines_read,
            )
        yield GaugeMetricFamily(
            "oore_event_streams",
            "Live event streams (GET /v1/events/stream) open now",
            value=self._events.open_streams,
        )
        yield CounterMetricFamily(
            "oore_event_stream_resyncs",
            "Times a live event stream skipped changes and told its client to reload",
            value=self._events.resyncs,
        )
        if self._builds is not None:
            yield from _build_families(self._builds)
        if self._runners is not None:
            runners = GaugeMetricFamily(
                "oore_runners",
                "Registered runners by state (draining: told to drain and not offline)",
                labels=["state"],
            )
            for state in RunnerStatus:
                runners.add_metric([state.value], self._runners.get(state.value, 0))
            yield runners


def _build_families(live: LiveBuilds) -> Iterator[Metric]:
    builds = GaugeMetricFamily("oore_builds", "Unfinished builds by status", labels=["status"])
    for status in LIVE_STATUSES:
        builds.add_metric([status.value], live.by_status.get(status, 0))
    yield builds
    depth = GaugeMetricFamily(
        "oore_build_queue_depth",
        "Queued builds by the runner labels they need (the deepest sets; the rest: other)",
        labels=["runner_labels"],
    )
    for labels, count in sorted(queue_depths(live.queued_by_labels).items()):
        depth.add_metric([labels], count)
    yield depth


class Metrics:
    """One registry per app (no process-global state)."""

    def __init__(self, app_services: AppServices) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by method, route template and status",
            ["method", "path", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration by method, route template and status",
            ["method", "path", "status"],
            registry=self.registry,
        )
        self.registry.register(_ActorCollector(app_services.actor_stats))
        self.registry.register(app_services.metrics)
        self.registry.register(_ClusterCollector(app_services.cluster))
        self.registry.register(_LimitsCollector(app_services.rate_limits))
        self.registry.register(_AnswersCollector(app_services.answers))
        self._live = _LiveCollector(app_services.database, app_services.logs, app_services.events)
        self.registry.register(self._live)

    def count_lanes(self, lanes: Lanes) -> None:
        """Show this worker's lanes (``oored --workers N``) too."""
        self.registry.register(_LanesCollector(lanes))

    async def exposition(self) -> bytes:
        """The text format, the database's counts read afresh (left out if it cannot say)."""
        await self._live.refresh()
        return generate_latest(self.registry)

    def install(self, app: Quart) -> None:
        @app.before_request
        async def start_timer() -> None:
            g.request_started = trio.current_time()

        @app.after_request
        async def record(response: Response) -> Response:
            rule = request.url_rule.rule if request.url_rule is not None else None
            labels = (
                method_label(request.method),
                route_template(rule),
                str(response.status_code),
            )
            started = getattr(g, "request_started", None)
            self.requests.labels(*labels).inc()
            if started is not None:
                self.duration.labels(*labels).observe(trio.current_time() - started)
            return response
