"""Lanes: with ``oored --workers N`` (N ≥ 2) the runners' connections get a worker of their own.

Why: in one process the runners wait behind everything else the process does. Under 200
API readers (about 1,000 reads a second) a claim's p99 went from about 10 ms to 25 to 60 ms:
it waited for the event loop behind the readers' answers, for the interpreter lock, and
for full garbage collections of a heap the kept answers make big. None of that is the
runners' own work, and a second process does not share it.

How: every worker still accepts from the shared port (SO_REUSEPORT: the kernel picks the
worker). The dispatch reads a connection's first request head as always
(:func:`~oore.http.lean.routes.dispatch`); the connection's lane is the lane of the lean
route that takes that request (the runner channel and a build's live log: ``runners``, so
a line goes from its runner to its viewers within one process), else ``api``. Slot 0 is
the runners' lane; the other slots share the API in turn. A connection accepted by a
worker of another lane is handed to a worker of its own: its socket passed over a Unix
socket (SCM_RIGHTS) with the bytes already read and the time left for its head, and the
receiving worker dispatches it as if it had accepted it (its connection cap, its routes).
The handing worker closes its copy; the client sees one connection throughout.

- A worker that cannot reach the lane's worker (restarting, or slow to take it) serves
  the connection itself: lanes place connections, they never refuse one.
- The Unix sockets are in Linux's abstract namespace, named by the supervisor (no file
  to leave behind); a worker takes connections only from a process of its own user.
- A later request on a kept-alive connection stays where the connection is: every worker
  serves every route.
"""

from __future__ import annotations

import array
import os
import socket
import struct
from collections.abc import Callable
from contextlib import suppress

import trio

from oore.http.lean.head import MAX_HEAD, RECEIVE_BYTES

RUNNERS = "runners"
API = "api"
RUNNERS_SLOT = 0
# The API workers' niceness: when the CPUs are all busy, the runners' worker is run first.
API_NICENESS = 10
# What goes with a connection: the seconds left for its head, then the bytes read so far
# (at most a head and one read after it; a connection that read more is served where it is).
_DEADLINE = struct.Struct("!d")
MAX_HANDED = MAX_HEAD + RECEIVE_BYTES
# How long a hand-over may wait for the other worker before the connection is served here.
HAND_SECONDS = 1.0
# After a failed connect to a worker, connections are served here this long before trying again.
RETRY_SECONDS = 1.0
_FD_SPACE = socket.CMSG_SPACE(array.array("i").itemsize)
_UCRED = struct.Struct("3i")  # pid, uid, gid


def lane_address(prefix: str, slot: int) -> str:
    """The abstract Unix socket on which worker ``slot`` takes connections."""
    return f"\0{prefix}-{slot}"


def same_user(sock: trio.socket.SocketType) -> bool:
    """Whether the process at the other end of a Unix socket runs as this one's user."""
    _pid, uid, _gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    return bool(uid == os.getuid())


class _Peer:
    """This worker's Unix socket to another worker, opened when first needed and again
    after it broke."""

    def __init__(self, address: str, retry_seconds: float) -> None:
        self._address = address
        self._retry_seconds = retry_seconds
        self._sock: trio.socket.SocketType | None = None
        self._retry_at = 0.0
        self._lock = trio.Lock()

    async def send(self, fd: int, message: bytes) -> bool:
        """Pass ``fd`` with ``message``; False when the worker could not take it."""
        async with self._lock:
            with trio.move_on_after(HAND_SECONDS):
                # A socket opened earlier may have broken since (the worker restarted):
                # then one new one is tried at once.
                for _ in range(2):
                    fresh = self._sock is None
                    sock = await self._open()
                    if sock is None:
                        return False
                    try:
                        await sock.sendmsg(
                            [message],
                            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))],
                        )
                        return True
                    except OSError:
                        self.close()
                        if fresh:
                            break
            self.close()
            self._retry_at = trio.current_time() + self._retry_seconds
            return False

    async def _open(self) -> trio.socket.SocketType | None:
        if self._sock is not None:
            return self._sock
        if trio.current_time() < self._retry_at:
            return None
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            await sock.connect(self._address)
        except OSError:
            sock.close()
            self._retry_at = trio.current_time() + self._retry_seconds
            return None
        self._sock = sock
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


