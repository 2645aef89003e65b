"""The storage contract (L{storage_contract}) run against every driver.

Each suite below only says how to build a fresh store on C{self.clock}, how to act as
another node on the same data, and how to fake a grab without a grabber; the tests are
all in L{storage_contract.StoreContractMixin}.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from contextlib import closing
from typing import Any, Collection, cast

import attrs
from twisted.internet import reactor
from twisted.internet.interfaces import IReactorCore
from twisted.trial.unittest import TestCase

# tests/ is not a package: pytest's default ("prepend") import mode puts this directory on
# sys.path, so the shared suite is imported by its module name.
import mysqltools
from storage_contract import StoreContractMixin, newJob

from fireworq.model import (
    Completion,
    CompletionKind,
    FailedFilter,
    FailedJob,
    FailedOrder,
    InFlight,
    JobOptions,
    JobStatus,
    QueueDefinition,
    Routing,
    StateCounts,
    WorkerResult,
)
from fireworq.storage import Store
from fireworq.storage.memory import MemoryStore
from fireworq.storage.sqlcommon import encode_result, failure_table, job_table, options_table
from fireworq.storage.sqlite import SqliteStore
from fireworq.dsn import parse_dsn
from fireworq.storage.mysql import MySQLStore, lock_name, supports_skip_locked

def foreign_failure_row(failed: FailedJob) -> tuple[Any, ...]:
    """A failure-log row's values as Fireworq binds them."""
    return (failed.job_id, failed.category.encode(), failed.url.encode(), failed.payload,
            encode_result(failed.result), failed.fail_count, failed.failed_at,
            failed.created_at)


# ---------------------------------------------------------------------------------------
# in-memory
# ---------------------------------------------------------------------------------------


class _OtherMemoryNode:
    """
    Another node on a L{MemoryStore}'s data: each call runs with another grabber id.
    Memory store methods never wait, so the swap cannot leak into other calls.
    """

    def __init__(self, store: MemoryStore, grabber_id: int) -> None:
        self._store = store
        self._grabber_id = grabber_id

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            ours, self._store.grabber_id = self._store.grabber_id, self._grabber_id
            try:
                return await method(*args, **kwargs)
            finally:
                self._store.grabber_id = ours

        return call


class MemoryStoreContractTests(StoreContractMixin, TestCase):
    """The contract, for L{MemoryStore}."""

    async def makeStore(self) -> Store:
        return MemoryStore(self.clock)

    async def otherNode(self) -> Store:
        store = cast(MemoryStore, self.store)
        return cast(Store, _OtherMemoryNode(store, store.grabber_id + 1))

    async def markGrabbedByNobody(self, table: str, job_id: int) -> None:
        jobs = cast(MemoryStore, self.store)._tables[table].jobs
        jobs[job_id] = attrs.evolve(jobs[job_id], status=JobStatus.GRABBED, grabber_id=None)

    async def addForeignFailure(self, table: str, failed: FailedJob) -> int:
        found = cast(MemoryStore, self.store)._tables[table]
        failure_id = found.next_failure_id
        found.next_failure_id += 1
        found.failures[failure_id] = attrs.evolve(failed, id=failure_id)
        return failure_id

    async def breakJobTable(self, table: str) -> None:
        async def broken(jobs: Any) -> Any:
            raise RuntimeError("the job table is gone")
        self.store.push = broken  # type: ignore[method-assign]

    async def storedJobOptions(self, table: str) -> int:
        found = cast(MemoryStore, self.store)._tables[table]
        return (sum(job.options is not None for job in found.jobs.values())
                + sum(kept.options is not None for kept in found.retry_settings.values()))


# ---------------------------------------------------------------------------------------
# sqlite
# ---------------------------------------------------------------------------------------


