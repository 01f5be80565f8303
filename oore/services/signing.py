"""Build signing: a pipeline's signing profiles, and the runner's signing grant (contract
§5.6, §8.3).

Reading and changing profiles needs ``manage_pipelines`` on the pipeline's project
(viewers 403, non-members 404). Secret parts are sealed with the instance key before they
reach the store and are answered to nobody but the runner holding one of the pipeline's
builds, which proves it with the signing token of its claim (the *grant*, valid while the
build is assigned or running). Changes are audited with the parts changed, never values.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from oore.domain.builds import Build, BuildStatus
from oore.domain.crypto import SecretBox, required_box
from oore.domain.rbac import ProjectPermission
from oore.domain.runners import Runner
from oore.domain.signing import (
    ANDROID_BUILD_TYPES,
    AndroidBuildType,
    AndroidProfileChange,
    AndroidProfileView,
    AndroidSigningMaterial,
    SealedAndroidProfile,
    apply_android_change,
)
from oore.domain.tokens import hash_token
from oore.domain.users import Session
from oore.domain.variables import maskable
from oore.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from oore.services.access import Access
from oore.services.clock import WallClock
from oore.services.identity import AuditSink
from oore.store import Store
from oore.store.audit import AuditEntry

GRANT_STATUSES = frozenset({BuildStatus.ASSIGNED, BuildStatus.RUNNING})


@dataclass(frozen=True)
class AndroidSigning:
    """``GET/PUT /v1/pipelines/{id}/android-signing``'s answer."""

    pipeline_id: str
    profiles: tuple[AndroidProfileView, ...]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pipeline_id": self.pipeline_id}
        out.update((profile.build_type, profile.to_json()) for profile in self.profiles)
        return out


