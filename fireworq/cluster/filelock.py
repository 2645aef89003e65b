"""The sqlite driver's dispatch lock: an OS file lock beside the database file.

Every process on the same database file serves the API; the one holding this lock
dispatches every queue, the others try again at every check (each second), as MySQL backups
do. The holder writes its pid and host name into the file for ``/queue/{q}/node``. A lock
file that cannot be opened (a directory, no permission) is reported in the error log and
tried again at every check: the process dispatches as soon as the problem is fixed.
"""

from __future__ import annotations

import fcntl
import os
import socket
from typing import Callable, Collection, Mapping

from twisted.logger import Logger

from fireworq.cluster import this_process
from fireworq.model import InFlight, Node
from fireworq.storage import JobStore

log = Logger()

#: ``os.open``'s shape; tests pass one that fails.
Opener = Callable[[str, int, int], int]


class FileLock:
    """The ``LockDriver`` of the sqlite driver: one lock for every queue."""

    def __init__(self, path: str, store: JobStore, opener: Opener = os.open) -> None:
        self._path = path
        self._store = store
        self._open = opener
        self._fd: int | None = None
        self._reported: str | None = None  # the last failure logged, logged once

    @property
    def holding(self) -> bool:
        return self._fd is not None

    async def check(self, queues: Mapping[str, str]) -> set[str]:
        if self._fd is None:
            self._try_lock()
        return set(queues) if self._fd is not None else set()

    def _try_lock(self) -> None:
        try:
            fd = self._open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            self._report(e)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # another process dispatches
            return
        except OSError as e:
            os.close(fd)
            self._report(e)
            return
        self._fd = fd
        self._reported = None
        os.ftruncate(fd, 0)
        os.pwrite(fd, ("%d\n%s\n" % (os.getpid(), socket.gethostname())).encode(), 0)
        log.info("This process now dispatches (holds {path})", path=self._path)

    def _report(self, error: OSError) -> None:
        message = "%s: %s" % (type(error).__name__, error)
        if message != self._reported:
            self._reported = message
            log.error("Cannot take the dispatch lock {path} ({error}); nothing is dispatched"
                      " until it can be taken, tried again every second",
                      path=self._path, error=message)

    async def release(self, queue_name: str) -> None:
        pass  # one lock for every queue: given up when the process stops

    async def holder(self, queue_name: str) -> Node | None:
        if self._fd is not None:
            return this_process()
        return read_holder(self._path)

    def on_lost(self, callback: Callable[[], None]) -> None:
        pass  # a lock on an open file is never lost

    async def recover(self, table: str, keep: Collection[InFlight]) -> int:
        return await self._store.recover(table, keep)

    async def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # releases the lock; a waiting process takes over within a second


def read_holder(path: str) -> Node | None:
    """The process holding the lock at ``path``, or ``None`` when nobody holds it (or the
    file cannot be read)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            content = os.pread(fd, 4096, 0).decode("utf-8", "replace").split("\n")
            if len(content) >= 2 and content[0].isdigit():
                return Node(id=content[0], host=content[1])
            return None
        except OSError:
            return None
        return None  # we could lock it: nobody holds it
    finally:
        os.close(fd)