Admit = Callable[[trio.SocketStream, bytes, float], None]


class Lanes:
    """This worker's place among the lanes: which connections it hands to which worker,
    and the socket on which it takes connections from the others."""

    def __init__(
        self, prefix: str, slot: int, workers: int, *, retry_seconds: float = RETRY_SECONDS
    ) -> None:
        if workers < 2 or not 0 <= slot < workers:
            raise ValueError(f"no lanes for slot {slot} of {workers} workers")
        self.prefix = prefix
        self.slot = slot
        self.workers = workers
        self._peers = {
            other: _Peer(lane_address(prefix, other), retry_seconds)
            for other in range(workers)
            if other != slot
        }
        self._turn = 0
        self.handed = 0  # connections handed to another worker
        self.taken = 0  # connections taken from another worker
        self.kept = 0  # connections served here because their worker could not take them

    def home(self, lane: str) -> int:
        """The worker that serves a new connection of ``lane``."""
        if lane == RUNNERS:
            return RUNNERS_SLOT
        if self.slot != RUNNERS_SLOT:
            return self.slot
        self._turn = self._turn % (self.workers - 1) + 1
        return self._turn

    async def hand_over(
        self, lane: str, stream: trio.SocketStream, received: bytes, head_by: float
    ) -> bool:
        """Hand ``stream`` to the worker of ``lane`` when it is not this one; True when it
        took it (the caller then closes its own copy of the socket)."""
        home = self.home(lane)
        if home == self.slot or len(received) > MAX_HANDED:
            return False
        left = max(0.0, head_by - trio.current_time())
        if await self._peers[home].send(stream.socket.fileno(), _DEADLINE.pack(left) + received):
            self.handed += 1
            return True
        self.kept += 1
        return False

    async def take(self, admit: Admit, *, task_status: trio.TaskStatus[None]) -> None:
        """Take connections from the other workers until cancelled: each is given to
        ``admit`` with the bytes read from it and the time by which its head must be whole."""
        listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with listener:
            await listener.bind(lane_address(self.prefix, self.slot))
            listener.listen(self.workers)
            task_status.started()
            async with trio.open_nursery() as peers:
                while True:
                    peer, _ = await listener.accept()
                    if same_user(peer):
                        peers.start_soon(self._take_from, peer, admit)
                    else:
                        peer.close()

    async def _take_from(self, peer: trio.socket.SocketType, admit: Admit) -> None:
        with peer:
            while True:
                try:
                    message, ancillary, flags, _ = await peer.recvmsg(
                        _DEADLINE.size + MAX_HANDED + 1, _FD_SPACE
                    )
                except OSError:
                    return
                fds = array.array("i")
                for level, kind, data in ancillary:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
                if not message and not fds:
                    return  # the other worker closed its end
                stream = None
                truncated = flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC)
                if fds and not truncated and len(message) >= _DEADLINE.size:
                    stream = _tcp_stream(fds[0])
                for extra in fds[1 if stream is not None else 0 :]:
                    _close_fd(extra)
                if stream is None:
                    continue
                (left,) = _DEADLINE.unpack_from(message)
                self.taken += 1
                admit(stream, message[_DEADLINE.size :], trio.current_time() + left)

    def close(self) -> None:
        for peer in self._peers.values():
            peer.close()


def _tcp_stream(fd: int) -> trio.SocketStream | None:
    """The TCP connection ``fd`` as a stream (None, and closed, when it is not one)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        _close_fd(fd)
        return None
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        sock.close()
        return None
    return trio.SocketStream(trio.socket.from_stdlib_socket(sock))


def _close_fd(fd: int) -> None:
    with suppress(OSError):
        socket.close(fd)
