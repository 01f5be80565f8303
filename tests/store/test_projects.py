"""Project store invariants that need two writers at once."""

from __future__ import annotations

import trio

from oore.domain.rbac import ProjectRole
from oore.domain.users import Role, UserStatus
from oore.errors import Conflict
from oore.store import Store
from oore.store.projects import NewProject

NOW = 1_800_000_000


async def test_two_concurrent_removals_keep_one_maintainer(store: Store) -> None:
    owner = await store.users.create(
        email="o@example.com", role=Role.OWNER, status=UserStatus.ACTIVE, subject=None, now=NOW
    )
    repository = await store.projects.local_repository(
        local_path="/srv/app", full_name="app", default_branch="main", now=NOW
    )
    project = await store.projects.create(
        NewProject("app", None, repository.id, "main", owner.id, NOW)
    )
    maintainers = []
    for n in range(2):
        user = await store.users.create(
            email=f"m{n}@example.com",
            role=Role.DEVELOPER,
            status=UserStatus.ACTIVE,
            subject=None,
            now=NOW,
        )
        await store.projects.add_member(project.id, user.id, ProjectRole.MAINTAINER, NOW)
        maintainers.append(user.id)
    outcomes: list[str] = []

    async def remove(user_id: str) -> None:
        try:
            await store.projects.remove_member(project.id, user_id)
            outcomes.append("removed")
        except Conflict as exc:
            outcomes.append(exc.code)

    async with trio.open_nursery() as nursery:
        for user_id in maintainers:
            nursery.start_soon(remove, user_id)
    assert sorted(outcomes) == ["last_maintainer", "removed"]
    left = await store.projects.members(project.id)
    assert [m.role for m in left] == [ProjectRole.MAINTAINER]


async def test_a_local_path_names_one_repository(store: Store) -> None:
    first = await store.projects.local_repository(
        local_path="/srv/app", full_name="app", default_branch="main", now=NOW
    )
    again = await store.projects.local_repository(
        local_path="/srv/app", full_name="app", default_branch="dev", now=NOW + 1
    )
    assert again == first
