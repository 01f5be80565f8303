"""Run a build's steps as real shell commands, one process group per step.

Each step is ``/bin/sh -c <command>`` in the checkout, leading its own process group
(``start_new_session``). Its stdout and stderr are read concurrently, line by line, and
handed to the sink in the order each stream produced them. When the shell exits, whatever
it left running in its group is ended too (SIGTERM, grace, SIGKILL). A step runs when its
condition holds (:class:`~oore.domain.pipeline_config.Step`): by default only while no
earlier step has failed, so the run stops at the first failure and later steps are
recorded ``skipped``; a ``failure`` or ``always`` step (cleanup) still runs. A failed
``continue_on_error`` step is recorded ``failed`` but does not count as a failure. A step
past its ``timeout`` has its group ended the same way and fails with exit code 124.

Cancellation: cancelling the task that awaits :meth:`Executor.run` ends the running step's
group the same way (shielded, bounded by the grace period), records it ``canceled`` and
the rest ``skipped`` in ``results``, and re-raises.
"""

from __future__ import annotations

import codecs
import fcntl
import math
import subprocess
import termios
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import trio

from oore.domain.builds import StepResult
from oore.domain.pipeline_config import EnvVar, Step
from oore.runner.client import Stream
from oore.runner.processes import end_group, exit_status

DEFAULT_GRACE = 10.0
DRAIN_TIMEOUT = 5.0
MAX_LINE_CHARS = 16384
SPAWN_FAILED = 127
TIMED_OUT = 124  # what coreutils' timeout(1) answers, so scripts read it the same way

LineSink = Callable[[Stream, str], Awaitable[None]]


class StepObserver(Protocol):
    """Told when a step starts and how it finished (not for skipped steps)."""

    async def step_started(self, step: Step, index: int) -> None:
        """``index``: the step's position among the results (what the runner reports)."""
        ...

    async def step_finished(self, result: StepResult) -> None: ...


def build_environment(
    base: Mapping[str, str],
    pipeline_env: Sequence[EnvVar],
    *,
    build_id: str,
    build_number: int,
    commit_sha: str | None,
    branch: str | None,
) -> dict[str, str]:
    """The steps' environment: ``base``, then the pipeline's variables, then oore's own."""
    env = dict(base)
    env.update((var.key, var.value) for var in pipeline_env)
    env.update(
        OORE_BUILD_ID=build_id,
        OORE_BUILD_NUMBER=str(build_number),
        OORE_COMMIT_SHA=commit_sha or "",
        OORE_BRANCH=branch or "",
        CI="true",
    )
    return env


