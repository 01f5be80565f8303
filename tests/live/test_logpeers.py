"""Live logs across daemons: two runtimes on one database, as two daemons would be.

The runner appends through one daemon while viewers watch through the other; every
viewer must get every line of the attempt, in order, exactly once, then the end.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from oore.domain.builds import Build, BuildStatus
from oore.domain.logs import LogLine
from oore.domain.runners import Runner
from oore.domain.tokens import hash_token, new_token
from oore.domain.users import USER_SESSION_TTL, Role, UserStatus
from oore.http.app import create_app
from oore.live.logpeers import LogPeers
from oore.runtime import Runtime, open_runtime
from oore.scheduling import SchedulingConfig
from oore.services.artifact_storage import ArtifactsConfig
from oore.services.logs import LogConfig
from oore.store import Store, open_store
from tests.http.conftest import Api
from tests.http.test_metrics import scrape, value
from tests.scheduling.kit import BOUND, CLOCK, runners, world

LOGS = LogConfig(check_every=0.2, keep_alive=5.0)


@dataclass
class Seen:
    """What one viewer's stream carried, parsed."""

    lines: list[tuple[int, int]] = field(default_factory=list)  # (attempt, sequence)
    attempts: list[int] = field(default_factory=list)  # ``event: attempt`` seen
    done: str | None = None
    rest: str = ""

    @property
    def sequences(self) -> list[int]:
        return [sequence for _, sequence in self.lines]

    def feed(self, chunk: bytes) -> None:
        self.rest += chunk.decode()
        *blocks, self.rest = self.rest.split("\n\n")
        for block in blocks:
            fields = dict(line.partition(": ")[::2] for line in block.split("\n"))
            if fields.get("event") == "log":
                attempt, _, sequence = fields["id"].rpartition(":")
                self.lines.append((int(attempt or 1), int(sequence)))
            elif fields.get("event") == "attempt":
                self.attempts.append(json.loads(fields["data"])["attempt"])
            elif fields.get("event") == "done":
                self.done = fields["data"]


