"""What the services count as it happens: claims, finished builds, stored log lines, webhooks.

One :class:`ServiceMetrics` per runtime, handed to the services that observe events and
registered by the HTTP layer in its ``/metrics`` registry (it is a collector). Every label
takes one of a fixed set of values, each shown from the start at zero, so a series never
appears out of nowhere and the set cannot grow. Times come from the wall clock the builds
are stamped with, so they are whole seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Literal, get_args

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from oore.domain.builds import TERMINAL, Build, BuildStatus
from oore.domain.logs import LogLine
from oore.domain.retention import CleanupReport
from oore.domain.webhooks import Provider

# The ends a build reaches from the queue or a runner (``expired`` comes later, to a build
# that had already ended, and is not counted as a finish).
FINISHED = tuple(sorted(status.value for status in TERMINAL - {BuildStatus.EXPIRED}))

# At receipt: stored; seen before; refused (4xx: signature, token, payload, mode); not
# stored because of a fault of ours (5xx, the sender retries).
WebhookReceived = Literal["accepted", "duplicate", "rejected", "error"]
# Per processing attempt: builds queued; nothing to build; failed and retried later;
# failed for the last time.
WebhookHandled = Literal["processed", "ignored", "retried", "failed"]
# Per notification attempt: delivered (2xx, mail accepted); failed and retried later;
# failed for the last time.
NotificationOutcome = Literal["sent", "retried", "failed"]
NOTIFICATION_KINDS = ("email", "mattermost", "webhook")

# A retention run: everything due was done; something was left for the next run (its
# errors say what); the run itself failed (the database did not answer).
RetentionOutcome = Literal["ok", "partial", "failed"]

QUEUE_WAIT_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200)


class ServiceMetrics(Collector):
    """Counters and histograms of service events; a collector for ``/metrics``."""

    def __init__(self) -> None:
        self.builds_finished = Counter(
            "oore_builds_finished_total",
            "Builds that reached a final status, by that status",
            ["status"],
            registry=None,
        )
        self.build_duration = Histogram(
            "oore_build_duration_seconds",
            "Seconds from a build's start (running) to its end, by final status",
            ["status"],
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        self.queue_wait = Histogram(
            "oore_build_queue_wait_seconds",
            "Seconds a build waited in the queue until a runner claimed it",
            buckets=QUEUE_WAIT_BUCKETS,
            registry=None,
        )
        self.log_lines = Counter(
            "oore_log_stored_lines_total", "Build log lines stored", registry=None
        )
        self.log_bytes = Counter(
            "oore_log_stored_bytes_total",
            "Bytes (UTF-8) of the build log lines stored",
            registry=None,
        )
        self.webhooks_received = Counter(
            "oore_webhook_deliveries_received_total",
            "Webhook deliveries at receipt, by provider and outcome",
            ["provider", "outcome"],
            registry=None,
        )
        self.webhooks_handled = Counter(
            "oore_webhook_deliveries_handled_total",
            "Processing attempts of stored webhook deliveries, by provider and outcome",
            ["provider", "outcome"],
            registry=None,
        )
        self.retention_artifacts = Counter(
            "oore_retention_artifacts_deleted_total",
            "Artifact objects deleted by retention runs of this daemon",
            registry=None,
        )
        self.retention_bytes = Counter(
            "oore_retention_bytes_freed_total",
            "Bytes of those artifacts (as their runners reported them)",
            registry=None,
        )
        self.retention_expired = Counter(
            "oore_retention_builds_expired_total",
            "Builds moved to expired by retention runs of this daemon",
            registry=None,
        )
        self.retention_deleted = Counter(
            "oore_retention_builds_deleted_total",
            "Builds deleted by retention runs of this daemon (target full)",
            registry=None,
        )
        self.retention_log_lines = Counter(
            "oore_retention_log_lines_deleted_total",
            "Build log lines deleted by retention runs of this daemon",
            registry=None,
        )
        self.retention_runs = Counter(
            "oore_retention_runs_total",
            "Retention runs of this daemon, by outcome",
            ["outcome"],
            registry=None,
        )
        self.retention_last_run = Gauge(
            "oore_retention_last_run_finished_timestamp_seconds",
            "When the last retention run (of any daemon) finished, as far as this daemon knows",
            registry=None,
        )
        for outcome in get_args(RetentionOutcome):
            self.retention_runs.labels(outcome)
        self.notifications_sent = Counter(
            "oore_notifications_sent_total",
            "Notification delivery attempts, by channel kind and outcome",
            ["kind", "outcome"],
            registry=None,
        )
        self.notification_queue = Gauge(
            "oore_notification_queue_depth",
            "Notification deliveries waiting to be sent (as of this daemon's last drain)",
            registry=None,
        )
        for kind in NOTIFICATION_KINDS:
            for notified in get_args(NotificationOutcome):
                self.notifications_sent.labels(kind, notified)
        for status in FINISHED:
            self.builds_finished.labels(status)
            self.build_duration.labels(status)
        for provider in Provider:
            for outcome in get_args(WebhookReceived):
                self.webhooks_received.labels(provider.value, outcome)
            for outcome in get_args(WebhookHandled):
                self.webhooks_handled.labels(provider.value, outcome)

    def _metrics(self) -> tuple[Counter | Gauge | Histogram, ...]:
        return (
            self.builds_finished,
            self.build_duration,
            self.queue_wait,
            self.log_lines,
            self.log_bytes,
            self.webhooks_received,
            self.webhooks_handled,
            self.retention_artifacts,
            self.retention_bytes,
            self.retention_expired,
            self.retention_deleted,
            self.retention_log_lines,
            self.retention_runs,
            self.retention_last_run,
            self.notifications_sent,
            self.notification_queue,
        )

    def collect(self) -> Iterator[Metric]:
        for metric in self._metrics():
            yield from metric.collect()

    def describe(self) -> Iterable[Metric]:
        for metric in self._metrics():
            yield from metric.describe()

    # -- observations --------------------------------------------------------------------

    def build_claimed(self, build: Build) -> None:
        """A claim committed: ``build`` as it is now, assigned at ``updated_at``."""
        self.queue_wait.observe(max(0, build.updated_at - build.queued_at))

    def build_finished(self, build: Build) -> None:
        """A transition to a final status committed."""
        status = build.status.value
        if status not in FINISHED:
            return
        self.builds_finished.labels(status).inc()
        if build.started_at is not None and build.finished_at is not None:
            self.build_duration.labels(status).observe(max(0, build.finished_at - build.started_at))

    def builds_canceled(self, count: int) -> None:
        """``count`` waiting builds were canceled at once (their project changed source)."""
        if count > 0:
            self.builds_finished.labels(BuildStatus.CANCELED.value).inc(count)

    def logs_stored(self, lines: Sequence[LogLine]) -> None:
        """Lines committed to a build's log."""
        if lines:
            self.log_lines.inc(len(lines))
            self.log_bytes.inc(sum(len(line.content.encode("utf-8", "replace")) for line in lines))

    def webhook_received(self, provider: Provider, outcome: WebhookReceived) -> None:
        """A delivery was answered."""
        self.webhooks_received.labels(provider.value, outcome).inc()

    def webhook_handled(self, provider: Provider, outcome: WebhookHandled) -> None:
        """A processing attempt of a stored delivery ended."""
        self.webhooks_handled.labels(provider.value, outcome).inc()

    def retention_ran(self, report: CleanupReport) -> None:
        """A retention run of this daemon ended and was recorded."""
        self.retention_artifacts.inc(report.artifacts_deleted)
        self.retention_bytes.inc(report.bytes_freed)
        self.retention_expired.inc(report.builds_expired)
        self.retention_deleted.inc(report.builds_deleted)
        self.retention_log_lines.inc(report.log_lines_deleted)
        self.retention_runs.labels(report.outcome).inc()
        self.retention_last_run.set(report.finished_at)

    def retention_failed(self) -> None:
        """A retention run of this daemon could not be done or recorded."""
        self.retention_runs.labels("failed").inc()

    def retention_seen(self, report: CleanupReport) -> None:
        """The last recorded run (perhaps another daemon's) was read."""
        self.retention_last_run.set(report.finished_at)

    def notification_sent(self, kind: str, outcome: NotificationOutcome) -> None:
        """A delivery attempt to a channel of ``kind`` ended."""
        self.notifications_sent.labels(kind, outcome).inc()

    def notifications_waiting(self, count: int) -> None:
        """Deliveries not yet sent nor given up, counted by a drain."""
        self.notification_queue.set(count)
