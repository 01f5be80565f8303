"""Steps run as real shell commands; cancelling ends the whole process group."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import trio

from oore.domain.builds import StepResult
from oore.domain.pipeline_config import EnvVar, Step
from oore.runner.client import Stream
from oore.runner.executor import Executor, build_environment
from tests.runner.kit import our_zombie, running


class Lines:
    """A log sink that keeps every line and can wait for one."""

    def __init__(self) -> None:
        self.lines: list[tuple[Stream, str]] = []
        self._changed = trio.Event()

    async def __call__(self, stream: Stream, line: str) -> None:
        self.lines.append((stream, line))
        self._changed.set()
        self._changed = trio.Event()

    def of(self, stream: Stream) -> list[str]:
        return [line for s, line in self.lines if s == stream]

    async def wait_for(self, prefix: str) -> str:
        with trio.fail_after(10):
            while True:
                for _, line in self.lines:
                    if line.startswith(prefix):
                        return line
                await self._changed.wait()


async def test_output_is_captured_line_by_line_in_order_per_stream(tmp_path: Path) -> None:
    sink = Lines()
    script = (
        "echo one; echo two >&2; echo three; printf 'bad \\377 byte\\n'; "
        "printf 'crlf\\r\\n'; printf 'no newline'"
    )
    results = await Executor().run([Step("s", script)], cwd=tmp_path, env=os.environ, sink=sink)

    assert sink.of("stdout") == ["one", "three", "bad \ufffd byte", "crlf", "no newline"]
    assert sink.of("stderr") == ["two"]
    [result] = results
    assert (result.name, result.status, result.exit_code) == ("s", "succeeded", 0)
    assert result.started_at <= result.finished_at
    assert result.duration_ms >= 0


async def test_a_failing_step_stops_the_run_and_later_steps_are_skipped(tmp_path: Path) -> None:
    steps = [
        Step("first", "echo first"),
        Step("second", "echo second; exit 3"),
        Step("third", "touch third-ran"),
    ]
    results = await Executor().run(steps, cwd=tmp_path, env=os.environ, sink=Lines())

    assert [(r.name, r.status, r.exit_code) for r in results] == [
        ("first", "succeeded", 0),
        ("second", "failed", 3),
        ("third", "skipped", None),
    ]
    assert not (tmp_path / "third-ran").exists()


async def test_steps_run_in_the_checkout_with_the_build_environment(tmp_path: Path) -> None:
    env = build_environment(
        {"PATH": os.environ["PATH"], "FROM_AGENT": "agent"},
        [EnvVar("GREETING", "hello world"), EnvVar("FROM_AGENT", "pipeline wins")],
        build_id="b-1",
        build_number=7,
        commit_sha="abc123",
        branch=None,
    )
    sink = Lines()
    command = 'pwd; echo "$GREETING|$FROM_AGENT|$OORE_BUILD_ID|$OORE_BUILD_NUMBER"; '
    command += 'echo "$OORE_COMMIT_SHA|$OORE_BRANCH|$CI"'
    await Executor().run([Step("env", command)], cwd=tmp_path, env=env, sink=sink)

    assert sink.of("stdout") == [
        str(tmp_path),
        "hello world|pipeline wins|b-1|7",
        "abc123||true",
    ]


async def test_a_shell_that_cannot_start_fails_the_step(tmp_path: Path) -> None:
    sink = Lines()
    missing = tmp_path / "gone"
    results = await Executor().run(
        [Step("s", "true"), Step("t", "true")], cwd=missing, env=os.environ, sink=sink
    )

    assert [(r.status, r.exit_code) for r in results] == [("failed", 127), ("skipped", None)]
    assert "could not start" in sink.of("stderr")[0]


async def test_cancel_kills_a_group_that_ignores_sigterm_after_the_grace(tmp_path: Path) -> None:
    grace = 0.5
    sink = Lines()
    script = 'trap "" TERM; sleep 300 & echo "child $!"; echo "shell $$"; wait; wait'
    results: list[StepResult] = []
    executor = Executor(grace=grace)

    async with trio.open_nursery() as nursery:

        async def run() -> None:
            await executor.run(
                [Step("stubborn", script), Step("after", "true")],
                cwd=tmp_path,
                env=os.environ,
                sink=sink,
                results=results,
            )

        nursery.start_soon(run)
        child = int((await sink.wait_for("child ")).split()[1])
        shell = int((await sink.wait_for("shell ")).split()[1])
        assert running(child) and running(shell)
        cancelled_at = trio.current_time()
        nursery.cancel_scope.cancel()
    took = trio.current_time() - cancelled_at

    assert took >= grace, "SIGTERM was ignored, so only SIGKILL after the grace ends it"
    assert took < grace + 5
    assert not running(child), "the shell's background child was killed with its group"
    assert not running(shell)
    assert not our_zombie(shell), "the shell was reaped"
    assert [(r.name, r.status, r.exit_code) for r in results] == [
        ("stubborn", "canceled", 137),
        ("after", "skipped", None),
    ]


async def test_cancel_of_a_command_that_obeys_sigterm_does_not_wait_the_grace(
    tmp_path: Path,
) -> None:
    sink = Lines()
    results: list[StepResult] = []
    executor = Executor(grace=60)
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            await executor.run(
                [Step("s", 'sleep 300 & echo "child $!"; wait')],
                cwd=tmp_path,
                env=os.environ,
                sink=sink,
                results=results,
            )

        nursery.start_soon(run)
        child = int((await sink.wait_for("child ")).split()[1])
        cancelled_at = trio.current_time()
        nursery.cancel_scope.cancel()

    assert trio.current_time() - cancelled_at < 10
    assert not running(child)
    assert results[0].status == "canceled"
    assert results[0].exit_code == 143


async def test_processes_a_step_leaves_behind_end_with_the_step(tmp_path: Path) -> None:
    sink = Lines()
    script = 'sleep 300 & echo "child $!"; echo done'
    results = await Executor(grace=2).run(
        [Step("s", script)], cwd=tmp_path, env=os.environ, sink=sink
    )

    child = int(sink.of("stdout")[0].split()[1])
    assert not running(child)
    assert sink.of("stdout")[1] == "done"
    assert results[0].status == "succeeded"


async def test_conditions_continue_on_error_and_step_env(tmp_path: Path) -> None:
    sink = Lines()
    steps = [
        Step("tolerated", "exit 5", continue_on_error=True),
        Step("uses env", 'echo "greeting=$GREETING"', env=(EnvVar("GREETING", "hi"),)),
        Step("cleanup not needed", "echo no", when="failure"),
        Step("breaks", "exit 2"),
        Step("after the failure", "echo no"),
        Step("cleanup", "echo cleaning", when="failure"),
        Step("always", "echo always", when="always"),
    ]
    results = await Executor().run(steps, cwd=tmp_path, env=os.environ, sink=sink)
    assert [(r.name, r.status, r.exit_code) for r in results] == [
        ("tolerated", "failed", 5),
        ("uses env", "succeeded", 0),
        ("cleanup not needed", "skipped", None),
        ("breaks", "failed", 2),
        ("after the failure", "skipped", None),
        ("cleanup", "succeeded", 0),
        ("always", "succeeded", 0),
    ]
    assert sink.of("stdout") == ["greeting=hi", "cleaning", "always"]


async def test_a_step_past_its_timeout_is_ended_and_fails_with_124(tmp_path: Path) -> None:
    sink = Lines()
    steps = [Step("slow", "sleep 300 & wait", timeout=1), Step("next", "echo no")]
    results = await Executor(grace=1).run(steps, cwd=tmp_path, env=os.environ, sink=sink)
    assert [(r.name, r.status, r.exit_code) for r in results] == [
        ("slow", "failed", 124),
        ("next", "skipped", None),
    ]
    assert sink.of("stderr") == ["[oore] step slow timed out after 1s"]


class SlowLines(Lines):
    """A sink that takes its time, as the log batcher does while the server is slow."""

    async def __call__(self, stream: Stream, line: str) -> None:
        if len(self.lines) % 500 == 0:
            await trio.sleep(0.05)
        await super().__call__(stream, line)


async def test_a_slow_sink_gets_every_line_the_step_wrote_whatever_the_drain_time(
    tmp_path: Path,
) -> None:
    # The step ends with about 60 KB still in the pipe; the sink needs longer than the
    # drain time to take it. The drain time bounds reading past the step's own output only.
    sink = SlowLines()
    executor = Executor(drain_timeout=0.05)
    await executor.run([Step("s", "seq 1 20000")], cwd=tmp_path, env=os.environ, sink=sink)

    assert sink.of("stdout") == [str(n) for n in range(1, 20001)]


async def test_a_process_that_left_the_group_holds_the_pipe_for_the_drain_time_only(
    tmp_path: Path,
) -> None:
    sink = Lines()
    executor = Executor(drain_timeout=0.2)
    script = "setsid sh -c 'echo orphan $$; exec sleep 300' & echo started; sleep 0.2"
    try:
        with trio.fail_after(10):
            [result] = await executor.run(
                [Step("s", script)], cwd=tmp_path, env=os.environ, sink=sink
            )
    finally:
        orphan = await sink.wait_for("orphan ")
        os.kill(int(orphan.split()[1]), signal.SIGKILL)

    assert result.status == "succeeded"
    assert sorted(sink.of("stdout")) == sorted(["started", orphan])