@dataclass
class Daemons:
    a: Runtime
    b: Runtime
    runner: Runner
    build: Build
    token: str
    store_b: Store
    spare: Runner  # a second runner, idle until a test has it claim the build

    async def append(
        self, through: Runtime, sequences: range, *, by: Runner | None = None, attempt: int = 1
    ) -> None:
        lines = [LogLine(seq, f"line {seq}", "stdout") for seq in sequences]
        runner = by or self.runner
        appended = await through.logs.append(runner, self.build.id, lines, attempt=attempt)
        assert appended == len(lines)

    async def finish(self, through: Runtime, *, by: Runner | None = None) -> None:
        build = await through.scheduling.store.builds.get(self.build.id)
        assert build is not None
        runner = by or self.runner
        await through.scheduling.report(runner.id, build, BuildStatus.SUCCEEDED, exit_code=0)

    async def watch(
        self,
        on: Runtime,
        seen: Seen,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        stream = await on.logs.open_stream(
            self.build.id,
            query_token=None,
            authorization=f"Bearer {self.token}",
            last_event_id=None,
        )
        task_status.started()
        async for chunk in stream:
            seen.feed(chunk)


def peers(runtime: Runtime) -> LogPeers:
    found = runtime.logs.streams.peers
    assert isinstance(found, LogPeers)
    return found


@asynccontextmanager
async def deaf(listener: Runtime, speaker: Runtime) -> AsyncIterator[None]:
    """``listener`` hears none of ``speaker``'s notices meanwhile (it takes them for its
    own), as when they are lost: only its fallback poll finds what changed."""
    own = listener.notices.sender
    listener.notices.sender = speaker.notices.sender
    try:
        yield
    finally:
        listener.notices.sender = own


async def until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110
        await trio.sleep(0.01)


@asynccontextmanager
async def two_daemons(
    database_url: str, tmp_path: Path, config: SchedulingConfig | None = None
) -> AsyncIterator[Daemons]:
    config = config or SchedulingConfig()
    async with (
        open_store(database_url, pool_size=4) as store_a,
        open_store(database_url, pool_size=4) as store_b,
    ):
        await store_a.instance.ensure(CLOCK.now())
        w = await world(store_a)
        runner, spare = await runners(store_a, 2)
        token = await session(store_a)
        async with (
            open_runtime(
                store_a, CLOCK, config, LOGS, ArtifactsConfig(data_dir=tmp_path / "a")
            ) as a,
            open_runtime(
                store_b, CLOCK, config, LOGS, ArtifactsConfig(data_dir=tmp_path / "b")
            ) as b,
        ):
            with trio.fail_after(BOUND):
                await until(lambda: a.notices.listening and b.notices.listening)
                await a.scheduling.queue(w.build())
                job = await a.scheduling.claim(runner, 0)
                assert job is not None
                build, _ = await a.scheduling.report(runner.id, job.build, BuildStatus.RUNNING)
            yield Daemons(a, b, runner, build, token, store_b, spare)


_emails = itertools.count(1)


async def session(store: Store) -> str:
    now = CLOCK.now()
    user = await store.users.create(
        email=f"viewer{next(_emails)}@example.com",
        role=Role.ADMIN,
        status=UserStatus.ACTIVE,
        subject=None,
        now=now,
    )
    token = new_token()
    await store.users.create_session(hash_token(token), user.id, now, now + USER_SESSION_TTL)
    return token


async def test_lines_appended_on_one_daemon_reach_a_viewer_on_another(
    database_url: str, tmp_path: Path
) -> None:
    async with two_daemons(database_url, tmp_path) as d, trio.open_nursery() as nursery:
        seen = Seen()
        with trio.fail_after(BOUND):
            await nursery.start(d.watch, d.b, seen)
            for first in range(0, 30, 10):
                await d.append(d.a, range(first, first + 10))
            await until(lambda: len(seen.sequences) >= 30)
            assert peers(d.b).counts.heard > 0  # through notices
            async with deaf(d.b, d.a):
                heard = peers(d.b).counts.heard
                await d.append(d.a, range(30, 40))
                await until(lambda: len(seen.sequences) >= 40)
                assert peers(d.b).counts.heard == heard  # the fallback poll found them
            await d.append(d.a, range(40, 50))
            await until(lambda: len(seen.sequences) >= 50)
            await d.finish(d.a)
            await until(lambda: seen.done is not None)
        assert seen.sequences == list(range(50))
        assert seen.done == "build_finished"
        samples = await scrape(Api(create_app(d.b.app_services(d.store_b))))
        assert (value(samples, "oore_log_peer_notices_total") or 0) > 0
        assert (value(samples, "oore_log_peer_lines_total") or 0) > 0


async def test_a_runner_moving_between_daemons_loses_and_repeats_no_line(
    database_url: str, tmp_path: Path
) -> None:
    async with two_daemons(database_url, tmp_path) as d, trio.open_nursery() as nursery:
        on_a, on_b = Seen(), Seen()
        with trio.fail_after(BOUND):
            await nursery.start(d.watch, d.a, on_a)
            await nursery.start(d.watch, d.b, on_b)
            await d.append(d.a, range(10))
            await until(lambda: len(on_b.sequences) >= 10)
            async with deaf(d.b, d.a):
                # B commits lines after ones of A it has not heard of yet.
                await d.append(d.a, range(10, 20))
                await d.append(d.b, range(20, 30))
                await until(lambda: len(on_b.sequences) >= 30)
            await d.append(d.b, range(30, 40))
            await d.append(d.a, range(40, 45))
            await d.append(d.b, range(45, 50))
            await until(lambda: len(on_a.sequences) >= 50 and len(on_b.sequences) >= 50)
            await d.finish(d.b)
            await until(lambda: on_a.done is not None and on_b.done is not None)
        for seen in (on_a, on_b):
            assert seen.sequences == list(range(50))
            assert seen.done == "build_finished"


async def test_a_build_finished_elsewhere_ends_the_stream_after_its_last_lines(
    database_url: str, tmp_path: Path
) -> None:
    async with two_daemons(database_url, tmp_path) as d, trio.open_nursery() as nursery:
        seen = Seen()
        with trio.fail_after(BOUND):
            await nursery.start(d.watch, d.b, seen)
            await d.append(d.a, range(5))
            await until(lambda: len(seen.sequences) >= 5)
            async with deaf(d.b, d.a):  # nothing but the end check tells B of these
                await d.append(d.a, range(5, 25))
                await d.finish(d.a)
                await until(lambda: seen.done is not None)
        assert seen.sequences == list(range(25))
        assert seen.done == "build_finished"


async def test_a_build_requeued_and_run_again_through_another_daemon_moves_its_viewer_on(
    database_url: str, tmp_path: Path
) -> None:
    config = SchedulingConfig(runner_lease=3)
    async with two_daemons(database_url, tmp_path, config) as d, trio.open_nursery() as nursery:
        seen = Seen()

        async def status() -> BuildStatus:
            build = await d.store_b.builds.get(d.build.id)
            assert build is not None
            return build.status

        with trio.fail_after(BOUND):
            await nursery.start(d.watch, d.b, seen)
            await d.append(d.a, range(10))
            await until(lambda: len(seen.lines) >= 10)
            # The runner stops calling: its lease runs out and the build is requeued.
            while await status() is not BuildStatus.QUEUED:  # noqa: ASYNC110
                await trio.sleep(0.05)
            job = await d.a.scheduling.claim(d.spare, 0)
            assert job is not None and job.build.attempt == 2
            await d.a.scheduling.report(d.spare.id, job.build, BuildStatus.RUNNING)
            await d.append(d.a, range(15), by=d.spare, attempt=2)
            await until(lambda: len(seen.lines) >= 25)
            await d.finish(d.a, by=d.spare)
            await until(lambda: seen.done is not None)
        assert seen.lines == [(1, n) for n in range(10)] + [(2, n) for n in range(15)]
        assert seen.attempts == [2]
        assert seen.done == "build_finished"
