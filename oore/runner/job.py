"""One claimed build, from the ``running`` report to the final one (contract §5.6).

Order: report ``running`` → check out → resolve the config → plan the steps → fetch the
signing material (when the claim says the pipeline has some; its files are removed when
the steps end) → run them while a watcher long-polls the build's state → upload the
artifacts (when the steps succeeded) → ship the logs → report ``succeeded`` or ``failed``
with the steps. When the watcher hears that the build is no longer ours (403
``runner_mismatch`` or a status other than assigned/running) the work is cancelled and
nothing more is reported. When the agent itself is cancelled (shutting down), the work is
cancelled and ``failed`` is reported, shielded and bounded.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import trio

from oore.domain.builds import TERMINAL, StepResult
from oore.domain.pipeline_config import EnvVar, Step, plan_steps
from oore.domain.variables import keep_secrets_in_steps
from oore.protocol.runner import Code
from oore.runner.artifacts import ArtifactUploader, UploadFailed
from oore.runner.checkout import CheckoutError, checkout
from oore.runner.client import (
    Job,
    ReportStatus,
    RunnerClient,
    RunnerError,
    ServerError,
    Stream,
    retryable,
)
from oore.runner.executor import Executor, build_environment
from oore.runner.logs import LogBatcher, open_log_batcher
from oore.runner.resolve import UI_SOURCE, ConfigError, ResolvedConfig, resolve_config
from oore.runner.retry import Backoff, with_retries
from oore.runner.signing import SigningFiles, SigningFilesError, android_signing_files
from oore.runner.variables import LogMask, file_secrets, pipeline_env, server_secrets

JOB_STATE_WAIT = 20
FINAL_REPORT_DEADLINE = 10.0
CLEANUP_DEADLINE = 60.0
SIGNING_FETCH_DEADLINE = 60.0
RUNNER_FAILED = 1
ENDED = frozenset(status.value for status in TERMINAL)

T = TypeVar("T")
Say = Callable[[str], None]


class TokenRejected(Exception):
    """The server no longer accepts the runner's token (401): the agent must stop."""


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"  # the server took the build back; nothing reported
    REFUSED = "refused"  # the server refused a report; the build is not ours any more


@dataclass(frozen=True)
class Failure:
    exit_code: int
    message: str


