"""A project, runners and builds on a real database, and the scheduling runtime over it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from oore.domain.builds import TriggerType
from oore.domain.runners import Runner
from oore.domain.tokens import hash_token, new_token
from oore.domain.users import Role, UserStatus
from oore.runtime import Runtime, open_runtime
from oore.scheduling import SchedulingConfig
from oore.services.artifact_storage import ArtifactsConfig
from oore.services.clock import SystemClock
from oore.store import Store
from oore.store.builds import NewBuild
from oore.store.pipelines import NewPipeline
from oore.store.projects import NewProject
from oore.store.runners import NewRunner

CLOCK = SystemClock()
BOUND = 30.0  # seconds any awaited condition may take on a loaded machine


@dataclass(frozen=True)
class World:
    project_id: str
    pipeline_id: str

    def build(self, *labels: str) -> NewBuild:
        """A build to queue now."""
        return NewBuild(
            self.project_id,
            self.pipeline_id,
            TriggerType.MANUAL,
            "o@example.com",
            None,
            "main",
            "a" * 40,
            "main",
            None,
            None,
            {},
            tuple(sorted(labels)),
            "build created",
            CLOCK.now(),
        )


async def world(store: Store) -> World:
    now = CLOCK.now()
    owner = await store.users.create(
        email="o@example.com", role=Role.OWNER, status=UserStatus.ACTIVE, subject=None, now=now
    )
    repository = await store.projects.local_repository(
        local_path="/srv/app", full_name="app", default_branch="main", now=now
    )
    project = await store.projects.create(
        NewProject("app", None, repository.id, "main", owner.id, now)
    )
    pipeline = await store.pipelines.create(
        NewPipeline(project.id, "ci", ".oore.yaml", False, {}, {}, {}, (), now)
    )
    return World(project.id, pipeline.id)


async def runners(
    store: Store, count: int, *, labels: Iterable[str] = (), slots: int = 1
) -> list[Runner]:
    return [
        await store.runners.register(
            NewRunner(
                f"r{i}",
                None,
                tuple(labels),
                slots,
                hash_token(new_token()),
                None,
                None,
                CLOCK.now(),
            )
        )
        for i in range(count)
    ]


@asynccontextmanager
async def runtime(store: Store, tmp_path: Path, config: SchedulingConfig) -> AsyncIterator[Runtime]:
    await store.instance.ensure(CLOCK.now())
    artifacts = ArtifactsConfig(data_dir=tmp_path / "data")
    async with open_runtime(store, CLOCK, config, artifacts_config=artifacts) as opened:
        yield opened


@asynccontextmanager
async def claimed_here(store: Store, tmp_path: Path) -> AsyncIterator[tuple[Runtime, Runner, str]]:
    """A runtime through which one runner claimed one build: the runtime, the runner and
    the build's id."""
    w = await world(store)
    [runner] = await runners(store, 1)
    async with runtime(store, tmp_path, SchedulingConfig()) as rt:
        with trio.fail_after(BOUND):
            await rt.scheduling.queue(w.build())
            job = await rt.scheduling.claim(runner, 0)
        assert job is not None
        yield rt, runner, job.build.id


async def until(condition: Callable[[], bool]) -> None:
    """Until ``condition()`` holds (the caller bounds the wait)."""
    while not condition():  # noqa: ASYNC110
        await trio.sleep(0.01)
