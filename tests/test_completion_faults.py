"""No job stays ``grabbed`` for ever (issue 8 item 6), on every driver.

A node as ``FireworqService`` wires it (store, the driver's locks under a
L{QueueOwnership}, a L{QueueManager}) delivers one job through a store whose completion
write fails:

* N times with ``StoreUnavailable`` (N = 20, more than the 16 attempts the daemon made before
  it gave up): the write is retried while this node holds the queue, and the job is done;
* once with an unexpected error (the write is not retried): the job, grabbed with no
  delivery in flight, is set back to waiting by the sweep of the active node and delivered
  again.

Timers run on a L{Clock}; the sqlite and mysql stores do their work in their own threads (the
MySQL clock follows the test clock through ``session_clock``), so L{Drive} waits for every
store and lock call in progress before it moves the clock on.
"""

from __future__ import annotations

import inspect
import io
import os
import shutil
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import TestCase

import mysqltools
from fireworq.cluster import LockDriver
from fireworq.cluster.filelock import FileLock
from fireworq.cluster.memory import MemoryLocks
from fireworq.cluster.mysql import MySQLLocks
from fireworq.cluster.ownership import SWEEP_INTERVAL, QueueOwnership
from fireworq.dsn import parse_dsn
from fireworq.errors import StoreUnavailable
from fireworq.logs import LineWriter, QueueLog
from fireworq.model import Job, JobState, NewJob, WorkerResult
from fireworq.queues import QueueDefaults, QueueManager
from fireworq.storage import Store
from fireworq.storage.memory import MemoryStore
from fireworq.storage.mysql import MySQLStore
from fireworq.storage.sqlite import SqliteStore

QUEUE = "cq"
START = 1_732_790_400.0
SUCCESS = WorkerResult("success", 200, "ok")


class Calls:
    """The store and lock calls in progress (they run in other threads)."""

    def __init__(self) -> None:
        self.in_progress = 0


class Counted:
    """``target`` with the calls of its coroutine methods counted in ``calls``."""

    def __init__(self, target: Any, calls: Calls) -> None:
        self.target = target
        self.calls = calls

    def before(self, name: str) -> None:
        """Called as each call begins; may raise to fail it."""

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.target, name)
        if not inspect.iscoroutinefunction(method):
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.in_progress += 1
            try:
                self.before(name)
                return await method(*args, **kwargs)
            finally:
                self.calls.in_progress -= 1

        return call


class FaultyStore(Counted):
    """A store whose ``complete`` fails ``unavailable`` times with ``StoreUnavailable``, then
    ``broken`` times with an unexpected error."""

    def __init__(self, store: Store, calls: Calls) -> None:
        super().__init__(store, calls)
        self.store = store
        self.unavailable = 0
        self.broken = 0
        self.completes = 0

    def before(self, name: str) -> None:
        if name != "complete":
            return
        self.completes += 1
        if self.unavailable:
            self.unavailable -= 1
            raise StoreUnavailable("complete: connection refused")
        if self.broken:
            self.broken -= 1
            raise RuntimeError("bug in the completion write")


class Deliverer:
    def __init__(self) -> None:
        self.delivered: list[Job] = []

    async def deliver(self, job: Job, queue: object = None) -> WorkerResult:
        self.delivered.append(job)
        return SUCCESS


class Drive:
    """Move a L{Clock} on while the real reactor runs the stores' threads."""

    def __init__(self, clock: Clock, calls: Calls) -> None:
        self.clock = clock
        self.calls = calls

    async def settle(self) -> None:
        while True:
            while self.calls.in_progress:
                await deferLater(reactor, 0.001, lambda: None)
            await deferLater(reactor, 0, lambda: None)
            if not self.calls.in_progress:
                return

    async def until(self, seconds: float) -> None:
        end = self.clock.seconds() + seconds
        while True:
            await self.settle()
            due = [c.getTime() for c in self.clock.getDelayedCalls()]
            target = min([t for t in due if t <= end], default=end)
            self.clock.advance(max(0.0, target - self.clock.seconds()))
            if target >= end:
                await self.settle()
                return


