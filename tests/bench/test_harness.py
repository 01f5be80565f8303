"""The bench harness's view of a daemon with workers, against a real ``oored --workers 2``."""

from __future__ import annotations

from pathlib import Path

from bench.harness import started_daemon, worker_pids


def test_worker_pids_come_in_the_order_of_their_slots() -> None:
    # The supervisor starts its workers together, so their pids may come in any order;
    # a figure named for worker 0 (the runners' lane) must be worker 0's.
    with started_daemon(workers=2) as server:
        pids = worker_pids(server)
        slots = []
        for pid in pids:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            slots.append(args[args.index(b"--worker-slot") + 1])
    assert slots == [b"0", b"1"]
