"""Runners: registration, enrollment tokens, heartbeats and claims (contract §2.8, §5)."""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import trio

from oore.domain.rbac import Action, Resource, require
from oore.domain.runners import (
    MAX_WAIT_SECONDS,
    PROTOCOL_VERSION,
    Runner,
    RunnerStatus,
    check_labels,
    check_runner_name,
    enrollment_label,
)
from oore.domain.text import name_problem
from oore.domain.tokens import (
    hash_token,
    looks_like_token,
    missing_auth,
    new_token,
    parse_bearer,
    presents_bearer,
)
from oore.domain.users import Session
from oore.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from oore.eventlog import event
from oore.scheduling import Job, Scheduling
from oore.services.identity import AuditSink, Identity
from oore.store import AuditEntry
from oore.store.runners import EnrollmentToken, NewRunner, RunnerChanges

log = logging.getLogger(__name__)

MAX_ENROLLMENT_TTL = 365 * 24 * 3600
KNOWN_RUNNERS = 65_536  # runner tokens remembered in memory (a fleet, with room to spare)
FORGOTTEN = 16_384  # runners whose last forgetting is remembered (a lookup takes ms)


class KnownRunners:
    """Runners by token hash, so the runner protocol's hot calls skip a query each.

    Every write that a runner's calls depend on (rename, relabel, resize, drain, delete,
    a heartbeat's status) passes through :class:`Runners`, which forgets or updates the
    entry; one made by another daemon sharing the database arrives as a notice, and the
    entry is forgotten (:meth:`Runners.forget`). A lookup that raced with a write of that
    runner is not remembered: the runner was forgotten at a later epoch than the lookup
    began. Other runners' writes do not stop it (other daemons tell of one runner change
    or more per claim they commit).
    """

    def __init__(self, capacity: int = KNOWN_RUNNERS) -> None:
        self._capacity = capacity
        self._by_hash: dict[str, Runner] = {}
        self._hash_of: dict[str, str] = {}
        self.epoch = 0
        # runner id -> the epoch it was last forgotten at (the most recent FORGOTTEN)
        self._forgotten: OrderedDict[str, int] = OrderedDict()
        self._floor = 0  # lookups begun before this may have lost their runner's entry

    def get(self, token_hash: str) -> Runner | None:
        return self._by_hash.get(token_hash)

    def remember(self, token_hash: str, runner: Runner, epoch: int) -> None:
        """Keep what a lookup begun at ``epoch`` found, unless its runner was forgotten
        since."""
        if epoch < self._floor or self._forgotten.get(runner.id, -1) > epoch:
            return
        if len(self._by_hash) >= self._capacity:
            oldest = next(iter(self._by_hash))
            self._hash_of.pop(self._by_hash.pop(oldest).id, None)
        self._by_hash[token_hash] = runner
        self._hash_of[runner.id] = token_hash

    def forget(self, runner_id: str) -> None:
        self.epoch += 1
        self._forgotten.pop(runner_id, None)
        self._forgotten[runner_id] = self.epoch
        if len(self._forgotten) > FORGOTTEN:
            _, self._floor = self._forgotten.popitem(last=False)
        token_hash = self._hash_of.pop(runner_id, None)
        if token_hash is not None:
            self._by_hash.pop(token_hash, None)

    def set_status(self, runner_id: str, status: RunnerStatus, capabilities: Any = None) -> None:
        """A heartbeat's status, and its capabilities when it reported some (they say
        whether the runner is a direct macOS one, which the runner pause holds back)."""
        token_hash = self._hash_of.get(runner_id)
        runner = None if token_hash is None else self._by_hash.get(token_hash)
        if token_hash is None or runner is None:
            return
        caps = capabilities if isinstance(capabilities, dict) and capabilities else None
        if runner.status is not status or (caps is not None and caps != runner.capabilities):
            self._by_hash[token_hash] = replace(
                runner, status=status, capabilities=runner.capabilities if caps is None else caps
            )


@dataclass(frozen=True)
class Registration:
    runner: Runner
    token: str


@dataclass(frozen=True)
class RunnerPage:
    runners: list[Runner]
    total: int
    online_total: int


