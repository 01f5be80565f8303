"""The composition root for live state: the supervision tree and the services built on it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial

import trio

from oore.actors import ActorStatistics, GroupCommitter, Supervisor
from oore.actors.due import DueTimes
from oore.cluster import Leadership, Notices, cluster_state
from oore.domain.builds import Build
from oore.domain.rate_limit import GUESS_LIMIT, GuessLimiter
from oore.errors import ApiError
from oore.http.context import AppServices
from oore.http.lean.cache import AnswerCache
from oore.live.events import EventsHandle, event_hub_spec
from oore.live.logpeers import LogPeers
from oore.scheduling import Scheduling, SchedulingConfig, start_scheduling
from oore.scheduling.peers import Peers, Told
from oore.scheduling.ports import Events as SchedulingEvents
from oore.services.access import Access
from oore.services.api_tokens import ApiTokens
from oore.services.apple import AppleClient, AppleConfig
from oore.services.artifact_storage import ArtifactsConfig, ArtifactStorageService
from oore.services.artifact_tokens import ArtifactTokens
from oore.services.artifacts import Artifacts
from oore.services.audit_log import AuditLog
from oore.services.builds import Builds
from oore.services.changes import SharedChanges
from oore.services.clock import WallClock
from oore.services.database import DatabaseStatus
from oore.services.events import Events, EventsConfig, HubRecords
from oore.services.grants import GrantChanges
from oore.services.identity import Identity
from oore.services.integrations import Integrations
from oore.services.ios_signing import IosSigning
from oore.services.logs import LogConfig, Logs
from oore.services.metrics import ServiceMetrics
from oore.services.network import Network, NetworkDefaults
from oore.services.notifications import Notifications, wake_on_outcome
from oore.services.previews import Previews
from oore.services.projects import Projects
from oore.services.retention import Retention
from oore.services.runners import Runners
from oore.services.scm import ScmClient, ScmConfig
from oore.services.settings import InstanceSettings, WarpgateTickets
from oore.services.settings_sync import (
    ARTIFACT_STORAGE,
    NETWORK,
    SettingsSync,
    pause_telling,
    telling,
)
from oore.services.setup import Setup
from oore.services.signin import SignIn
from oore.services.signing import Signing
from oore.services.sources import Sources
from oore.services.users import Users
from oore.services.variables import Variables
from oore.services.webhooks import Webhooks
from oore.store import AuditEntry, Store

log = logging.getLogger(__name__)

AUDIT_MAX_BATCH = 500
AUDIT_MAILBOX = 1024


@dataclass(frozen=True)
class ClusterConfig:
    """How daemons sharing a database share the maintenance duties (seconds)."""

    leader_lease: float = 10.0  # a dead leader is replaced within this
    sweep_every: float = 5.0  # the leader's maintenance round, at most this far apart
    settings_poll_every: float = 1.0  # settings changed by a daemon whose notice was lost


@dataclass(frozen=True)
class Runtime:
    """What the daemon hands to its transports once the actors are running."""

    identity: Identity
    access: Access
    projects: Projects
    builds: Builds
    previews: Previews
    runners: Runners
    artifacts: Artifacts
    artifact_tokens: ArtifactTokens
    logs: Logs
    scheduling: Scheduling
    supervisor: Supervisor
    audit: GroupCommitter[AuditEntry]
    network: Network
    setup: Setup
    instance_settings: InstanceSettings
    users: Users
    api_tokens: ApiTokens
    audit_log: AuditLog
    signin: SignIn
    integrations: Integrations
    webhooks: Webhooks
    notifications: Notifications
    variables: Variables
    ios_signing: IosSigning
    signing: Signing
    metrics: ServiceMetrics
    events: Events
    notices: Notices
    changes: SharedChanges
    leadership: Leadership
    retention: Retention
    guesses: GuessLimiter

    def app_services(self, store: Store) -> AppServices:
        """What the HTTP layer needs from this runtime."""
        answers = AnswerCache()
        self.changes.listen(answers.forget)
        return AppServices(
            database=DatabaseStatus(store),
            identity=self.identity,
            access=self.access,
            projects=self.projects,
            builds=self.builds,
            previews=self.previews,
            runners=self.runners,
            artifacts=self.artifacts,
            artifact_storage=self.artifacts.storage,
            artifact_tokens=self.artifact_tokens,
            logs=self.logs,
            network=self.network,
            actor_stats=self.actor_statistics,
            setup=self.setup,
            instance_settings=self.instance_settings,
            users=self.users,
            api_tokens=self.api_tokens,
            audit_log=self.audit_log,
            signin=self.signin,
            integrations=self.integrations,
            webhooks=self.webhooks,
            notifications=self.notifications,
            variables=self.variables,
            ios_signing=self.ios_signing,
            signing=self.signing,
            metrics=self.metrics,
            events=self.events,
            cookie_secure=self.integrations.cookie_secure,
            cluster=partial(cluster_state, self.notices, self.leadership),
            retention=self.retention,
            guesses=self.guesses,
            answers=answers,
        )

    def actor_statistics(self) -> Mapping[str, ActorStatistics]:
        """Per-actor statistics for ``/metrics``, keyed by actor path.

        Children of a ``builds`` or ``runners`` supervisor are summed into one entry per
        kind (``.../builds/*``), so a large fleet never means thousands of series.
        """
        found: dict[str, ActorStatistics] = {}
        for path, stats in self.supervisor.statistics().actors():
            parent, _, _ = path.rpartition("/")
            if parent.endswith(("/builds", "/runners")):
                key = f"{parent}/*"
                total = found.get(key)
                found[key] = stats if total is None else _summed(total, stats, key)
            else:
                found[path] = stats
        return found


def _summed(a: ActorStatistics, b: ActorStatistics, name: str) -> ActorStatistics:
    return replace(
        a,
        name=name,
        mailbox_depth=a.mailbox_depth + b.mailbox_depth,
        mailbox_capacity=a.mailbox_capacity + b.mailbox_capacity,
        blocked_senders=a.blocked_senders + b.blocked_senders,
        processed=a.processed + b.processed,
        restarts=a.restarts + b.restarts,
        lag=max(a.lag, b.lag),
    )


@asynccontextmanager
async def open_runtime(
    store: Store,
    clock: WallClock,
    config: SchedulingConfig | None = None,
    log_config: LogConfig | None = None,
    artifacts_config: ArtifactsConfig | None = None,
    network_defaults: NetworkDefaults | None = None,
    *,
    scm_config: ScmConfig | None = None,
    apple_config: AppleConfig | None = None,
    cookie_secure: bool = False,
    events_config: EventsConfig | None = None,
    cluster_config: ClusterConfig | None = None,
    guess_limit: int = GUESS_LIMIT,
) -> AsyncIterator[Runtime]:
    """Start the supervision tree; on exit stop it in reverse order within its grace."""
    cluster_config = cluster_config or ClusterConfig()
    audit: GroupCommitter[AuditEntry] = GroupCommitter(
        "audit", store.audit.append, max_batch=AUDIT_MAX_BATCH, capacity=AUDIT_MAILBOX
    )
    root = Supervisor("root", [audit.spec()], max_restarts=5, period=10.0)
    metrics = ServiceMetrics()
    resuming = trio.CancelScope()
    listening, leading = trio.CancelScope(), trio.CancelScope()
    notices = Notices(store)
    grants = GrantChanges(notices)
    changes = SharedChanges(store.db.changes, notices)
    grants.subscribe()
    async with trio.open_nursery() as nursery:
        await nursery.start(root.run)
        try:
            hub = EventsHandle()  # told of changes from the start, served once started below
            artifacts_config = artifacts_config or ArtifactsConfig()
            config = config or SchedulingConfig()
            outbox = DueTimes[str]("notifications")
            scheduling = await start_scheduling(
                store,
                clock,
                config,
                root,
                metrics,
                events=_AlsoOutcomes(Told(hub, notices), partial(wake_on_outcome, outbox)),
                secrets=artifacts_config.secrets,
            )
            await root.start_child(event_hub_spec(hub, HubRecords(scheduling)))
            nursery.start_soon(_within, resuming, scheduling.resume_after_outages)
            access = Access(store)
            network = Network(
                store,
                network_defaults
                or NetworkDefaults(
                    public_url=artifacts_config.public_url,
                    artifact_delivery_url=artifacts_config.artifact_delivery_url,
                ),
                saved=telling(notices, NETWORK),
            )
            await network.reload()
            identity = Identity(
                store,
                clock,
                audit,
                artifacts_config.secrets,
                access_changed=grants.changed,
                grant_epoch=grants.epoch,
                guess_limit=guess_limit,
            )
            integrations = Integrations(
                store,
                clock,
                audit,
                artifacts_config.secrets,
                network,
                ScmClient(scm_config or ScmConfig()),
                cookie_secure=cookie_secure,
            )
            sources = Sources(store, integrations)
            builds = Builds(scheduling, access, sources)
            variables = Variables(store, clock, audit, access, artifacts_config.secrets)
            signing = Signing(store, clock, audit, access, artifacts_config.secrets)
            logs = Logs(
                scheduling,
                builds,
                access,
                identity,
                log_config or LogConfig(),
                variables,
                signing,
                grants.epoch,
            )
            log_peers = LogPeers(logs.streams, store.builds, notices, page=logs.config.page)
            log_peers.subscribe()
            await root.start_child(logs.streams.spec())
            await root.start_child(log_peers.spec())
            storage = ArtifactStorageService(
                store,
                clock,
                audit,
                artifacts_config,
                network,
                saved=telling(notices, ARTIFACT_STORAGE),
            )
            await storage.reload()
            reservations = DueTimes[str]("artifact-reservations")
            artifacts = Artifacts(
                store, clock, access, audit, storage, artifacts_config, reservations
            )
            await root.start_child(
                reservations.spec(on_due=artifacts.sweep_due, load=artifacts.pending_sweep)
            )
            queue = DueTimes[str]("webhooks")
            webhooks = Webhooks(store, clock, identity, builds, metrics, queue)
            await root.start_child(
                queue.spec(on_due=webhooks.drain_due, load=webhooks.pending_drain)
            )
            notifications = Notifications(
                store, clock, audit, artifacts_config.secrets, network, metrics, outbox
            )
            await root.start_child(
                outbox.spec(on_due=notifications.drain_due, load=notifications.pending_drain)
            )
            runners = Runners(scheduling, identity, audit)
            Peers(
                scheduling,
                hub,
                hub_listening=lambda: bool(hub.subscribers),
                forget_runner=runners.forget,
            ).subscribe(notices)
            settings_sync = SettingsSync(
                store, network, storage, scheduling, poll_every=cluster_config.settings_poll_every
            )
            await settings_sync.load_pause()
            settings_sync.subscribe(notices)
            retention = Retention(
                store,
                clock,
                audit,
                access,
                artifacts,
                scheduling.records,
                metrics,
                artifact_ttl_days=artifacts_config.ttl_days,
            )
            await nursery.start(_scoped, listening, notices.run)
            every = min(cluster_config.sweep_every, config.runner_lease / 2)
            maintain = partial(
                _maintain,
                every,
                (scheduling.sweep, artifacts.sweep, webhooks.drain, notifications.drain),
            )
            leadership = Leadership(
                store,
                notices.sender,
                partial(_lead, maintain, retention.lead),
                lease=cluster_config.leader_lease,
            )
            nursery.start_soon(_within, leading, leadership.run)
            yield Runtime(
                identity=identity,
                access=access,
                projects=Projects(
                    store, clock, audit, access, artifacts, metrics, access_changed=grants.changed
                ),
                builds=builds,
                previews=Previews(store, access, sources),
                runners=runners,
                artifacts=artifacts,
                artifact_tokens=ArtifactTokens(
                    store,
                    clock,
                    access,
                    audit,
                    storage,
                    WarpgateTickets(store, artifacts_config.secrets, network),
                ),
                logs=logs,
                scheduling=scheduling,
                supervisor=root,
                audit=audit,
                network=network,
                setup=Setup(store, clock, audit, identity),
                instance_settings=InstanceSettings(
                    store,
                    clock,
                    audit,
                    identity,
                    network,
                    pause_saved=pause_telling(notices, scheduling),
                ),
                users=Users(store, clock, audit, access_changed=grants.changed),
                api_tokens=ApiTokens(store, clock, audit, access_changed=grants.changed),
                audit_log=AuditLog(store),
                signin=SignIn(store, clock, identity, network),
                integrations=integrations,
                webhooks=webhooks,
                notifications=notifications,
                variables=variables,
                ios_signing=IosSigning(
                    store,
                    clock,
                    audit,
                    access,
                    artifacts_config.secrets,
                    AppleClient(apple_config or AppleConfig()),
                ),
                signing=signing,
                metrics=metrics,
                events=Events(
                    hub,
                    scheduling,
                    identity,
                    access,
                    events_config or EventsConfig(),
                    grants.epoch,
                ),
                notices=notices,
                changes=changes,
                leadership=leadership,
                retention=retention,
                guesses=identity.guesses,
            )
        finally:
            resuming.cancel()
            leading.cancel()
            listening.cancel()
            root.stop()


class _AlsoOutcomes:
    """The scheduling's events, with every committed build change also shown to
    ``on_build`` (the notification sender's wake-up); never waits."""

    def __init__(self, events: SchedulingEvents, on_build: Callable[[Build], None]) -> None:
        self._events = events
        self._on_build = on_build

    def build_changed(self, build: Build) -> None:
        self._events.build_changed(build)
        self._on_build(build)

    def runner_changed(self, runner_id: str, *, deleted: bool = False) -> None:
        self._events.runner_changed(runner_id, deleted=deleted)


async def _within(scope: trio.CancelScope, run: Callable[[], Awaitable[None]]) -> None:
    with scope:
        await run()


async def _scoped(
    scope: trio.CancelScope,
    run: Callable[..., Awaitable[None]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with scope:
        await run(task_status=task_status)


async def _lead(*duties: Callable[[], Awaitable[None]]) -> None:
    """What the leader runs, side by side, until it stops leading."""
    async with trio.open_nursery() as nursery:
        for duty in duties:
            nursery.start_soon(duty)


async def _maintain(every: float, duties: tuple[Callable[[], Awaitable[object]], ...]) -> None:
    """The leader's maintenance round: what no other daemon may be left to do (runners
    and builds whose daemon died, expired artifact reservations, webhook deliveries due
    for a retry, notifications a dead daemon queued), every ``every`` seconds. Each duty
    is judged by the database, so a round that overlaps a former leader's, or a daemon's
    own prompt handling, is harmless."""
    while True:
        for duty in duties:
            try:
                await duty()
            except ApiError as exc:
                log.warning("maintenance: %s failed: %s", getattr(duty, "__name__", duty), exc)
        await trio.sleep(every)
