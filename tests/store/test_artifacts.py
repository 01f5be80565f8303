"""Artifact rows: compare-and-set completion, checksum lookups, expiry, membership."""

from __future__ import annotations

from dataclasses import dataclass

import trio

from oore.domain.artifact_storage import StorageProvider, StoredStorageSettings
from oore.domain.artifacts import ArtifactState, ArtifactType
from oore.domain.builds import TriggerType
from oore.domain.ids import new_id
from oore.domain.rbac import ProjectRole
from oore.domain.tokens import hash_token, new_token
from oore.domain.users import Role, UserStatus
from oore.store import Store
from oore.store.artifacts import NewArtifact
from oore.store.builds import ClaimRow, NewBuild
from oore.store.pipelines import NewPipeline
from oore.store.projects import NewProject
from oore.store.runners import NewRunner

NOW = 1_800_000_000


@dataclass(frozen=True)
class World:
    project_id: str
    build_id: str
    runner_id: str
    owner_id: str


async def world(store: Store, path: str = "/srv/app") -> World:
    """A project with a build claimed by a runner; one owner per database."""
    owners = [u for u in await store.users.active_users(None) if u.role is Role.OWNER]
    owner = (
        owners[0]
        if owners
        else await store.users.create(
            email="o@example.com", role=Role.OWNER, status=UserStatus.ACTIVE, subject=None, now=NOW
        )
    )
    repository = await store.projects.local_repository(
        local_path=path, full_name="app", default_branch="main", now=NOW
    )
    project = await store.projects.create(
        NewProject("app", None, repository.id, "main", owner.id, NOW)
    )
    pipeline = await store.pipelines.create(
        NewPipeline(project.id, "ci", ".oore.yaml", False, {}, {}, {}, (), NOW)
    )
    build = await store.builds.create(
        NewBuild(
            project.id,
            pipeline.id,
            TriggerType.MANUAL,
            None,
            None,
            "main",
            "a" * 40,
            "main",
            None,
            None,
            {},
            (),
            "build created",
            NOW,
        )
    )
    assert build is not None
    runner = await store.runners.register(
        NewRunner("r", None, (), 1, hash_token(new_token()), None, None, NOW)
    )
    claim = ClaimRow(build.id, runner.id, hash_token(new_token()), NOW + 120, NOW)
    [outcome] = await store.builds.commit_claims([claim])
    assert outcome.build is not None
    return World(project.id, build.id, runner.id, owner.id)


async def reserve(
    store: Store, w: World, name: str, *, at: int = NOW, checksum: str | None = None
) -> str:
    artifact_id = new_id()
    created = await store.artifacts.insert(
        NewArtifact(
            artifact_id,
            w.build_id,
            name,
            ArtifactType.GENERIC,
            f"artifacts/{w.build_id}/{artifact_id}/{name}",
            3,
            checksum,
            {"k": [1]},
            None,
            at,
        )
    )
    assert created is not None and created.state is ArtifactState.PENDING
    assert created.project_id == w.project_id and created.metadata == {"k": [1]}
    return artifact_id


async def test_finish_is_a_compare_and_set_on_pending_and_the_binding(store: Store) -> None:
    w = await world(store)
    a = await reserve(store, w, "a.txt")
    other_runner = await store.runners.register(
        NewRunner("other", None, (), 1, hash_token(new_token()), None, None, NOW)
    )
    available = ArtifactState.AVAILABLE
    assert (
        await store.artifacts.finish(a, w.build_id, other_runner.id, available, None, NOW) is None
    )
    assert await store.artifacts.finish(a, new_id(), w.runner_id, available, None, NOW) is None
    assert (
        await store.artifacts.finish("nope", w.build_id, w.runner_id, available, None, NOW) is None
    )
    done = await store.artifacts.finish(a, w.build_id, w.runner_id, available, None, NOW + 5)
    assert done is not None and done.state is available
    assert await store.artifacts.finish(a, w.build_id, w.runner_id, available, None, NOW) is None