class Runners:
    """Use cases of the runner protocol and the user-facing Runners API."""

    def __init__(self, scheduling: Scheduling, identity: Identity, audit: AuditSink) -> None:
        self._scheduling = scheduling
        self._store = scheduling.store
        self._clock = scheduling.clock
        self._identity = identity
        self._audit = audit
        self._known = KnownRunners()

    async def _record(
        self,
        action: str,
        session: Session | None,
        runner_id: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        user = session.user if session else None
        await self._audit.submit_one(
            AuditEntry.by(
                user, action, "runner", runner_id, details=details, created_at=self._clock.now()
            )
        )

    def forget(self, runner_id: str) -> None:
        """Another daemon changed the runner: read it again at its next call."""
        self._known.forget(runner_id)

    def long_poll(self) -> contextlib.AbstractContextManager[trio.CancelScope]:
        """A scope cut short when the daemon begins to stop (for a runner's open channel)."""
        return self._scheduling.long_poll()

    # -- runner credentials ----------------------------------------------------------

    async def authenticate(self, authorization: str | None, runner_id: str) -> Runner:
        """The runner whose token is presented; 401 ``missing_auth`` without a Bearer
        credential, ``invalid_token`` for a wrong one; 403 for another runner's path."""
        if not presents_bearer(authorization):
            raise missing_auth()
        token = parse_bearer(authorization)
        if token is None or not looks_like_token(token):
            raise Unauthorized("invalid_token", "Runner token is invalid")
        digest = hash_token(token)
        runner = self._known.get(digest)
        if runner is None:
            epoch = self._known.epoch
            runner = await self._store.runners.by_token(digest)
            if runner is None:
                raise Unauthorized("invalid_token", "Runner token is invalid")
            self._known.remember(digest, runner, epoch)
        if runner.id != runner_id:
            raise Forbidden("runner_mismatch", "The token belongs to another runner")
        self._identity.guesses.succeeded(authorization)
        await self._scheduling.runner_seen(runner.id)
        return runner

    async def seen(self, runner_id: str) -> None:
        """The runner, authenticated earlier on a connection still open, showed it is alive
        (a WebSocket ping or pong on its channel): renew its lease."""
        await self._scheduling.runner_seen(runner_id)

    async def register(
        self,
        authorization: str | None,
        *,
        name: str,
        capabilities: Any,
        labels: list[str],
        max_concurrent: int,
    ) -> Registration:
        """Register with an owner/admin session or a runner enrollment token (§5.1)."""
        if not presents_bearer(authorization):
            raise missing_auth()
        session: Session | None = None
        enrollment_hash: str | None = None
        try:
            session = await self._identity.authenticate(authorization)
        except Unauthorized:
            bearer = parse_bearer(authorization)
            if bearer is None or not looks_like_token(bearer):
                raise
            enrollment_hash = hash_token(bearer)
        if session is not None:
            require(session.user.role, Resource.RUNNERS, Action.WRITE)
        if not 1 <= max_concurrent <= 64:
            raise InvalidInput("invalid_input", "max_concurrent must be 1..64")
        token = new_token()
        runner = await self._store.runners.register(
            NewRunner(
                name=check_runner_name(name),
                capabilities=capabilities,
                labels=check_labels(labels),
                max_concurrent=max_concurrent,
                token_hash=hash_token(token),
                registered_by=session.user.id if session else None,
                enrollment_token_hash=enrollment_hash,
                now=self._clock.now(),
            )
        )
        await self._record(
            "runner_registered",
            session,
            runner.id,
            {
                "runner_id": runner.id,
                "runner_name": runner.name,
                # None: the runner enrolled itself with an enrollment token
                "registered_by": session.user.email if session else None,
            },
        )
        self._scheduling.events.runner_changed(runner.id)
        event(
            log,
            "runner.registered",
            runner_id=runner.id,
            name=runner.name,
            labels=runner.labels,
            by=session.user.email if session else "enrollment_token",
        )
        return Registration(runner, token)

    # -- user-facing -----------------------------------------------------------------

    async def page(
        self,
        session: Session,
        *,
        q: str | None,
        sort: str,
        descending: bool,
        limit: int,
        offset: int,
    ) -> RunnerPage:
        require(session.user.role, Resource.RUNNERS, Action.READ)
        runners, total, online = await self._store.runners.page(
            q=q, sort=sort, descending=descending, limit=limit, offset=offset
        )
        return RunnerPage(runners, total, online)

    async def get(self, session: Session, runner_id: str) -> Runner:
        require(session.user.role, Resource.RUNNERS, Action.READ)
        runner = await self._store.runners.get(runner_id)
        if runner is None:
            raise NotFound("not_found", "Runner not found")
        return runner

    async def update(
        self,
        session: Session,
        runner_id: str,
        *,
        name: str | None,
        labels: list[str] | None,
        max_concurrent: int | None,
        draining: bool | None,
    ) -> Runner:
        """Rename, relabel, resize or drain a runner (``runners:write``)."""
        require(session.user.role, Resource.RUNNERS, Action.WRITE)
        if max_concurrent is not None and not 1 <= max_concurrent <= 64:
            raise InvalidInput("invalid_input", "max_concurrent must be 1..64")
        changes = RunnerChanges(
            name=None if name is None else check_runner_name(name),
            labels=None if labels is None else check_labels(labels),
            max_concurrent=max_concurrent,
            draining=draining,
        )
        self._known.forget(runner_id)
        try:
            updated = await self._store.runners.update(runner_id, changes, self._clock.now())
        finally:
            self._known.forget(runner_id)
        if updated is None:
            raise NotFound("not_found", "Runner not found")
        self._scheduling.events.runner_changed(runner_id)
        before, after = updated
        if before.name != after.name:
            await self._record(
                "runner_renamed",
                session,
                runner_id,
                {
                    "previous_name": before.name,
                    "new_name": after.name,
                    "updated_by": session.user.email,
                },
            )
        if before.draining != after.draining:
            await self._record(
                "runner_drained" if after.draining else "runner_undrained", session, runner_id
            )
            drained = "runner.drained" if after.draining else "runner.undrained"
            event(log, drained, runner_id=runner_id, name=after.name, by=session.user.email)
        if before.labels != after.labels or before.max_concurrent != after.max_concurrent:
            await self._record("runner_updated", session, runner_id)
        return after

    async def delete(self, session: Session, runner_id: str) -> None:
        require(session.user.role, Resource.RUNNERS, Action.DELETE)
        self._known.forget(runner_id)
        try:
            deleted = await self._store.runners.delete(runner_id)
        finally:
            self._known.forget(runner_id)
        if not deleted:
            raise NotFound("not_found", "Runner not found")
        self._scheduling.runner_deleted(runner_id)
        await self._record("runner_deleted", session, runner_id)
        event(log, "runner.deleted", runner_id=runner_id, by=session.user.email)

    # -- enrollment tokens -------------------------------------------------------------

    async def create_enrollment_token(
        self,
        session: Session,
        *,
        label: str | None,
        labels: list[str],
        max_uses: int | None,
        ttl_seconds: int | None,
    ) -> tuple[EnrollmentToken, str]:
        """A new enrollment token (shown once); owner/admin only.

        ``label`` names the token; without one, its labels do ("gpu, linux").
        """
        require(session.user.role, Resource.RUNNERS, Action.WRITE)
        checked = check_labels(labels)
        if label is None and not checked:
            raise InvalidInput(
                "invalid_input",
                "Give the token a label (a name to know it by) or labels (given to the"
                " runners that register with it)",
            )
        trimmed = label.strip() if label is not None else enrollment_label(checked)
        if not trimmed or len(trimmed) > 255:
            raise InvalidInput("invalid_name", "Label must be 1..255 characters")
        if (problem := name_problem(trimmed)) is not None:
            raise InvalidInput("invalid_name", f"Label {problem}")
        if max_uses is not None and max_uses < 1:
            raise InvalidInput("invalid_input", "max_uses must be at least 1")
        if ttl_seconds is not None and not 60 <= ttl_seconds <= MAX_ENROLLMENT_TTL:
            raise InvalidInput("invalid_input", "ttl_seconds must be 60 .. 31536000")
        now = self._clock.now()
        token = new_token()
        created = await self._store.runners.create_enrollment_token(
            label=trimmed,
            labels=checked,
            token_hash=hash_token(token),
            max_uses=max_uses,
            expires_at=None if ttl_seconds is None else now + ttl_seconds,
            created_by=session.user.id,
            now=now,
        )
        await self._audit.submit_one(
            AuditEntry.by(
                session.user,
                "runner_enrollment_token_created",
                "runner_enrollment_token",
                created.id,
                created_at=now,
            )
        )
        return created, token

    async def enrollment_tokens(self, session: Session) -> list[EnrollmentToken]:
        require(session.user.role, Resource.RUNNERS, Action.WRITE)
        return await self._store.runners.enrollment_tokens()

    async def revoke_enrollment_token(self, session: Session, token_id: str) -> EnrollmentToken:
        require(session.user.role, Resource.RUNNERS, Action.WRITE)
        now = self._clock.now()
        revoked = await self._store.runners.revoke_enrollment_token(token_id, now)
        if revoked is None:
            raise NotFound("not_found", "Enrollment token not found")
        await self._audit.submit_one(
            AuditEntry.by(
                session.user,
                "runner_enrollment_token_revoked",
                "runner_enrollment_token",
                token_id,
                created_at=now,
            )
        )
        return revoked

    # -- runner protocol -----------------------------------------------------------------

    async def heartbeat(self, runner: Runner, status: str, capabilities: Any) -> None:
        """Record a heartbeat (a status change is durable before answering); 400
        ``invalid_status``."""
        try:
            parsed = RunnerStatus(status)
        except ValueError:
            raise InvalidInput("invalid_status", f"Unknown runner status {status!r}") from None
        await self._scheduling.heartbeat(runner.id, parsed, capabilities)
        self._known.set_status(runner.id, parsed, capabilities)

    async def claim(self, runner: Runner, protocol_version: int, wait_seconds: float) -> Job | None:
        """The oldest eligible build, committed to this runner; None after ``wait_seconds``."""
        if protocol_version != PROTOCOL_VERSION:
            raise Conflict(
                "runner_protocol_mismatch",
                f"This server speaks runner protocol {PROTOCOL_VERSION}",
            )
        if not 0 <= wait_seconds <= MAX_WAIT_SECONDS:
            raise InvalidInput("invalid_input", f"wait_seconds must be 0..{MAX_WAIT_SECONDS}")
        return await self._scheduling.claim(runner, wait_seconds)
