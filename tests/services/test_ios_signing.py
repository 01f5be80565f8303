"""IosSigning on a real database: what a runner receives (§5.6) and writes that never
lose each other's changes."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import trio

from oore.domain.crypto import SecretBox
from oore.domain.users import Role, Session, UserStatus
from oore.errors import ApiError
from oore.services.access import Access
from oore.services.apple import AppleClient
from oore.services.ios_signing import IosSigning
from oore.store import AuditEntry, Store
from tests.apple_kit import TEAM_ID, FakeAppStoreConnect, fake_apple, mobileprovision
from tests.http.conftest import FakeClock
from tests.scheduling.kit import world

__all__ = ["fake_apple"]

P12 = base64.b64encode(b"p12 certificate bytes").decode()
PROFILE = mobileprovision("uuid-a", "App", 1_900_000_000)


class Audit:
    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    async def submit_one(self, row: AuditEntry) -> None:
        self.entries.append(row)


async def signing_and_owner(
    store: Store, fake: FakeAppStoreConnect, audit: Audit
) -> tuple[IosSigning, Session, str]:
    clock = FakeClock()
    admin = await store.users.create(
        email="admin@example.com", role=Role.ADMIN, status=UserStatus.ACTIVE, subject=None, now=0
    )
    signing = IosSigning(
        store, clock, audit, Access(store), SecretBox(bytes(32)), AppleClient(fake.config)
    )
    return signing, Session("h", admin, None), (await world(store)).pipeline_id


def manual(enabled: bool = True) -> dict[str, object]:
    return {
        "enabled": enabled,
        "team_id": TEAM_ID,
        "bundle_ids": ["com.example.app"],
        "p12": {"p12_filename": "dist.p12", "p12_base64": P12, "p12_password": "secret-pw"},
        "provisioning_profiles": [
            {
                "bundle_id": "com.example.app",
                "profile_filename": "app.mobileprovision",
                "profile_base64": base64.b64encode(PROFILE).decode(),
            }
        ],
    }


async def test_runner_material_only_when_enabled_and_in_clear(
    store: Store, fake_apple: FakeAppStoreConnect
) -> None:
    audit = Audit()
    signing, owner, pipeline_id = await signing_and_owner(store, fake_apple, audit)
    assert await signing.runner_material(pipeline_id) is None
    await signing.put(owner, pipeline_id, manual(enabled=False))
    assert await signing.runner_material(pipeline_id) is None
    await signing.put(owner, pipeline_id, {"enabled": True})
    material = await signing.runner_material(pipeline_id)
    assert material == {
        "bundle": {
            "enabled": True,
            "mode": "manual",
            "team_id": TEAM_ID,
            "export_method": "ad_hoc",
            "p12_filename": "dist.p12",
            "p12_base64": P12,
            "p12_password": "secret-pw",
            "provisioning_profiles": [
                {
                    "bundle_id": "com.example.app",
                    "profile_filename": "app.mobileprovision",
                    "profile_base64": base64.b64encode(PROFILE).decode(),
                    "profile_uuid": "uuid-a",
                    "profile_name": "App",
                }
            ],
        }
    }
    assert [e.action for e in audit.entries] == ["pipeline_ios_signing_updated"] * 2
    assert "secret-pw" not in repr(audit.entries) and P12 not in repr(audit.entries)


async def test_a_refused_update_stores_nothing(
    store: Store, fake_apple: FakeAppStoreConnect
) -> None:
    audit = Audit()
    signing, owner, pipeline_id = await signing_and_owner(store, fake_apple, audit)
    await signing.put(owner, pipeline_id, manual(enabled=False))
    before = await store.ios_signing.get(pipeline_id)
    with pytest.raises(ApiError) as caught:
        await signing.put(owner, pipeline_id, {"enabled": True, "bundle_ids": ["com.other"]})
    assert caught.value.code == "incomplete_signing_profile"
    assert await store.ios_signing.get(pipeline_id) == before
    assert len(audit.entries) == 1


async def test_concurrent_updates_keep_each_others_changes(
    store: Store, fake_apple: FakeAppStoreConnect
) -> None:
    signing, owner, pipeline_id = await signing_and_owner(store, fake_apple, Audit())
    bodies: list[dict[str, Any]] = [
        {"team_id": TEAM_ID},
        {"export_method": "development"},
        {"bundle_ids": ["com.example.app"]},
        {"p12": {"p12_base64": P12}},
        {"mode": "hybrid"},
    ]
    async with trio.open_nursery() as nursery:
        for body in bodies:
            nursery.start_soon(signing.put, owner, pipeline_id, body)
    stored = await store.ios_signing.get(pipeline_id)
    assert stored is not None
    assert (stored.team_id, stored.export_method, stored.mode) == (
        TEAM_ID,
        "development",
        "hybrid",
    )
    assert stored.bundle_ids == ("com.example.app",) and stored.p12_encrypted is not None