async def test_two_concurrent_completions_have_one_winner(store: Store) -> None:
    w = await world(store)
    a = await reserve(store, w, "a.txt")
    outcomes: list[ArtifactState | None] = []

    async def finish(state: ArtifactState) -> None:
        done = await store.artifacts.finish(a, w.build_id, w.runner_id, state, "x", NOW)
        outcomes.append(None if done is None else done.state)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(finish, ArtifactState.AVAILABLE)
        nursery.start_soon(finish, ArtifactState.FAILED)
    assert len(outcomes) == 2 and outcomes.count(None) == 1


async def test_checksum_lookup_sees_only_available_artifacts(store: Store) -> None:
    w = await world(store)
    a = await reserve(store, w, "a.txt", checksum="abc")
    assert await store.artifacts.available_with_checksum(w.build_id, "abc") is None
    await store.artifacts.finish(a, w.build_id, w.runner_id, ArtifactState.AVAILABLE, None, NOW)
    found = await store.artifacts.available_with_checksum(w.build_id, "abc")
    assert found is not None and found.id == a
    assert await store.artifacts.available_with_checksum(w.build_id, "other") is None
    assert await store.artifacts.available_with_checksum("not-a-uuid", "abc") is None


async def test_pending_rows_expire_oldest_first_within_the_limit(store: Store) -> None:
    w = await world(store)
    assert await store.artifacts.oldest_pending() is None
    old = [await reserve(store, w, f"{n}.txt", at=NOW + n) for n in range(3)]
    fresh = await reserve(store, w, "fresh.txt", at=NOW + 100)
    assert await store.artifacts.oldest_pending() == NOW
    failed = await store.artifacts.fail_pending(NOW + 2, "expired", NOW + 200, limit=2)
    assert [f.id for f in failed] == old[:2]
    assert all(f.state is ArtifactState.FAILED and f.error_message == "expired" for f in failed)
    assert await store.artifacts.oldest_pending() == NOW + 2
    failed = await store.artifacts.fail_pending(NOW + 2, "expired", NOW + 200)
    assert [f.id for f in failed] == [old[2]]
    assert await store.artifacts.oldest_pending() == NOW + 100
    row = await store.artifacts.get(fresh)
    assert row is not None and row.state is ArtifactState.PENDING


async def test_queries_by_build_and_membership(store: Store) -> None:
    w = await world(store)
    v = await world(store, "/srv/other")
    ids = []
    for target, name in ((w, "w.txt"), (v, "v.txt")):
        a = await reserve(store, target, name)
        await store.artifacts.finish(
            a, target.build_id, target.runner_id, ArtifactState.AVAILABLE, None, NOW
        )
        ids.append(a)
    await reserve(store, w, "pending.txt")
    assert [a.id for a in await store.artifacts.for_build(w.build_id)] == [ids[0]]
    assert [a.id for a in await store.artifacts.for_project(v.project_id, 10)] == [ids[1]]
    both = [w.build_id, v.build_id, "junk", new_id()]
    assert [a.id for a in await store.artifacts.of_builds(both, None)] == [ids[1], ids[0]]
    dev = await store.users.create(
        email="d@example.com", role=Role.DEVELOPER, status=UserStatus.ACTIVE, subject=None, now=NOW
    )
    assert await store.artifacts.of_builds(both, dev.id) == []
    await store.projects.add_member(v.project_id, dev.id, ProjectRole.VIEWER, NOW)
    assert [a.id for a in await store.artifacts.of_builds(both, dev.id)] == [ids[1]]


async def test_storage_settings_row(store: Store) -> None:
    assert await store.artifacts.storage_settings() is None
    row = StoredStorageSettings(
        StorageProvider.S3,
        s3_bucket="b",
        s3_region="r",
        access_key_id_encrypted="x",
        secret_access_key_encrypted="y",
        updated_at=NOW,
    )
    await store.artifacts.save_storage_settings(row)
    assert await store.artifacts.storage_settings() == row
    cleared = StoredStorageSettings(StorageProvider.DISABLED, updated_at=NOW + 1)
    await store.artifacts.save_storage_settings(cleared)
    assert await store.artifacts.storage_settings() == cleared
