"""The sqlite driver's dispatch lock (L{fireworq.cluster.filelock}), issue 8 item 9: a lock
file that cannot be opened is logged and tried again at every check, so the process
dispatches once the problem is fixed. (Root ignores file modes: the path is made a
directory, or the open function is replaced.)"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile

from clocks import GuardedClock
from twisted.internet.defer import Deferred
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from fireworq.cluster import this_process
from fireworq.cluster.filelock import FileLock, read_holder
from fireworq.cluster.ownership import OwnershipState, QueueOwnership
from fireworq.storage.memory import MemoryStore
from test_dispatcher import advance_to, run_turns
from test_ownership import FakeDispatch


class FileLockTests(SynchronousTestCase):
    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="fireworq-filelock-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "fireworq.sqlite3.lock")
        self.clock = GuardedClock()
        self.store = MemoryStore(self.clock)
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def check(self, lock: FileLock) -> set[str]:
        return set(self.successResultOf(Deferred.fromCoroutine(lock.check({"q": "q"}))))

    def errors(self) -> list[str]:
        return [formatEvent(e) for e in self.log if e["log_level"] is LogLevel.error]

    def test_pathIsADirectory(self) -> None:
        """When the lock file cannot be opened (its path is a directory), the failure is
        logged once and every check tries again; once the path is fixed the lock is taken."""
        os.mkdir(self.path)
        lock = FileLock(self.path, self.store)
        for _ in range(3):
            self.assertEqual(self.check(lock), set())
        [error] = self.errors()
        self.assertIn("Cannot take the dispatch lock %s (IsADirectoryError" % self.path, error)
        os.rmdir(self.path)
        self.assertEqual(self.check(lock), {"q"})
        self.assertTrue(lock.holding)
        self.successResultOf(Deferred.fromCoroutine(lock.close()))

    def test_permissionDenied(self) -> None:
        """When opening the lock file is refused (EACCES), the same: logged, retried, taken
        once the open works; a different failure is logged again."""
        failures = [errno.EACCES, errno.EACCES, errno.EROFS]

        def opener(path: str, flags: int, mode: int) -> int:
            if failures:
                code = failures.pop(0)
                raise OSError(code, os.strerror(code), path)
            return os.open(path, flags, mode)

        lock = FileLock(self.path, self.store, opener)
        for _ in range(3):
            self.assertEqual(self.check(lock), set())
        self.assertEqual(len(self.errors()), 2)
        self.assertIn("Permission denied", self.errors()[0])
        self.assertIn("Read-only file system", self.errors()[1])
        self.assertEqual(self.check(lock), {"q"})
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(lock.holder("q"))),
                         this_process())
        self.successResultOf(Deferred.fromCoroutine(lock.close()))

    def test_ownershipDispatchesOnceFixed(self) -> None:
        """When the lock file cannot be opened at start, the process keeps checking every
        second and dispatches within a second of the fix."""
        os.mkdir(self.path)
        ownership = QueueOwnership(FileLock(self.path, self.store), self.clock)
        ownership.start()
        dispatch = FakeDispatch("q")
        ownership.watch("q", dispatch)
        advance_to(self.clock, 30.0)
        self.assertFalse(dispatch.active)
        os.rmdir(self.path)
        advance_to(self.clock, 31.0)
        self.assertTrue(dispatch.active)
        status = ownership.status("q")
        assert status is not None
        self.assertIs(status.state, OwnershipState.DISPATCHING)
        self.successResultOf(ownership.stop())
        run_turns(self.clock)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_secondProcessWaits(self) -> None:
        """When another process holds the lock, checks find nothing held and name the holder;
        once it lets go, the next check takes the lock."""
        first, second = FileLock(self.path, self.store), FileLock(self.path, self.store)
        self.assertEqual(self.check(first), {"q"})
        self.assertEqual(self.check(second), set())
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(second.holder("q"))),
                         this_process())
        self.successResultOf(Deferred.fromCoroutine(first.close()))
        self.assertIsNone(read_holder(self.path))
        self.assertEqual(self.check(second), {"q"})
        self.successResultOf(Deferred.fromCoroutine(second.close()))
        self.assertEqual(self.errors(), [])

    def test_holderOfUnreadableFile(self) -> None:
        """When the lock file cannot be read, nobody is named (not an error)."""
        self.assertIsNone(read_holder(os.path.join(self.path, "missing", "x")))
        os.mkdir(self.path)
        self.assertIsNone(read_holder(self.path))
