"""Project and pipeline variables and secrets: the API, and what a build receives.

Reads (names, flags, plain values) need ``manage_pipelines``; writes need the maintainer
role (``manage_variables``) and are audited with the name, scope and flag only. Every
value is encrypted at rest. A build's variables are decrypted when a runner claims it,
handed to that runner in the claim answer, and their secret values remembered here (per
build attempt) so that the log service masks them in every line it stores.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from oore.domain.builds import Build
from oore.domain.crypto import SecretBox, required_box
from oore.domain.rbac import ProjectPermission
from oore.domain.users import Session
from oore.domain.variables import (
    MAX_VARIABLES,
    BuildVariable,
    Variable,
    build_variables,
    check_input,
    check_name,
    maskable,
)
from oore.errors import NotFound
from oore.services.access import Access
from oore.services.clock import WallClock
from oore.services.identity import AuditSink
from oore.store import Store
from oore.store.audit import AuditEntry
from oore.store.variables import StoredVariable

REMEMBERED_BUILDS = 4096


class Variables:
    """Variables of projects and pipelines, and the secrets of the builds running now."""

    def __init__(
        self,
        store: Store,
        clock: WallClock,
        audit: AuditSink,
        access: Access,
        secrets: SecretBox | None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._access = access
        self._secrets = secrets
        # (build id, attempt) -> the secret values its runner was given, longest first.
        self._masks: OrderedDict[tuple[str, int], tuple[str, ...]] = OrderedDict()

    def _box(self) -> SecretBox:
        return required_box(self._secrets)

    def _view(self, stored: StoredVariable) -> Variable:
        value = None if stored.secret else self._box().decrypt(stored.value_encrypted)
        return Variable(
            stored.id,
            stored.project_id,
            stored.pipeline_id,
            stored.name,
            value,
            stored.secret,
            stored.created_at,
            stored.updated_at,
        )

    async def _scope(
        self,
        session: Session,
        project_id: str | None,
        pipeline_id: str | None,
        permission: ProjectPermission,
    ) -> tuple[str, str | None]:
        """(project id, pipeline id or None) after the access check; 404 when hidden."""
        if pipeline_id is not None:
            pipeline, _ = await self._access.pipeline(session, pipeline_id, permission)
            return pipeline.project_id, pipeline.id
        assert project_id is not None
        found = await self._access.project(session, project_id, permission)
        return found.project.id, None

    async def in_scope(
        self, session: Session, *, project_id: str | None = None, pipeline_id: str | None = None
    ) -> list[Variable]:
        """The scope's variables; secret values are never included."""
        scope = await self._scope(
            session, project_id, pipeline_id, ProjectPermission.MANAGE_PIPELINES
        )
        return [self._view(stored) for stored in await self._store.variables.in_scope(*scope)]

    async def put(
        self,
        session: Session,
        body: dict[str, Any],
        *,
        project_id: str | None = None,
        pipeline_id: str | None = None,
    ) -> tuple[Variable, bool]:
        """Create or replace one variable; True when it was created."""
        scope = await self._scope(
            session, project_id, pipeline_id, ProjectPermission.MANAGE_VARIABLES
        )
        checked = check_input(body.get("name"), body.get("value"), body.get("secret", False))
        now = self._clock.now()
        stored, created = await self._store.variables.put(
            *scope,
            checked.name,
            self._box().encrypt(checked.value),
            checked.secret,
            now,
            MAX_VARIABLES,
        )
        action = "variable_created" if created else "variable_updated"
        await self._record(session, action, stored, now)
        return self._view(stored), created

    async def delete(
        self,
        session: Session,
        name: str,
        *,
        project_id: str | None = None,
        pipeline_id: str | None = None,
    ) -> None:
        scope = await self._scope(
            session, project_id, pipeline_id, ProjectPermission.MANAGE_VARIABLES
        )
        stored = await self._store.variables.delete(*scope, check_name(name))
        if stored is None:
            raise NotFound("not_found", "Variable not found")
        await self._record(session, "variable_deleted", stored, self._clock.now())

    async def _record(
        self, session: Session, action: str, stored: StoredVariable, now: int
    ) -> None:
        details: dict[str, Any] = {
            "name": stored.name,
            "secret": stored.secret,
            "project_id": stored.project_id,
        }
        if stored.pipeline_id:
            details["pipeline_id"] = stored.pipeline_id
        await self._audit.submit_one(
            AuditEntry.by(
                session.user, action, "variable", stored.id, details=details, created_at=now
            )
        )

    # -- builds ---------------------------------------------------------------------------

    async def for_build(self, build: Build) -> tuple[BuildVariable, ...]:
        """The build's variables in clear, for the claim answer to the runner holding it;
        their secret values are kept for masking this attempt's log."""
        stored = await self._store.variables.for_build(build.project_id, build.pipeline_id)
        if not stored:
            self._remember(build, ())
            return ()
        box = self._box()

        def clear(rows: list[StoredVariable]) -> list[BuildVariable]:
            return [BuildVariable(r.name, box.decrypt(r.value_encrypted), r.secret) for r in rows]

        variables = build_variables(
            clear([r for r in stored if r.pipeline_id is None]),
            clear([r for r in stored if r.pipeline_id is not None]),
        )
        self._remember(build, maskable(var.value for var in variables if var.secret))
        return variables

    def _remember(self, build: Build, values: tuple[str, ...]) -> None:
        key = (build.id, build.attempt)
        self._masks[key] = values
        self._masks.move_to_end(key)
        while len(self._masks) > REMEMBERED_BUILDS:
            self._masks.popitem(last=False)

    async def secrets_to_mask(
        self, build: Build, given: Sequence[BuildVariable] | None = None
    ) -> tuple[str, ...]:
        """The secret values to mask in the log of the build's current attempt: those its
        runner was given (``given``, when this daemon handed them over), or (after a
        restart of the daemon) the stored ones now."""
        known = self._masks.get((build.id, build.attempt))
        if known is not None:
            return known
        if given is not None:
            self._remember(build, maskable(var.value for var in given if var.secret))
        else:
            await self.for_build(build)
        return self._masks.get((build.id, build.attempt), ())
