"""The runner agent: registers once, heartbeats, claims builds and runs them here.

Tasks, all in one nursery owned by :meth:`Agent.run`:

* heartbeat: ``online`` (``busy`` while every slot is taken) every ``heartbeat_interval``
  over HTTP; over the runner channel, whose frames and pings keep the runner's lease (the
  channel pings every ``heartbeat_interval``, or a quarter of the lease once a claim
  tells it), only when the status changes and otherwise at most every
  :data:`CHANNEL_HEARTBEAT_INTERVAL` (half the lease if that is shorter);
* claimer: with a free slot, long-polls a claim and starts the build in its own task;
* one task per running build (:class:`~oore.runner.job.JobRunner`).

Network and 5xx failures are retried with backoff, so the agent outlives a daemon
restart. Given several URLs of one installation, a call that gets no answer moves the
client on to the next (oore/runner/servers.py): the retry, and every call after it, goes
there, while running builds go on. A 401 means the runner's token is gone and ends the agent with
:class:`AgentError`, as does any other refusal of a heartbeat or claim. :meth:`Agent.stop`
stops claiming, cancels the running builds (their processes get SIGTERM, the grace period,
then SIGKILL), reports them failed, heartbeats ``offline`` and returns.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import functools
import json
import math
import os
import platform
import shutil
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

import oore
from oore.runner.channel import ChannelRunnerClient
from oore.runner.client import (
    PROTOCOL_VERSION,
    Job,
    RunnerClient,
    RunnerCredentials,
    RunnerError,
    RunnerStatus,
    ServerError,
)
from oore.runner.executor import DEFAULT_GRACE, Executor
from oore.runner.job import JOB_STATE_WAIT, JobRunner, Outcome, TokenRejected
from oore.runner.retry import with_retries
from oore.runner.servers import Servers

STATE_FILE = "runner.json"
LOCK_FILE = "runner.lock"
BUILDS_DIR = "builds"
HEARTBEAT_INTERVAL = 10.0
MIN_HEARTBEAT_INTERVAL = 0.5
# Over an open channel a heartbeat carries a status change; without one, it is repeated
# this often (or at half the lease, when that is shorter: a server whose channel renews
# leases only on frames still hears from the runner in time).
CHANNEL_HEARTBEAT_INTERVAL = 60.0
CLAIM_WAIT = 30
IDLE_PAUSE = 5.0
GOODBYE_DEADLINE = 5.0

Say = Callable[[str], None]


class AgentError(Exception):
    """The agent cannot go on; the message tells the operator what to do."""


def say_on_terminal(message: str) -> None:
    """One line per event, with the local time."""
    now = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"{now} {message}", flush=True)


@dataclass(frozen=True)
class AgentConfig:
    work_dir: Path
    name: str = field(default_factory=socket.gethostname)
    labels: tuple[str, ...] = ()
    concurrency: int = 1
    grace: float = DEFAULT_GRACE
    heartbeat_interval: float = HEARTBEAT_INTERVAL
    claim_wait: int = CLAIM_WAIT
    job_state_wait: int = JOB_STATE_WAIT


@dataclass(frozen=True)
class AgentStatistics:
    running: int
    claimed: int
    outcomes: Mapping[str, int]


def capabilities(concurrency: int) -> dict[str, Any]:
    """What the runner tells the server about this machine."""
    return {
        "os": platform.system().lower(),
        "os_version": platform.release(),
        "arch": platform.machine(),
        "version": oore.__version__,
        "protocol_version": PROTOCOL_VERSION,
        "agent": "oore-runner",
        "concurrency": concurrency,
    }


# -- the runner's identity on disk ----------------------------------------------------------


def load_credentials(work_dir: Path, server_urls: str | Sequence[str]) -> RunnerCredentials | None:
    """The id and token saved for the installation at ``server_urls`` (under any of its
    URLs: a runner registered through one is known to all), or None. Blocking I/O."""
    urls = {
        url.rstrip("/") for url in ([server_urls] if isinstance(server_urls, str) else server_urls)
    }
    path = work_dir / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise AgentError(f"cannot read {path}: {exc}; remove it to register again") from exc
    if not isinstance(data, dict) or not all(
        isinstance(data.get(key), str) for key in ("server_url", "runner_id", "token")
    ):
        raise AgentError(f"{path} is not a runner identity; remove it to register again")
    if data["server_url"].rstrip("/") not in urls:
        return None
    return RunnerCredentials(data["runner_id"], data["token"])


def save_credentials(
    work_dir: Path, server_url: str, credentials: RunnerCredentials, name: str
) -> Path:
    """Write ``runner.json`` readable by this user only (0600), atomically. Blocking I/O."""
    path = work_dir / STATE_FILE
    partial = path.with_name(f".{STATE_FILE}.{os.getpid()}")
    body = {
        "server_url": server_url.rstrip("/"),
        "runner_id": credentials.runner_id,
        "token": credentials.token,
        "name": name,
    }
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(body, file, indent=2)
        file.write("\n")
    os.chmod(partial, 0o600)
    os.replace(partial, path)
    return path


@contextlib.contextmanager
def lock_work_dir(work_dir: Path) -> Iterator[None]:
    """Hold ``<work_dir>/runner.lock``: one agent per work dir (the kernel drops it if we die)."""
    work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(work_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AgentError(f"another oore runner is using {work_dir}") from None
        yield
    finally:
        os.close(fd)


def _prepare_work_dir(work_dir: Path) -> None:
    """Drop the checkouts a previous run left behind."""
    shutil.rmtree(work_dir / BUILDS_DIR, ignore_errors=True)
    (work_dir / BUILDS_DIR).mkdir(mode=0o700)


# -- the agent ------------------------------------------------------------------------------


class Agent:
    """Claims and runs builds for the server ``client`` talks to.

    ``credential`` (a user session/API token or an enrollment token) is used to register
    when ``<work_dir>/runner.json`` holds no runner token for this installation (kept
    under its first URL, valid through all of them). A runner's own
    id and token (from ``POST /v1/runners/register``) are used as they are, checked with a
    heartbeat, and saved in ``runner.json`` for later starts.
    """

    def __init__(
        self,
        client: RunnerClient,
        config: AgentConfig,
        *,
        credential: str | RunnerCredentials | None = None,
        say: Say = say_on_terminal,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        if not 1 <= config.concurrency <= 100:
            raise ValueError("concurrency must be 1..100")
        self._client = client
        self._config = config
        self._credential = credential
        self._say = say
        self._jobs = JobRunner(
            client,
            builds_dir=config.work_dir / BUILDS_DIR,
            executor=Executor(grace=config.grace),
            say=say,
            base_env=dict(os.environ if base_env is None else base_env),
            job_state_wait=config.job_state_wait,
            labels=config.labels,
        )
        self._scope: trio.CancelScope | None = None
        self._stopping = False
        self._fatal: AgentError | None = None
        self._running = 0
        self._claimed = 0
        self._outcomes: dict[str, int] = {}
        self._beat_every = config.heartbeat_interval
        self._beat_sooner = trio.Event()
        self._lease: float | None = None
        client.keep_alive(config.heartbeat_interval)

    def statistics(self) -> AgentStatistics:
        return AgentStatistics(self._running, self._claimed, dict(self._outcomes))

    def stop(self) -> None:
        """Stop claiming and cancel running builds; :meth:`run` then returns."""
        self._stopping = True
        if self._scope is not None:
            self._scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Register if needed, then claim and run builds until :meth:`stop`.

        Reports started once the runner has its identity. Raises AgentError when the
        server refuses the runner (token gone, protocol mismatch, registration refused).
        """
        with lock_work_dir(self._config.work_dir), trio.CancelScope() as self._scope:
            if self._stopping:
                self._scope.cancel()
            await trio.to_thread.run_sync(_prepare_work_dir, self._config.work_dir)
            await self._identify()
            task_status.started()
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._guarded, self._heartbeats)
                    nursery.start_soon(self._guarded, self._claims, nursery)
            finally:
                with (
                    trio.CancelScope(shield=True),
                    trio.move_on_after(GOODBYE_DEADLINE),
                    contextlib.suppress(RunnerError),
                ):
                    await self._client.heartbeat("offline")
        if self._fatal is not None:
            raise self._fatal
        self._say("runner stopped")

    async def _identify(self) -> None:
        config = self._config
        server = self._client.servers.home
        credential = self._credential
        if isinstance(credential, RunnerCredentials):
            await self._adopt(credential)
            return
        saved = await trio.to_thread.run_sync(
            load_credentials, config.work_dir, self._client.servers.urls
        )
        if saved is not None:
            self._client.credentials = saved
            self._say(f"runner {saved.runner_id} of {server} (from {config.work_dir / STATE_FILE})")
            return
        if credential is None:
            raise AgentError(
                f"no runner token for {server} in {config.work_dir / STATE_FILE}; to register "
                "this machine give a user session or API token allowed to register runners "
                "(OORE_RUNNER_TOKEN, --token-file or --ask-token) or an enrollment token "
                "(OORE_RUNNER_ENROLLMENT_TOKEN, --enrollment-token-file or "
                "--ask-enrollment-token)"
            )
        try:
            registration = await with_retries(
                lambda: self._client.register(
                    config.name,
                    config.labels,
                    config.concurrency,
                    capabilities(config.concurrency),
                    credential,
                ),
                what="registration",
                say=self._say,
            )
        except ServerError as exc:
            raise AgentError(f"the server refused to register this runner: {exc}") from exc
        path = await trio.to_thread.run_sync(
            save_credentials, config.work_dir, server, registration.credentials, config.name
        )
        self._say(
            f"registered as runner {registration.credentials.runner_id} "
            f"({config.name!r}); identity saved in {path}"
        )

    async def _adopt(self, credentials: RunnerCredentials) -> None:
        """Run as a runner registered elsewhere (over the API), once the server agrees."""
        config = self._config
        self._client.credentials = credentials
        try:
            await with_retries(
                functools.partial(
                    self._client.heartbeat, "online", capabilities(config.concurrency)
                ),
                what="heartbeat",
                say=self._say,
            )
        except ServerError as exc:
            raise AgentError(
                f"the server does not accept this token for runner {credentials.runner_id}: {exc}"
            ) from exc
        path = await trio.to_thread.run_sync(
            save_credentials, config.work_dir, self._client.servers.home, credentials, config.name
        )
        self._say(f"runner {credentials.runner_id} (token given); identity saved in {path}")

    async def _guarded(self, task: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run a task; a fatal error stops the whole agent and is raised by :meth:`run`."""
        try:
            await task(*args)
        except AgentError as exc:
            self._fail(exc)

    def _fail(self, exc: AgentError) -> None:
        if self._fatal is None:
            self._fatal = exc
        self.stop()

    def _refused(self, what: str, exc: ServerError) -> AgentError:
        if exc.status == 401:
            return AgentError(
                f"the server no longer accepts this runner's token ({exc.code}): the runner "
                f"was probably deleted; remove {self._config.work_dir / STATE_FILE} and "
                "register again with a user session or an enrollment token"
            )
        return AgentError(f"the server refused the {what}: {exc}")

    def _status(self) -> RunnerStatus:
        return "busy" if self._running >= self._config.concurrency else "online"

    def _status_may_have_changed(self) -> None:
        """Over a channel a heartbeat says a change at once; over HTTP the next one does."""
        if self._client.holds_a_connection:
            self._beat_sooner.set()

    def _quiet_interval(self) -> float:
        """How often a heartbeat repeats an unchanged status over an open channel."""
        if self._lease is None:
            return CHANNEL_HEARTBEAT_INTERVAL
        return max(MIN_HEARTBEAT_INTERVAL, min(CHANNEL_HEARTBEAT_INTERVAL, self._lease / 2))

    async def _heartbeats(self) -> None:
        caps = capabilities(self._config.concurrency)
        sent: RunnerStatus | None = None
        sent_at = -math.inf
        while True:
            status = self._status()
            quiet = self._client.holds_a_connection
            every = self._quiet_interval() if quiet else self._beat_every
            if not quiet or status != sent or trio.current_time() - sent_at >= every:
                try:
                    await with_retries(
                        functools.partial(self._client.heartbeat, status, caps),
                        what="heartbeat",
                        say=self._say,
                    )
                except ServerError as exc:
                    raise self._refused("heartbeat", exc) from exc
                sent, sent_at = status, trio.current_time()
            wait = max(0.0, sent_at + every - trio.current_time()) if quiet else every
            with trio.move_on_after(wait):
                await self._beat_sooner.wait()
            self._beat_sooner = trio.Event()

    def _learn_lease(self, job: Job) -> None:
        """Show the server this runner is alive at least four times per lease, so a short
        server lease never lapses: pings over a channel, heartbeats over HTTP."""
        lease = job.lease_expires_at - time.time()
        if lease <= 0:
            return  # a server that does not say (or a clock far off): keep the interval
        self._lease = lease
        every = max(MIN_HEARTBEAT_INTERVAL, lease / 4)
        self._client.keep_alive(min(every, self._config.heartbeat_interval))
        if every < self._beat_every:
            self._beat_every = every
            self._beat_sooner.set()

    async def _claims(self, nursery: trio.Nursery) -> None:
        slots = trio.Semaphore(self._config.concurrency)
        self._say(f"waiting for builds ({self._config.concurrency} at a time)")
        while True:
            await slots.acquire()
            asked = trio.current_time()
            try:
                job = await with_retries(
                    lambda: self._client.claim(self._config.claim_wait), what="claim", say=self._say
                )
            except ServerError as exc:
                slots.release()
                raise self._refused("claim", exc) from exc
            if job is None:
                slots.release()
                if trio.current_time() - asked < self._config.claim_wait / 2:
                    # The server answered at once (it does not long-poll): do not spin.
                    await trio.sleep(IDLE_PAUSE)
                continue
            self._claimed += 1
            self._learn_lease(job)
            nursery.start_soon(self._run_job, job, slots)

    async def _run_job(self, job: Job, slots: trio.Semaphore) -> None:
        self._running += 1
        self._status_may_have_changed()
        try:
            outcome = await self._jobs.run(job)
            self._outcomes[outcome] = self._outcomes.get(outcome, 0) + 1
        except Exception as exc:
            if _contains(exc, TokenRejected):
                self._fail(
                    self._refused("build reports", ServerError(401, "invalid_token", str(exc)))
                )
            else:
                self._outcomes[Outcome.FAILED] = self._outcomes.get(Outcome.FAILED, 0) + 1
                self._say(f"build #{job.build_number}: runner error: {exc!r}")
        finally:
            self._running -= 1
            self._status_may_have_changed()
            slots.release()


def _contains(exc: BaseException, kind: type[BaseException]) -> bool:
    if isinstance(exc, kind):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_contains(inner, kind) for inner in exc.exceptions)
    return False


# -- the command ----------------------------------------------------------------------------


async def serve(
    server_urls: str | Sequence[str],
    config: AgentConfig,
    *,
    credential: str | RunnerCredentials | None = None,
    say: Say = say_on_terminal,
) -> None:
    """``oore runner``: run the agent until SIGINT or SIGTERM; raises AgentError.

    ``server_urls``: one installation's URLs, the first one tried first. The runner
    loop's calls go over the runner channel when the server offers one.
    """
    urls = [server_urls] if isinstance(server_urls, str) else server_urls
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        client = ChannelRunnerClient(Servers(urls, say=say), say=say)
        async with client:
            agent = Agent(client, config, credential=credential, say=say)
            fatal: AgentError | None = None
            async with trio.open_nursery() as nursery:
                # The runner channel's connection lives here, so the agent's last call
                # (its offline heartbeat) still has it.
                await nursery.start(client.run_channel)

                async def stop_on_signal() -> None:
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        say(f"{name}: stopping (no new builds; running builds are cancelled)")
                        agent.stop()

                nursery.start_soon(stop_on_signal)
                try:
                    await agent.run()
                except AgentError as exc:
                    fatal = exc
                nursery.cancel_scope.cancel()
            if fatal is not None:
                raise fatal


def parse_labels(text: str | None) -> tuple[str, ...]:
    """``a,b`` → ``("a", "b")``, blanks dropped."""
    if not text:
        return ()
    return tuple(label.strip() for label in text.split(",") if label.strip())