class Executor:
    """Runs steps; ``grace`` is how long a process group gets between SIGTERM and SIGKILL."""

    def __init__(
        self,
        *,
        grace: float = DEFAULT_GRACE,
        shell: str = "/bin/sh",
        drain_timeout: float = DRAIN_TIMEOUT,
    ) -> None:
        self.grace = grace
        self.shell = shell
        self.drain_timeout = drain_timeout

    async def run(
        self,
        steps: Sequence[Step],
        *,
        cwd: Path,
        env: Mapping[str, str],
        sink: LineSink,
        observer: StepObserver | None = None,
        results: list[StepResult] | None = None,
    ) -> list[StepResult]:
        """Run ``steps`` in order until one fails; one result per step, appended to ``results``.

        ``results`` (a fresh list when omitted) is filled as steps end, so a caller that
        cancels the run still sees what happened.
        """
        results = [] if results is None else results
        first = len(results)
        current: tuple[Step, float, float] | None = None
        returncode: list[int] = []
        failed = False
        try:
            for step in steps:
                if not _should_run(step, failed):
                    now = int(time.time())
                    results.append(
                        StepResult(
                            step.name, "skipped", started_at=now, finished_at=now, duration_ms=0
                        )
                    )
                    continue
                current = (step, time.time(), trio.current_time())
                returncode.clear()
                if observer is not None:
                    await observer.step_started(step, len(results))
                step_env = {**env, **{var.key: var.value for var in step.env}}
                code = await self._run_step(step, cwd, step_env, sink, returncode)
                results.append(_result(step, "succeeded" if code == 0 else "failed", current, code))
                current = None
                if observer is not None:
                    await observer.step_finished(results[-1])
                if code != 0 and not step.continue_on_error:
                    failed = True
        finally:
            if current is not None:
                killed = exit_status(returncode[0]) if returncode else None
                results.append(_result(current[0], "canceled", current, killed))
            now = int(time.time())
            results.extend(
                StepResult(step.name, "skipped", started_at=now, finished_at=now, duration_ms=0)
                for step in steps[len(results) - first :]
            )
        return results

    async def _run_step(
        self,
        step: Step,
        cwd: Path,
        env: Mapping[str, str],
        sink: LineSink,
        returncode: list[int],
    ) -> int:
        """Run one step to its end; its exit status (127 when the shell could not start)."""
        try:
            process = await trio.lowlevel.open_process(
                [self.shell, "-c", step.command],
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            await sink("stderr", f"could not start {self.shell} in {cwd}: {exc}")
            return SPAWN_FAILED
        assert process.stdout is not None and process.stderr is not None
        timed_out = False
        pumps = [_Pump(process.stdout, "stdout", sink), _Pump(process.stderr, "stderr", sink)]
        try:
            async with trio.open_nursery() as nursery:
                for pump in pumps:
                    nursery.start_soon(pump.run)
                with trio.move_on_after(math.inf if step.timeout is None else step.timeout):
                    await process.wait()
                if process.returncode is None:
                    await sink("stderr", f"[oore] step {step.name} timed out after {step.timeout}s")
                    timed_out = True
                # The shell is done (or out of time): end what it left so the pipes reach EOF.
                await end_group(process, self.grace)
                # A process that left the group may still hold a pipe: everything the step
                # wrote is read, however slowly the sink takes it, but beyond that the pipe
                # is read for at most ``drain_timeout``.
                for pump in pumps:
                    pump.written_by_now(self.drain_timeout)
        finally:
            with trio.CancelScope(shield=True):
                await end_group(process, self.grace)
                await process.stdout.aclose()
                await process.stderr.aclose()
                if process.returncode is not None:
                    returncode.append(process.returncode)
        assert process.returncode is not None
        return TIMED_OUT if timed_out else exit_status(process.returncode)


def _should_run(step: Step, failed: bool) -> bool:
    """Whether a step's condition holds after the steps before it."""
    match step.when:
        case "always":
            return True
        case "failure":
            return failed
        case _:
            return not failed


def _result(
    step: Step, status: str, started: tuple[Step, float, float], exit_code: int | None
) -> StepResult:
    _, wall, clock = started
    return StepResult(
        name=step.name,
        status=status,
        started_at=int(wall),
        finished_at=int(time.time()),
        duration_ms=int((trio.current_time() - clock) * 1000),
        exit_code=exit_code,
    )


class _Pump:
    """Hands each line of a step's pipe to the sink, decoded as UTF-8, without its newline.

    Reads to the end of the pipe, unless :meth:`written_by_now` was called: then it reads
    what the pipe held at that moment and, after that, stops reading once ``drain``
    seconds have passed. The sink may be slow (it waits while the log batcher is full);
    that time never cuts output the step wrote before it ended.
    """

    def __init__(self, stream: trio.abc.ReceiveStream, name: Stream, sink: LineSink) -> None:
        self._stream = stream
        self._name = name
        self._sink = sink
        self._read = 0
        self._goal: int | None = None
        self._drain = math.inf
        self._stop_at = math.inf
        self._reading = trio.CancelScope()

    def written_by_now(self, drain: float) -> None:
        self._goal = self._read + _buffered(self._stream)
        self._drain = drain
        self._arm()

    def _arm(self) -> None:
        if self._goal is not None and self._read >= self._goal and self._stop_at == math.inf:
            self._stop_at = trio.current_time() + self._drain
            self._reading.deadline = self._stop_at

    async def run(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        while True:
            data: bytes | bytearray = b""
            self._reading = trio.CancelScope(deadline=self._stop_at)
            with self._reading:
                data = await self._stream.receive_some()
            if not data:
                break
            self._read += len(data)
            self._arm()
            pending += decoder.decode(data)
            *lines, pending = pending.split("\n")
            for line in lines:
                await self._sink(self._name, line.removesuffix("\r"))
            while len(pending) > MAX_LINE_CHARS:
                await self._sink(self._name, pending[:MAX_LINE_CHARS])
                pending = pending[MAX_LINE_CHARS:]
        pending += decoder.decode(b"", final=True)
        if pending:
            await self._sink(self._name, pending.removesuffix("\r"))


def _buffered(stream: trio.abc.ReceiveStream) -> int:
    """Bytes waiting in the pipe behind ``stream`` (0 when it cannot tell, or is closed)."""
    fileno = getattr(stream, "fileno", None)
    if fileno is None:
        return 0
    try:
        answer = fcntl.ioctl(fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (OSError, ValueError, trio.ClosedResourceError):
        return 0
    return int.from_bytes(answer, "little", signed=True)
