"""The sqlite driver's dispatch lock: an OS file lock beside the database file.

Every process on the same database file serves the API; the one holding this lock
dispatches every queue, the others retry every second (as MySQL backups do). The holder
writes its pid and host name into the file for ``/queue/{q}/node``.
"""

from __future__ import annotations

import fcntl
import os
import socket

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from fireworq.cluster import ActivationListener, this_process
from fireworq.model import Node

log = Logger()

RETRY_INTERVAL = 1.0


class FileLockActivator:
    def __init__(self, lock_path: str, clock: IReactorTime) -> None:
        self._path = lock_path
        self._clock = clock
        self._listener: ActivationListener | None = None
        self._queues: set[str] = set()
        self._fd: int | None = None
        self._retry = LoopingCall(self._try_lock)
        self._retry.clock = clock

    @property
    def holding(self) -> bool:
        return self._fd is not None

    def start(self, listener: ActivationListener) -> None:
        self._listener = listener
        self._retry.start(RETRY_INTERVAL, now=True).addErrback(
            lambda f: log.failure("Dispatch lock retries stopped", f)
        )

    def _try_lock(self) -> None:
        if self._fd is not None:
            return
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return
        except OSError:
            os.close(fd)
            log.failure("Cannot take the dispatch lock {path}", path=self._path)
            return
        self._fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, ("%d\n%s\n" % (os.getpid(), socket.gethostname())).encode(), 0)
        log.info("This process now dispatches (holds {path})", path=self._path)
        self._retry.stop()
        for queue_name in sorted(self._queues):
            self._notify(queue_name, True)

    def _notify(self, queue_name: str, active: bool) -> None:
        if self._listener is not None:
            self._listener(queue_name, active)

    def watch(self, queue_name: str) -> None:
        self._queues.add(queue_name)
        if self._fd is not None:
            self._notify(queue_name, True)

    def unwatch(self, queue_name: str) -> None:
        self._queues.discard(queue_name)

    def is_active(self, queue_name: str) -> bool:
        return self._fd is not None and queue_name in self._queues

    async def node(self, queue_name: str) -> Node | None:
        if self._fd is not None:
            return this_process()
        return read_holder(self._path)

    def stop(self) -> Deferred[None]:
        if self._retry.running:
            self._retry.stop()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            for queue_name in sorted(self._queues):
                self._notify(queue_name, False)
            os.close(fd)  # releases the lock; a waiting process takes over within a second
        return succeed(None)


def read_holder(path: str) -> Node | None:
    """The process holding the lock at ``path``, or ``None`` when nobody holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            content = os.pread(fd, 4096, 0).decode("utf-8", "replace").split("\n")
            if len(content) >= 2 and content[0].isdigit():
                return Node(id=content[0], host=content[1])
            return None
        return None  # we could lock it: nobody holds it
    finally:
        os.close(fd)
