"""Prometheus metrics: request counters and durations by route template, actor statistics.

Every label takes one of a fixed set of values, whatever clients send: a method outside
the standard ones is ``OTHER``, a path no route matches is ``__unmatched__`` and a status is
the server's own, so the series (and ``/metrics``) cannot grow without bound."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping

import trio
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from quart import Quart, Response, g, request

from oore.actors import ActorStatistics

_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
UNMATCHED = "__unmatched__"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"

ActorStatsSource = Callable[[], Mapping[str, ActorStatistics]]


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


class Metrics:
    """One registry per app (no process-global state)."""

    def __init__(self, actor_stats: ActorStatsSource) -> None:
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
        self.registry.register(_ActorCollector(actor_stats))

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