class JobRunner:
    """Runs claimed builds in ``<builds_dir>/<build_id>``, reporting through ``client``."""

    def __init__(
        self,
        client: RunnerClient,
        *,
        builds_dir: Path,
        executor: Executor,
        say: Say,
        base_env: Mapping[str, str],
        job_state_wait: int = JOB_STATE_WAIT,
        log_options: dict[str, Any] | None = None,
        labels: Sequence[str] = (),
    ) -> None:
        self._client = client
        self._builds_dir = builds_dir
        self._executor = executor
        self._say = say
        self._base_env = base_env
        self._job_state_wait = job_state_wait
        self._log_options = log_options or {}
        self._labels = tuple(labels)

    async def run(self, job: Job) -> Outcome:
        """Run one claimed build to its end. Raises TokenRejected when the token is gone."""
        label = f"build #{job.build_number}"
        self._say(f"claimed {label} ({job.build_id})")
        started = trio.current_time()
        try:
            await self._retrying(lambda: self._client.report(job.build_id, "running"), label)
        except ServerError as exc:
            self._say(f"{label}: the server refused the running report ({exc}); dropping it")
            return Outcome.REFUSED
        results: list[StepResult] = []
        stop = _Stop()
        failure: Failure | None = None
        try:
            async with trio.open_nursery() as nursery:
                with trio.CancelScope() as work:
                    nursery.start_soon(self._watch, job, work, stop)
                    failure = await self._work(job, label, results)
                nursery.cancel_scope.cancel()
        except BaseException as exc:
            if stop.reason is None:
                why = (
                    "runner stopped during the build"
                    if _cancellation(exc)
                    else f"runner error: {exc!r}"
                )
                with trio.CancelScope(shield=True), trio.move_on_after(FINAL_REPORT_DEADLINE):
                    self._say(f"{label}: interrupted ({why}); reporting it failed")
                    await self._report_quietly(job.build_id, why, results)
            raise
        if stop.reason is not None:
            self._say(f"{label} stopped: {stop.reason}")
            return Outcome.STOPPED
        status: ReportStatus = "succeeded" if failure is None else "failed"
        tries = 0

        async def report() -> dict[str, Any]:
            nonlocal tries
            tries += 1
            return await self._client.report(
                job.build_id,
                status,
                exit_code=0 if failure is None else failure.exit_code,
                error_message=None if failure is None else failure.message,
                steps=results,
            )

        try:
            await self._retrying(report, label)
        except ServerError as exc:
            # A try whose answer was lost (its server died, or the runner moved on to
            # another) may have been taken: the retry then hears the build ended so.
            if tries == 1 or not _ended_as(exc, status):
                self._say(f"{label}: the server refused the final report ({exc})")
                return Outcome.REFUSED
        took = trio.current_time() - started
        detail = "" if failure is None else f": {failure.message}"
        self._say(f"{label} {status} in {took:.1f}s{detail}")
        return Outcome.SUCCEEDED if failure is None else Outcome.FAILED

    async def _work(self, job: Job, label: str, results: list[StepResult]) -> Failure | None:
        """Everything between the running report and the final one; the logs are shipped."""
        dest = self._builds_dir / job.build_id
        mask = LogMask(server_secrets(job.variables))
        try:
            async with open_log_batcher(
                lambda chunks: self._client.append_logs(job.build_id, mask(chunks), job.attempt),
                hold=mask.held_back,
                **self._log_options,
            ) as logs:
                log = _BuildLog(logs, label, self._say)
                failure = await self._steps(job, dest, log, results, mask)
            if logs.error is not None:
                # Never report a build whose log the server did not take as succeeded.
                self._say(f"{label}: {logs.dropped} log lines not stored: {logs.error}")
                if failure is None:
                    failure = Failure(
                        RUNNER_FAILED,
                        f"the server refused {logs.dropped} lines of the log: {logs.error}",
                    )
            return failure
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_DEADLINE):
                await trio.to_thread.run_sync(shutil.rmtree, dest, True)

    async def _steps(
        self, job: Job, dest: Path, log: _BuildLog, results: list[StepResult], mask: LogMask
    ) -> Failure | None:
        snapshot: dict[str, Any] = job.config_snapshot
        commit = job.commit_sha or _text(snapshot.get("commit_sha"))
        branch = job.branch or _text(snapshot.get("branch"))
        repo_url = _text(snapshot.get("repo_url"))
        if repo_url is None:
            return await log.fail("the build's snapshot has no repo_url")
        await trio.to_thread.run_sync(shutil.rmtree, dest, True)
        await trio.Path(dest.parent).mkdir(parents=True, exist_ok=True)
        await log.info(f"checking out {repo_url} at {commit or branch or 'the default branch'}")
        try:
            tree = await checkout(repo_url, dest, commit_sha=commit, branch=branch)
        except CheckoutError as exc:
            return await log.fail(f"checkout failed: {exc}")
        try:
            resolved = await trio.to_thread.run_sync(resolve_config, dest, snapshot)
        except ConfigError as exc:
            for problem in exc.problems:
                await log.error(f"{exc.source}: {problem}")
            return await log.fail(str(exc))
        mask.add(file_secrets(resolved.config.env))
        await log.info(f"using the configuration from {resolved.source}")
        selected = snapshot.get("selected_platforms")
        try:
            steps = plan_steps(resolved.config, selected if isinstance(selected, list) else None)
        except ValueError as exc:
            return await log.fail(f"cannot plan the steps: {exc}")
        from_file = None if resolved.source == UI_SOURCE else resolved.config.env
        variables, merged = pipeline_env(snapshot, job.variables, from_file)
        for name in merged.kept_secrets:
            await log.info(
                f"{resolved.source} sets {name}, which is a secret of the project or "
                "pipeline: the secret's value is used"
            )
        steps, overridden = keep_secrets_in_steps(steps, merged.secret_names)
        for step_name, name in overridden:
            await log.info(
                f"step {step_name!r} sets {name}, which is a secret of the project or "
                "pipeline: the secret's value is used"
            )
        mask.add(file_secrets(var for step in steps for var in step.env))
        missing = sorted(set(resolved.config.runner_labels) - set(self._labels))
        if missing:
            return await log.fail(
                f"{resolved.source} asks for runner labels this runner lacks: "
                f"{', '.join(missing)} (set them as the pipeline's runner_labels too, so "
                "the server hands its builds only to runners that have them)"
            )
        async with AsyncExitStack() as signing:
            signing_env: dict[str, str] = {}
            if job.android_signing:
                found = await self._android_signing(job, log, signing)
                if isinstance(found, Failure):
                    return found
                mask.add(found.secrets)
                signing_env = found.env
            return await self._run_steps(
                job,
                dest,
                log,
                results,
                resolved,
                steps,
                variables,
                tree.commit_sha,
                branch,
                signing_env,
            )

    async def _android_signing(
        self, job: Job, log: _BuildLog, stack: AsyncExitStack
    ) -> SigningFiles | Failure:
        """Fetch the pipeline's Android signing material and write it where the build can
        read it (removed when ``stack`` closes); a Failure when it cannot be had."""
        label = f"build #{job.build_number}: fetch Android signing"
        try:
            with trio.fail_after(SIGNING_FETCH_DEADLINE):
                materials = await with_retries(
                    lambda: self._client.android_signing(job.build_id, job.signing_token),
                    what=label,
                    say=self._say,
                )
        except trio.TooSlowError:
            return await log.fail(
                f"could not fetch the Android signing material in {SIGNING_FETCH_DEADLINE:g}s"
            )
        except RunnerError as exc:
            return await log.fail(f"could not fetch the Android signing material: {exc}")
        if not materials:
            await log.info("Android signing is no longer enabled for this pipeline")
            return SigningFiles(Path(), {}, ())
        try:
            files = await stack.enter_async_context(android_signing_files(materials))
        except SigningFilesError as exc:
            return await log.fail(f"could not prepare the Android signing material: {exc}")
        names = ", ".join(material.build_type for material in materials)
        await log.info(f"Android signing ({names}): keystores in {files.directory}")
        return files

    async def _run_steps(
        self,
        job: Job,
        dest: Path,
        log: _BuildLog,
        results: list[StepResult],
        resolved: ResolvedConfig,
        steps: list[Step],
        variables: list[EnvVar],
        commit_sha: str,
        branch: str | None,
        signing_env: Mapping[str, str],
    ) -> Failure | None:
        env = build_environment(
            self._base_env,
            variables,
            build_id=job.build_id,
            build_number=job.build_number,
            commit_sha=commit_sha,
            branch=branch,
        )
        env.update(signing_env)
        first = len(results)
        timeout = resolved.config.timeout
        with trio.move_on_after(math.inf if timeout is None else timeout) as bound:
            await self._executor.run(
                steps, cwd=dest, env=env, sink=log.write, observer=log, results=results
            )
        if bound.cancelled_caught:
            return await log.fail(f"the build timed out after {timeout}s ({resolved.source})")
        failed = next(
            (
                result
                for step, result in zip(steps, results[first:], strict=True)
                if result.status == "failed" and not step.continue_on_error
            ),
            None,
        )
        if failed is not None:
            code = failed.exit_code if failed.exit_code is not None else RUNNER_FAILED
            return Failure(code, f"step {failed.name} failed with exit code {code}")
        uploader = ArtifactUploader(self._client, job.build_id, log, self._say)
        try:
            await uploader.upload_all(dest, resolved.config.artifact_patterns)
        except UploadFailed as exc:
            return await log.fail(str(exc))
        return None

    async def _watch(self, job: Job, work: trio.CancelScope, stop: _Stop) -> None:
        """Long-poll the build's state; cancel ``work`` once the build is no longer ours."""
        backoff = Backoff()
        while True:
            try:
                status = await self._client.job_state(job.build_id, self._job_state_wait)
            except ServerError as exc:
                if exc.status == 401:
                    raise TokenRejected(str(exc)) from exc
                if exc.status in (403, 404):
                    stop.reason = _taken_away(exc)
                    break
                if not exc.retryable:
                    raise
                await trio.sleep(backoff.next())
                continue
            except Exception as exc:
                if not retryable(exc):
                    raise
                await trio.sleep(backoff.next())
                continue
            backoff.reset()
            if status not in ("assigned", "running"):
                stop.reason = f"the build is {status}"
                break
        self._say(f"build #{job.build_number}: {stop.reason}; stopping it")
        work.cancel()

    async def _retrying(self, call: Callable[[], Awaitable[T]], label: str) -> T:
        try:
            return await with_retries(call, what=f"{label}: report", say=self._say)
        except ServerError as exc:
            if exc.status == 401:
                raise TokenRejected(str(exc)) from exc
            raise

    async def _report_quietly(
        self, build_id: str, message: str, steps: Sequence[StepResult]
    ) -> None:
        """One attempt at reporting ``failed``; a failure is only told on the terminal."""
        try:
            await self._client.report(
                build_id, "failed", exit_code=RUNNER_FAILED, error_message=message, steps=steps
            )
        except Exception as exc:
            self._say(f"final report not delivered: {exc}")


