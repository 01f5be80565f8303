"""Log appends of many builds, committed together.

Each build's LogStream actor commits its own appends one group at a time; with a fleet
of builds logging at once that would be one transaction per build per turn. Instead
every actor hands its group to :class:`LogCommits`, one group-commit actor under the
logs supervisor: while one commit is in flight the groups of every build queue up, and
the next commit takes them all in one transaction (the store does it with a few
set-based statements). Each actor gets its own build's answer back once the lines are
durable and fans them out to its viewers itself, so the order of a build's lines and
the per-build rules (holder and attempt, first sequence wins, the line cap) are kept.

A batch whose commit fails for a reason other than the database being away is retried
group by group, so one build whose rows cannot be written fails only its own appends.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio

from oore.actors import ChildSpec, GroupCommitStatistics, GroupCommitter
from oore.domain.logs import LogWrite
from oore.errors import ServiceUnavailable
from oore.live.logstream import Appended

log = logging.getLogger(__name__)

MAX_BATCH = 2048  # groups (one per build, usually) in one transaction
CAPACITY = 8192  # groups waiting for a commit before actors wait for room

CommitGroups = Callable[[list[tuple[str, tuple[LogWrite, ...]]]], Awaitable[list[Appended]]]


@dataclass(eq=False)
class _Group:
    """One actor's appends of one build, and, once committed, what came of them."""

    build_id: str
    writes: tuple[LogWrite, ...]
    outcome: Appended | Exception | None = None


class LogCommits:
    """The committer shared by every build's stream (start it with :meth:`spec`)."""

    def __init__(
        self, commit: CommitGroups, *, max_batch: int = MAX_BATCH, capacity: int = CAPACITY
    ) -> None:
        self._commit_groups = commit
        self.busy_seconds = 0.0  # spent committing, in all
        self._committer: GroupCommitter[_Group] = GroupCommitter(
            "log-commits", self._commit, max_batch=max_batch, capacity=capacity
        )

    def spec(self) -> ChildSpec[GroupCommitter[_Group]]:
        return self._committer.spec()

    def statistics(self) -> GroupCommitStatistics:
        """Batches and groups committed so far, and the groups waiting."""
        return self._committer.statistics()

    async def commit(self, build_id: str, writes: Sequence[LogWrite]) -> Appended:
        """Commit one build's appends with whatever else is waiting; its answer once
        durable. Raises what its commit raised."""
        group = _Group(build_id, tuple(writes))
        await self._committer.submit_one(group)
        outcome = group.outcome
        if isinstance(outcome, Exception):
            raise outcome
        assert outcome is not None
        return outcome

    async def _commit(self, groups: list[_Group]) -> None:
        began = trio.current_time()
        try:
            await self._commit_all(groups)
        finally:
            self.busy_seconds += trio.current_time() - began

    async def _commit_all(self, groups: list[_Group]) -> None:
        try:
            answers = await self._commit_groups([(g.build_id, g.writes) for g in groups])
        except ServiceUnavailable:
            raise  # the database is away: every group fails alike
        except Exception as exc:
            if len(groups) == 1:
                raise
            log.warning(
                "log commit of %d builds failed (%r); committing each alone", len(groups), exc
            )
            for group in groups:
                try:
                    (group.outcome,) = await self._commit_groups([(group.build_id, group.writes)])
                except Exception as alone:
                    group.outcome = alone
            return
        for group, answer in zip(groups, answers, strict=True):
            group.outcome = answer