class SqliteStoreContractTests(StoreContractMixin, TestCase):
    """The contract, for L{SqliteStore} on a file of its own; plus durability."""

    # Not self.mktemp(): under pytest that is relative to the checkout, not _trial_temp.
    path: str

    async def openStore(self) -> SqliteStore:
        """Another store on this test's file, opened, closed at cleanup."""
        store = SqliteStore(self.path, cast(IReactorCore, reactor), self.clock)
        await store.open()
        self.addCleanup(store.close)
        return store

    async def makeStore(self) -> Store:
        directory = tempfile.mkdtemp(prefix="fireworq-contract-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "fireworq.sqlite3")
        return await self.openStore()

    async def otherNode(self) -> Store:
        return await self.openStore()

    async def markGrabbedByNobody(self, table: str, job_id: int) -> None:
        with closing(sqlite3.connect(self.path)) as connection:
            connection.execute(
                "UPDATE %s SET status = 'grabbed', grabber_id = NULL WHERE job_id = ?"
                % job_table(table),
                (job_id,),
            )
            connection.commit()

    async def addForeignFailure(self, table: str, failed: FailedJob) -> int:
        with closing(sqlite3.connect(self.path)) as connection:
            cursor = connection.execute(
                "INSERT INTO %s (job_id, category, url, payload, result, fail_count,"
                " failed_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                % failure_table(table), foreign_failure_row(failed))
            connection.commit()
            return int(cursor.lastrowid or 0)

    async def breakJobTable(self, table: str) -> None:
        with closing(sqlite3.connect(self.path)) as connection:
            connection.execute("DROP TABLE %s" % job_table(table))
            connection.commit()

    async def storedJobOptions(self, table: str) -> int:
        with closing(sqlite3.connect(self.path)) as connection:
            [(count,)] = connection.execute("SELECT COUNT(*) FROM %s" % options_table(table))
        return int(count)

    async def test_staleJobOptionsIgnored(self) -> None:
        """A row of job members left by a node that does not remove them, under an id given
        out again, is not read as the new job's."""
        await self.store.prepare_queue("mail")
        [pushed] = await self.store.push([("mail", newJob())])
        with closing(sqlite3.connect(self.path)) as connection:
            connection.execute("INSERT INTO %s (job_id, created_at, options) VALUES (?, ?, ?)"
                               % options_table("mail"),
                               (pushed.id, pushed.created_at - 1, b'{"retry_jitter":true}'))
            connection.commit()
        [grabbed] = await self.store.grab("mail", 10)
        self.assertIsNone(grabbed.options)

    async def test_leftOwnRowIsReset(self) -> None:
        """A row of ours left by a queue Fireworq deleted does not come back to life when
        the queue is defined again through us."""
        with closing(sqlite3.connect(self.path)) as connection:
            connection.execute("INSERT INTO fireworqpy_queue (name, paused, members)"
                               " VALUES ('mail', 1, '{\"failed_job_ttl\":5}')")
            connection.commit()
        self.assertIsNone(await self.store.get_queue("mail"))
        self.assertTrue(await self.store.put_queue(QueueDefinition("mail", 200, 20)))
        self.assertEqual(await self.store.get_queue("mail"), QueueDefinition("mail", 200, 20))

    async def test_reopen(self) -> None:
        """Everything stored survives closing the file and opening it again."""
        definition = QueueDefinition("mail", 200, 20, 2.5, 5)
        routing = Routing("mail", "send_welcome")
        await self.store.put_queue(definition)
        await self.store.put_routing(routing)
        revisions = await self.store.revisions()
        await self.store.prepare_queue("mail")
        pushed = await self.store.push([("mail", newJob(run_after=r)) for r in (0, 0, 0, 60)])
        [grabbed, failing] = await self.store.grab("mail", 2)
        await self.store.complete([
            Completion("mail", failing, CompletionKind.FAIL, WorkerResult("failure", 500, "x"))
        ])
        before = {job.id: await self.store.get_job("mail", job.id) for job in pushed}
        [failed] = (await self.store.list_failed("mail", FailedOrder.FAILED, None, 10)).items
        await self.store.close()

        again = await self.openStore()
        self.assertEqual(await again.list_queues(), [definition])
        self.assertEqual(await again.list_routings(), [routing])
        self.assertEqual(await again.revisions(), revisions)
        await again.prepare_queue("mail")
        for job_id, job in before.items():
            self.assertEqual(await again.get_job("mail", job_id), job)
        self.assertEqual(await again.get_failed("mail", failed.id), failed)
        self.assertEqual(
            (await again.counts(["mail"]))["mail"],
            StateCounts(waiting=1, deferred=1, grabbed=1, failed=1),
        )
        # At the next start the job the old process grabbed is recovered (docs/worker-protocol.md,
        # At-least-once delivery).
        self.assertEqual(await again.recover("mail"), 1)
        recovered = await again.get_job("mail", grabbed.id)
        self.assertEqual(
            recovered, attrs.evolve(grabbed, status=JobStatus.CLAIMED, grabber_id=None)
        )
        later = await again.push([("mail", newJob())])
        self.assertGreater(later[0].id, max(job.id for job in pushed))

    async def test_twoStoresOneFile(self) -> None:
        """Two stores on one file (a graceful restart) both work and see each other."""
        second = await self.openStore()
        await self.store.prepare_queue("mail")
        await second.prepare_queue("mail")
        [first_job] = await self.store.push([("mail", newJob())])
        [second_job] = await second.push([("mail", newJob())])
        self.assertGreater(second_job.id, first_job.id)
        self.assertIsNotNone(await second.get_job("mail", first_job.id))
        self.assertIsNotNone(await self.store.get_job("mail", second_job.id))

        definition = QueueDefinition("mail", 200, 20)
        self.assertTrue(await second.put_queue(definition))
        self.assertEqual(await self.store.get_queue("mail"), definition)
        self.assertEqual(await self.store.revisions(), await second.revisions())
        self.assertFalse(await self.store.put_queue(definition))

        [grabbed] = await second.grab("mail", 1)
        self.assertEqual(grabbed.id, first_job.id)
        [mine] = await self.store.grab("mail", 10)
        self.assertEqual(mine.id, second_job.id)
        self.assertEqual(
            (await self.store.counts(["mail"]))["mail"], StateCounts(grabbed=2)
        )


# ---------------------------------------------------------------------------------------
# mysql
# ---------------------------------------------------------------------------------------


class _LockingMySQLStore(MySQLStore):
    """
    A L{MySQLStore} that takes the queue's lock around each grab and recovery, as the
    cluster's mysql driver would, and lets it go again, so that two stores can take turns.
    """

    async def _locked(self, table: str, operation: Any) -> Any:
        name = lock_name(table, self.database, "database")
        held = await self.session.check({name: table})
        assert name in held, "the test lock of %s is held elsewhere" % table
        try:
            return await operation()
        finally:
            await self.session.release([name])

    async def grab(self, table: str, limit: int) -> Any:
        parent = super().grab
        return await self._locked(table, lambda: parent(table, limit))

    async def recover(self, table: str, keep: Collection[InFlight] = ()) -> int:
        parent = super().recover
        result: int = await self._locked(table, lambda: parent(table, keep))
        return result


class MySQLStoreContractTests(StoreContractMixin, TestCase):
    """The contract, for L{MySQLStore} on a database of its own (DB clock = C{self.clock})."""

    database: str

    async def openStore(self) -> MySQLStore:
        dsn = parse_dsn(mysqltools.dsn_text(self.database))
        store = _LockingMySQLStore(dsn, dsn, reactor, self.clock, pool_size=2,
                                   session_clock=self.clock)
        await store.open()
        self.addCleanup(store.close)
        return store

    async def makeStore(self) -> Store:
        self.database = mysqltools.create_database()
        self.addCleanup(mysqltools.drop_database, self.database)
        return await self.openStore()

    async def otherNode(self) -> Store:
        return await self.openStore()

    def ourGrabberId(self) -> int | None:
        return cast(MySQLStore, self.store).grab_connection_id

    async def markGrabbedByNobody(self, table: str, job_id: int) -> None:
        mysqltools.execute(
            self.database,
            "UPDATE %s SET status = 'grabbed', grabber_id = NULL WHERE job_id = %%s"
            % job_table(table),
            (job_id,),
        )

    async def addForeignFailure(self, table: str, failed: FailedJob) -> int:
        mysqltools.execute(
            self.database,
            "INSERT INTO %s (job_id, category, url, payload, result, fail_count, failed_at,"
            " created_at) VALUES (%%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s)" % failure_table(table),
            foreign_failure_row(failed))
        [(failure_id,)] = mysqltools.execute(
            self.database, "SELECT MAX(failure_id) FROM %s" % failure_table(table))
        return int(failure_id)

    async def breakJobTable(self, table: str) -> None:
        mysqltools.execute(self.database, "DROP TABLE %s" % job_table(table))

    async def storedJobOptions(self, table: str) -> int:
        [(count,)] = mysqltools.execute(
            self.database, "SELECT COUNT(*) FROM %s" % options_table(table))
        return int(count)

    async def test_staleJobOptionsIgnored(self) -> None:
        """A row of job members left by a node that does not remove them (a Fireworq node),
        under an id InnoDB gave out again, is not read as the new job's; a push with
        members replaces it."""
        await self.store.prepare_queue("mail")
        [pushed] = await self.store.push([("mail", newJob())])
        mysqltools.execute(
            self.database, "INSERT INTO %s (job_id, created_at, options) VALUES (%%s, %%s, %%s)"
            % options_table("mail"), (pushed.id, pushed.created_at - 1, b'{"retry_jitter":true}'))
        mysqltools.execute(self.database, "INSERT INTO %s (job_id, created_at, options)"
                           " VALUES (%%s, 1, 'x')" % options_table("mail"), (pushed.id + 1,))
        [grabbed] = await self.store.grab("mail", 10)
        self.assertIsNone(grabbed.options)
        options = JobOptions(retry_backoff="exponential")
        [again] = await self.store.push([("mail", attrs.evolve(newJob(), options=options))])
        self.assertEqual(again.id, pushed.id + 1)
        [grabbed] = await self.store.grab("mail", 10)
        self.assertEqual(grabbed.options, options)

    async def test_leftOwnRowIsReset(self) -> None:
        """A row of ours left by a queue Fireworq deleted does not come back to life when
        the queue is defined again through us."""
        mysqltools.execute(self.database, "INSERT INTO fireworqpy_queue (name, paused, members)"
                           " VALUES ('mail', 1, '{\"failed_job_ttl\":5}')")
        self.assertIsNone(await self.store.get_queue("mail"))
        self.assertTrue(await self.store.put_queue(QueueDefinition("mail", 200, 20)))
        self.assertEqual(await self.store.get_queue("mail"), QueueDefinition("mail", 200, 20))

    async def test_reusedFailureId(self) -> None:
        """A settings row left under a failure id (its entry deleted by Fireworq, the id
        given again after a server restart) is not taken for the new entry's."""
        await self.store.prepare_queue("mail")
        mysqltools.execute(self.database, "INSERT INTO `fireworqpy_fail(mail)` (failure_id,"
                           " job_id, max_retries, retry_delay, timeout) VALUES (1, 99, 7, 7, 7)")
        failed = FailedJob(id=0, job_id=5, category="c", url="http://h/", payload=b"",
                           result=WorkerResult("failure", 500, ""), fail_count=2,
                           failed_at=1, created_at=1)
        failure_id = await self.addForeignFailure("mail", failed)
        self.assertEqual(failure_id, 1)
        [retried] = await self.store.retry_failed(
            "mail", FailedFilter(failure_id=failure_id), 1, 0)
        self.assertEqual((retried.job.max_retries, retried.job.retry_delay,
                          retried.job.timeout), (1, 0, 0))


class MySQL57GrabContractTests(MySQLStoreContractTests):
    """The contract again, grabbing as on MySQL 5.7: FOR UPDATE without SKIP LOCKED."""

    async def openStore(self) -> MySQLStore:
        store = await super().openStore()
        store.skip_locked = False
        return store


class ServerFeatureTests(TestCase):
    def test_skipLocked(self) -> None:
        """When the server is MariaDB 10.6+ or MySQL 8+, grabs use SKIP LOCKED."""
        for version, expected in [
            ("10.11.19-MariaDB-0+deb12u1", True), ("10.6.0-MariaDB-log", True),
            ("5.5.5-10.6.12-MariaDB", True), ("10.5.22-MariaDB", False),
            ("5.7.44-log", False), ("8.0.36", True), ("8.4.0-commercial", True),
        ]:
            self.assertEqual(supports_skip_locked(version), expected, version)
