"""iOS signing of pipelines: the API (contract §2.6, §8.3) and what a runner receives (§5.6).

Every call needs ``manage_pipelines`` on the pipeline's project (viewers 403, callers
without access 404). Secrets are sealed with the instance key before they are stored and
opened only for App Store Connect calls and the runner's material; changes are audited
with the names of the parts changed, never their values.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from oore.domain.crypto import SecretBox, required_box
from oore.domain.ios_signing import (
    MAX_PROFILE_BYTES,
    PROFILE_SUFFIX,
    IosProfileMaterial,
    IosSigningMaterial,
    IosSigningState,
    StoredProfile,
    apply_update,
    check_device,
    check_update,
    checksum,
    decode_base64,
    encode,
    incomplete,
    profile_facts,
    with_profiles,
)
from oore.domain.rbac import ProjectPermission
from oore.domain.users import Session
from oore.errors import InvalidInput, NotFound
from oore.services.access import Access
from oore.services.apple import AppleApiError, AppleClient, AppleDevice, AppleKey, AppleProfile
from oore.services.clock import WallClock
from oore.services.identity import AuditSink
from oore.store import Store
from oore.store.audit import AuditEntry
from oore.store.ios_signing import Change

# Which App Store Connect profile types serve which export method.
PROFILE_TYPES = {
    "ad_hoc": ("IOS_APP_ADHOC",),
    "app_store": ("IOS_APP_STORE",),
    "development": ("IOS_APP_DEVELOPMENT",),
    "enterprise": ("IOS_APP_INHOUSE",),
}


def _newest(profiles: list[AppleProfile], export_method: str, now: int) -> AppleProfile | None:
    """The active, unexpired profile with content that expires last, of a type that fits
    the export method."""
    wanted = PROFILE_TYPES.get(export_method, ())
    usable = [
        p
        for p in profiles
        if p.content_base64
        and (p.state in (None, "ACTIVE"))
        and (p.expires_at is None or p.expires_at > now)
        and (p.profile_type is None or p.profile_type in wanted)
    ]
    if not usable:
        return None
    return max(usable, key=lambda p: (p.expires_at or 0, p.created_at or 0))


class IosSigning:
    """Per-pipeline iOS signing: configuration, App Store Connect sync, devices."""

    def __init__(
        self,
        store: Store,
        clock: WallClock,
        audit: AuditSink,
        access: Access,
        secrets: SecretBox | None,
        apple: AppleClient,
    ) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._access = access
        self._secrets = secrets
        self._apple = apple

    def _box(self) -> SecretBox:
        return required_box(self._secrets)

    async def _pipeline(self, session: Session, pipeline_id: str) -> str:
        """The pipeline's project id after the access check; 404 when hidden or unknown."""
        pipeline, _ = await self._access.pipeline(
            session, pipeline_id, ProjectPermission.MANAGE_PIPELINES
        )
        return pipeline.project_id

    async def _state(self, pipeline_id: str) -> IosSigningState:
        found = await self._store.ios_signing.get(pipeline_id)
        return found or IosSigningState(pipeline_id=pipeline_id)

    async def _change(self, pipeline_id: str, change: Change) -> IosSigningState:
        state = await self._store.ios_signing.update(pipeline_id, change)
        if state is None:
            raise NotFound("not_found", "Pipeline not found")
        return state

    async def get(self, session: Session, pipeline_id: str) -> dict[str, Any]:
        """The pipeline's iOS signing (defaults when never configured), without secrets."""
        await self._pipeline(session, pipeline_id)
        return (await self._state(pipeline_id)).to_json()

    async def put(self, session: Session, pipeline_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Change what the body names; omitted or blank values keep the stored ones."""
        project_id = await self._pipeline(session, pipeline_id)
        update = check_update(body)
        box, now = self._box(), self._clock.now()
        state = await self._change(
            pipeline_id, lambda current: apply_update(current, update, box.encrypt, now)
        )
        await self._record(
            session,
            "pipeline_ios_signing_updated",
            pipeline_id,
            {
                "project_id": project_id,
                "changed": update.changed(),
                "profiles": [p.bundle_id for p in update.profiles],
                "enabled": state.enabled,
                "mode": state.mode,
            },
        )
        return state.to_json()

    def _key(self, state: IosSigningState) -> AppleKey:
        if not state.has_api_key or state.api_private_key_encrypted is None:
            raise incomplete(["api_key (key_id, issuer_id, private_key_base64)"], state.mode)
        return AppleKey(
            str(state.api_key_id),
            str(state.api_issuer_id),
            self._box().decrypt(state.api_private_key_encrypted),
        )

    async def sync(self, session: Session, pipeline_id: str) -> dict[str, Any]:
        """Fetch the newest valid profile of each bundle id from App Store Connect and store
        it; answers the signing plus ``synced`` (bundle ids updated) and ``missing`` (bundle
        ids Apple has no usable profile for)."""
        project_id = await self._pipeline(session, pipeline_id)
        state = await self._state(pipeline_id)
        key = self._key(state)
        if not state.bundle_ids:
            raise incomplete(["bundle_ids"], state.mode)
        now = self._clock.now()
        fetched: list[tuple[str, bytes, AppleProfile]] = []
        missing: list[str] = []
        async with self._apple.session(key, now) as apple:
            for bundle_id in state.bundle_ids:
                resource = await apple.bundle_id(bundle_id)
                chosen = None
                if resource is not None:
                    chosen = _newest(await apple.profiles(resource), state.export_method, now)
                if chosen is None or chosen.content_base64 is None:
                    missing.append(bundle_id)
                    continue
                try:
                    raw = decode_base64(chosen.content_base64, "profileContent", MAX_PROFILE_BYTES)
                except InvalidInput:
                    raise AppleApiError(
                        "apple_api_error",
                        f"App Store Connect sent unreadable content for profile {chosen.id}",
                    ) from None
                fetched.append((bundle_id, raw, chosen))
        box = self._box()
        profiles = [
            StoredProfile(
                bundle_id=bundle_id,
                profile_filename=f"{bundle_id}{PROFILE_SUFFIX}",
                profile_encrypted=box.encrypt(encode(raw)),
                checksum=checksum(raw),
                profile_uuid=facts.uuid or chosen.uuid,
                profile_name=facts.name or chosen.name,
                expires_at=facts.expires_at or chosen.expires_at,
                updated_at=now,
            )
            for bundle_id, raw, chosen in fetched
            for facts in (profile_facts(raw),)
        ]

        def store_synced(current: IosSigningState) -> IosSigningState:
            synced = replace(current, last_synced_at=now, updated_at=now)
            # Bundle ids removed meanwhile are not brought back.
            return with_profiles(synced, [p for p in profiles if p.bundle_id in synced.bundle_ids])

        saved = await self._change(pipeline_id, store_synced)
        synced_ids = [p.bundle_id for p in profiles if p.bundle_id in saved.bundle_ids]
        await self._record(
            session,
            "pipeline_ios_signing_updated",
            pipeline_id,
            {"project_id": project_id, "synced": synced_ids, "missing": missing},
        )
        return {**saved.to_json(), "synced": synced_ids, "missing": missing}

    async def devices(self, session: Session, pipeline_id: str) -> list[AppleDevice]:
        """The devices registered on the team of the pipeline's API key."""
        await self._pipeline(session, pipeline_id)
        key = self._key(await self._state(pipeline_id))
        async with self._apple.session(key, self._clock.now()) as apple:
            return await apple.devices()

    async def register_device(
        self, session: Session, pipeline_id: str, name: str, udid: str, platform: str | None
    ) -> AppleDevice:
        """Register a device with Apple under the pipeline's API key."""
        project_id = await self._pipeline(session, pipeline_id)
        device = check_device(name, udid, platform)
        key = self._key(await self._state(pipeline_id))
        async with self._apple.session(key, self._clock.now()) as apple:
            created = await apple.register_device(device)
        await self._record(
            session,
            "ios_device_registered",
            pipeline_id,
            {
                "project_id": project_id,
                "device_id": created.id,
                "name": created.name,
                "udid": created.udid,
                "platform": created.platform,
            },
        )
        return created

    async def _record(
        self, session: Session, action: str, pipeline_id: str, details: dict[str, Any]
    ) -> None:
        await self._audit.submit_one(
            AuditEntry.by(
                session.user,
                action,
                "pipeline",
                pipeline_id,
                details=details,
                created_at=self._clock.now(),
            )
        )

    # -- runners --------------------------------------------------------------------------

    async def runner_material(self, pipeline_id: str) -> dict[str, Any] | None:
        """What a runner signing this pipeline's build receives (§5.6): ``{bundle: {...}}``
        with the material in clear, or None when iOS signing is not enabled."""
        state = await self._store.ios_signing.get(pipeline_id)
        if state is None or not state.enabled:
            return None
        box = self._box()

        def opened(sealed: str | None) -> str | None:
            return None if sealed is None else box.decrypt(sealed)

        material = IosSigningMaterial(
            mode=state.mode,
            team_id=state.team_id,
            export_method=state.export_method,
            p12_filename=state.p12_filename,
            p12_base64=opened(state.p12_encrypted),
            p12_password=opened(state.p12_password_encrypted),
            profiles=tuple(
                IosProfileMaterial(
                    bundle_id=profile.bundle_id,
                    profile_filename=profile.profile_filename,
                    profile_base64=box.decrypt(profile.profile_encrypted),
                    profile_uuid=profile.profile_uuid,
                    profile_name=profile.profile_name,
                )
                for profile in state.profiles
            ),
        )
        return {"bundle": material.to_json()}