def _ended_as(refused: ServerError, status: ReportStatus) -> bool:
    """Whether the refusal says the build ended, in this runner's hands, as ``status``."""
    return refused.code == Code.RUNNER_MISMATCH and refused.details == status


def _taken_away(refused: ServerError) -> str:
    """Why the server no longer lets this runner hold the build, in the runner's words."""
    if refused.code == Code.RUNNER_MISMATCH and refused.details in ENDED:
        # The build ended while this runner held it: the server says how ("The build was
        # canceled by ...").
        return refused.message[:1].lower() + refused.message[1:]
    return f"the server took it back ({refused.code}: {refused.message})"


@dataclass
class _Stop:
    """Why the server took the build back; set by the watcher."""

    reason: str | None = None


def _cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is a trio cancellation, alone or grouped."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_cancellation(inner) for inner in exc.exceptions)
    return isinstance(exc, trio.Cancelled)


class _BuildLog:
    """The build's log as the runner writes it, and the terminal's step lines."""

    def __init__(self, logs: LogBatcher, label: str, say: Say) -> None:
        self._logs = logs
        self._label = label
        self._say = say
        self._step: tuple[int, str] | None = None  # the step running now, lines are its

    async def write(self, stream: Stream, line: str) -> None:
        if self._step is None:
            await self._logs.write(stream, line)
        else:
            index, name = self._step
            await self._logs.write(stream, line, step=index, step_name=name)

    async def info(self, message: str) -> None:
        await self.write("stdout", f"[oore] {message}")

    async def error(self, message: str) -> None:
        await self.write("stderr", f"[oore] {message}")

    async def fail(self, message: str) -> Failure:
        await self.error(message)
        self._say(f"{self._label}: {message}")
        return Failure(RUNNER_FAILED, message)

    async def step_started(self, step: Step, index: int) -> None:
        self._step = (index, step.name)
        # A multi-line script is shown by its first line: a log line holds no newline.
        lines = step.command.strip().splitlines() or [""]
        shown = lines[0] + (" …" if len(lines) > 1 else "")
        self._say(f"{self._label}: step {step.name} started: {shown}")
        await self.info(f"step {step.name}: {shown}")

    async def step_finished(self, result: StepResult) -> None:
        took = result.duration_ms / 1000
        what = f"step {result.name} {result.status} (exit {result.exit_code}, {took:.1f}s)"
        self._say(f"{self._label}: {what}")
        await (self.info if result.status == "succeeded" else self.error)(what)
        self._step = None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
