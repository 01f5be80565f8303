"""The supervisor of ``oored --workers N`` with stand-in worker processes (real ones, which
speak the worker's side of the channel and then do one thing), and its restart budget."""

from __future__ import annotations

import logging
import re
import signal
import sys
from pathlib import Path

import pytest
import trio

from oore.config import load_settings
from oore.eventlog import event_of
from oore.workers import RestartPolicy, Restarts, Supervisor, check_connections

# argv[1] says what the stand-in does once started; the supervisor's flags follow.
STAND_IN = """
import signal, socket, sys
behaviour, flags = sys.argv[1], sys.argv[2:]
channel = socket.socket(fileno=int(flags[flags.index("--worker-channel") + 1]))
if behaviour == "fail":
    sys.exit(2)
channel.sendall(b"http://127.0.0.1:1\\n")
if behaviour == "die":
    sys.exit(3)
if behaviour == "stubborn":  # ignores being asked to stop
    signal.pause()
while channel.recv(4096):
    pass
"""

QUICK = RestartPolicy(budget=2, period=60.0, backoff=0.01, backoff_max=0.01)


def supervisor(tmp_path: Path, behaviour: str, policy: RestartPolicy = QUICK) -> Supervisor:
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    settings = load_settings(
        listen="127.0.0.1:0", data_dir=tmp_path, workers=2, shutdown_grace_seconds=60
    )
    return Supervisor(
        settings,
        "127.0.0.1:1",
        "postgresql://unused/",
        policy,
        (sys.executable, str(script), behaviour),
    )


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, object]]:
    """The fields of each ``name`` event logged."""
    found = (event_of(record) for record in caplog.records)
    return [
        fields for event in found if event is not None for fields in [event[1]] if event[0] == name
    ]


async def test_workers_asked_to_stop_end_and_the_supervisor_with_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    workers = supervisor(tmp_path, "serve")
    async with trio.open_nursery() as nursery:

        async def stop_once_serving() -> None:
            await workers.all_serving.wait()
            workers.stop()

        nursery.start_soon(stop_once_serving)
        assert await workers.run() == 0
    stopped = events(caplog, "worker.stopped")
    assert sorted(int(str(r["worker"])) for r in stopped) == [0, 1]
    assert {r["status"] for r in stopped} == {"exit status 0"}
    assert not events(caplog, "worker.died") and workers.failure is None


async def test_a_second_signal_kills_workers_that_do_not_stop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    workers = supervisor(tmp_path, "stubborn")
    send, receive = trio.open_memory_channel[int](2)
    async with trio.open_nursery() as nursery:

        async def signal_twice_once_serving() -> None:
            await workers.all_serving.wait()
            await send.send(signal.SIGTERM)
            await send.send(signal.SIGINT)

        nursery.start_soon(signal_twice_once_serving)
        assert await workers.run(receive) == 0
    assert sorted(int(str(r["worker"])) for r in events(caplog, "worker.killed")) == [0, 1]


async def test_workers_that_keep_dying_exhaust_the_restart_budget(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    workers = supervisor(tmp_path, "die")
    assert await workers.run() == 1
    assert workers.failure is not None
    assert re.fullmatch(r"workers died more than 2 times within 60s; stopping .*", workers.failure)
    # The budget allows two restarts; the death after them stops everything (a restart
    # still pausing then is not made).
    assert len(events(caplog, "worker.restarting")) == 2
    assert len(events(caplog, "worker.started")) in (3, 4)
    died = events(caplog, "worker.died")
    assert len(died) >= 3
    assert {r["status"] for r in died} == {"exit status 3"}


async def test_a_worker_that_cannot_start_stops_everything(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    workers = supervisor(tmp_path, "fail")
    assert await workers.run() == 2
    assert workers.failure is not None and "did not start (exit status 2)" in workers.failure
    assert not events(caplog, "worker.restarting")


def test_restarts_back_off_and_are_bounded_per_period() -> None:
    restarts = Restarts(RestartPolicy(budget=3, period=10.0, backoff=1.0, backoff_max=3.0))
    assert [restarts.allow(t) for t in (0.0, 1.0, 2.0, 3.0)] == [1.0, 2.0, 3.0, None]
    # Once the first restart is a period old, there is room for one more.
    assert restarts.allow(10.0) == 3.0
    assert restarts.allow(10.5) is None


def test_pools_that_may_outgrow_the_server_are_warned_of(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(data_dir=tmp_path, workers=4, database_pool_size=25)
    check_connections(settings, 100)
    assert not events(caplog, "database.connections_short")
    check_connections(settings, 97)
    (short,) = events(caplog, "database.connections_short")
    assert (short["wanted"], short["server_takes"]) == (100, 97)