class CompletionFaultsMixin:
    """The two cases, for the driver a subclass builds."""

    async def build(self, clock: Clock) -> tuple[Store, LockDriver]:
        raise NotImplementedError

    async def node(self) -> tuple[Drive, FaultyStore, Deliverer, QueueManager]:
        test: TestCase = self  # type: ignore[assignment]
        clock = Clock()
        clock.advance(START)
        real, locks = await self.build(clock)
        calls = Calls()
        store = FaultyStore(real, calls)
        ownership = QueueOwnership(Counted(locks, calls), clock)  # type: ignore[arg-type]
        deliverer = Deliverer()
        manager = QueueManager(
            clock=clock, store=store, ownership=ownership,  # type: ignore[arg-type]
            deliverer=deliverer,
            queue_log=QueueLog(LineWriter(clock, "", io.BytesIO()), clock, "t", "info"),
            defaults=QueueDefaults(polling_interval=200, max_workers=2, default_queue=""),
            refresh_interval=1.0,
        )
        drive = Drive(clock, calls)

        async def stop() -> None:
            stopping = Deferred.fromCoroutine(manager.stop_dispatching(5))
            await drive.until(6)
            await stopping
            await ownership.stop()
            manager.close()
            await drive.settle()
            test.assertEqual(clock.getDelayedCalls(), [])

        await manager.start()
        test.addCleanup(lambda: Deferred.fromCoroutine(stop()))
        await manager.put_queue(manager.resolve(QUEUE, 0, 0, 0.0, 0))
        return drive, store, deliverer, manager

    async def grabbed(self, store: FaultyStore) -> list[int]:
        page = await store.store.list_jobs(QUEUE, JobState.GRABBED, True, None, 10)
        return [job.id for job in page.items]

    async def remaining(self, store: FaultyStore) -> int:
        counts = await store.store.counts([QUEUE])
        found = counts[QUEUE]
        return found.waiting + found.deferred + found.grabbed

    async def test_completionWriteRetriedWhileOwned(self) -> None:
        """When the completion write fails 20 times, it is retried until it is written: the
        job is done after one delivery, not left grabbed."""
        test: TestCase = self  # type: ignore[assignment]
        drive, store, deliverer, _ = await self.node()
        store.unavailable = 20
        await store.store.push([(QUEUE, NewJob("c", "http://w/", b"{}", 0, 0, 0, 0))])
        await drive.until(60)
        test.assertEqual(await self.grabbed(store), [1])  # still trying
        await drive.until(240)
        test.assertEqual(store.completes, 21)
        test.assertEqual(await self.remaining(store), 0)
        test.assertEqual([job.id for job in deliverer.delivered], [1])

    async def test_jobLeftGrabbedIsSwept(self) -> None:
        """When the completion write fails for good (an unexpected error), the job left
        grabbed with nothing in flight is set back to waiting by the next sweep and
        delivered again."""
        test: TestCase = self  # type: ignore[assignment]
        drive, store, deliverer, _ = await self.node()
        store.broken = 1
        await store.store.push([(QUEUE, NewJob("c", "http://w/", b"{}", 0, 0, 0, 0))])
        await drive.until(2)
        test.assertEqual(await self.grabbed(store), [1])
        test.assertEqual(len(test.flushLoggedErrors(RuntimeError)), 1)
        await drive.until(SWEEP_INTERVAL + 2)
        test.assertEqual(await self.remaining(store), 0)
        test.assertEqual([job.id for job in deliverer.delivered], [1, 1])


class MemoryCompletionFaultsTests(CompletionFaultsMixin, TestCase):
    async def build(self, clock: Clock) -> tuple[Store, LockDriver]:
        store = MemoryStore(clock)
        return store, MemoryLocks(store)


class SqliteCompletionFaultsTests(CompletionFaultsMixin, TestCase):
    async def build(self, clock: Clock) -> tuple[Store, LockDriver]:
        directory = tempfile.mkdtemp(prefix="fireworq-completion-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "fireworq.sqlite3")
        store = SqliteStore(path, reactor, clock)  # type: ignore[arg-type]
        await store.open()
        self.addCleanup(store.close)
        return store, FileLock(path + ".lock", store)


class MySQLCompletionFaultsTests(CompletionFaultsMixin, TestCase):
    async def build(self, clock: Clock) -> tuple[Store, LockDriver]:
        database = mysqltools.create_database("fwcompletion")
        self.addCleanup(mysqltools.drop_database, database)
        dsn = parse_dsn(mysqltools.dsn_text(database))
        store = MySQLStore(dsn, dsn, reactor, clock, pool_size=2, session_clock=clock)
        await store.open()
        self.addCleanup(store.close)
        return store, MySQLLocks(store, "database")