class Signing:
    """Signing profiles of pipelines, and what the runner holding a build may fetch."""

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

    def _box(self) -> SecretBox:
        return required_box(self._secrets)

    async def _pipeline(self, session: Session, pipeline_id: str) -> str:
        """The pipeline's id once the caller may manage it; 404 when unknown or hidden."""
        pipeline, _ = await self._access.pipeline(
            session, pipeline_id, ProjectPermission.MANAGE_PIPELINES
        )
        return pipeline.id

    # -- Android ----------------------------------------------------------------------------

    async def android(self, session: Session, pipeline_id: str) -> AndroidSigning:
        pipeline = await self._pipeline(session, pipeline_id)
        return self._android_view(pipeline, await self._store.signing.android(pipeline))

    async def set_android(
        self,
        session: Session,
        pipeline_id: str,
        changes: dict[AndroidBuildType, AndroidProfileChange],
    ) -> AndroidSigning:
        """Apply the changes of the profiles named; 400 ``invalid_input`` when none is."""
        if not changes:
            raise InvalidInput("invalid_input", "Give a debug or a release profile, or both")
        pipeline = await self._pipeline(session, pipeline_id)
        box = self._box()
        now = self._clock.now()

        def change(current: dict[str, SealedAndroidProfile]) -> list[SealedAndroidProfile]:
            return [
                apply_android_change(
                    current.get(build_type), pipeline, build_type, wanted, box.encrypt, now
                )
                for build_type, wanted in changes.items()
            ]

        saved = await self._store.signing.change_android(pipeline, change)
        details: dict[str, Any] = {
            build_type: {
                "enabled": saved[build_type].enabled,
                "changed": _changed_parts(wanted),
            }
            for build_type, wanted in changes.items()
        }
        await self._audit.submit_one(
            AuditEntry.by(
                session.user,
                "pipeline_android_signing_updated",
                "pipeline",
                pipeline,
                details=details,
                created_at=now,
            )
        )
        return self._android_view(pipeline, saved)

    def _android_view(
        self, pipeline_id: str, stored: dict[str, SealedAndroidProfile]
    ) -> AndroidSigning:
        views: list[AndroidProfileView] = []
        for build_type in ANDROID_BUILD_TYPES:
            profile = stored.get(build_type)
            if profile is None:
                views.append(AndroidProfileView(build_type))
                continue
            alias = profile.key_alias_sealed
            views.append(
                AndroidProfileView(
                    build_type,
                    enabled=profile.enabled,
                    keystore_filename=profile.keystore_filename,
                    keystore_checksum=profile.keystore_checksum,
                    key_alias=None if alias is None else self._box().decrypt(alias),
                    has_keystore=profile.keystore_sealed is not None,
                    has_store_password=profile.store_password_sealed is not None,
                    has_key_password=profile.key_password_sealed is not None,
                    updated_at=profile.updated_at,
                )
            )
        return AndroidSigning(pipeline_id, tuple(views))

    # -- the runner's grant -----------------------------------------------------------------

    async def runner_grant(self, runner: Runner, build_id: str, token: str | None) -> Build:
        """The build, once the runner proved it holds it with the claim's signing token.

        Checked in this order: 404 ``not_found`` for an unknown build; 409
        ``job_not_active`` unless it is assigned or running; 403 ``runner_mismatch`` when
        another runner holds it; 401 ``signing_grant_required`` without a token; 401
        ``invalid_signing_grant`` for another token (the grant ends with the claim).
        """
        found = await self._store.signing.grant(build_id)
        if found is None:
            raise NotFound("not_found", "Build not found")
        build = found.build
        if build.status not in GRANT_STATUSES:
            raise Conflict(
                "job_not_active", f"The build is {build.status}, not assigned or running"
            )
        if build.runner_id != runner.id:
            raise Forbidden("runner_mismatch", "This build is not assigned to this runner")
        if not token:
            raise Unauthorized(
                "signing_grant_required", "The X-Oore-Signing-Token header is required"
            )
        expected = found.signing_token_hash
        if expected is None or not hmac.compare_digest(hash_token(token), expected):
            raise Unauthorized("invalid_signing_grant", "The signing token is not valid")
        return build

    async def android_for_runner(
        self, runner: Runner, build_id: str, token: str | None
    ) -> list[AndroidSigningMaterial]:
        """The enabled Android profiles of the build's pipeline, in clear."""
        build = await self.runner_grant(runner, build_id, token)
        stored = await self._store.signing.android(build.pipeline_id)
        box = self._box()
        material: list[AndroidSigningMaterial] = []
        for build_type in ANDROID_BUILD_TYPES:
            profile = stored.get(build_type)
            if profile is None or not profile.enabled or profile.missing:
                continue
            assert profile.keystore_filename is not None
            parts = (
                profile.keystore_sealed,
                profile.store_password_sealed,
                profile.key_alias_sealed,
                profile.key_password_sealed,
            )
            keystore, store_password, alias, key_password = (
                box.decrypt(part) for part in parts if part is not None
            )
            material.append(
                AndroidSigningMaterial(
                    build_type,
                    profile.keystore_filename,
                    keystore,
                    store_password,
                    alias,
                    key_password,
                )
            )
        return material

    async def secrets_to_mask(
        self, build: Build, sealed: Sequence[str] | None = None
    ) -> tuple[str, ...]:
        """The signing passwords of the build's pipeline (Android's and the iOS P12's),
        which its log must never show (whether or not its runner fetched them), longest
        first: from ``sealed`` (as the claim read them), else read now."""
        if sealed is None:
            sealed = await self._store.signing.sealed_passwords(build.pipeline_id)
        if not sealed:
            return ()
        box = self._box()
        return maskable(box.decrypt(part) for part in sealed)


def _changed_parts(change: AndroidProfileChange) -> list[str]:
    """The names of the parts a change sets (for the audit entry; never their values)."""
    parts = {
        "enabled": change.enabled,
        "keystore": change.keystore,
        "keystore_filename": change.keystore_filename,
        "store_password": change.store_password,
        "key_alias": change.key_alias,
        "key_password": change.key_password,
    }
    return [name for name, value in parts.items() if value is not None]
