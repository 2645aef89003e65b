"""``kill -9`` of the daemon during a bulk retry of the failure log (sqlite and mysql).

10,000 failure-log entries, each with its own payload, are written into a paused queue's log
(as a Fireworq node writes them: no settings of ours), so that retried jobs stay in the job
table where they can be counted. A bulk retry of all of them is asked for; once at least
1,000 new jobs are committed, the daemon is killed with SIGKILL. Afterwards every entry is
either still in the log or a job, exactly once: jobs + entries = 10,000 and their payloads
are the 10,000 payloads, none twice. A new daemon on the same data then retries the rest.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

import mysqltools
from e2e import Daemon, eventually

QUEUE = "crashq"
ENTRIES = 10000
KILL_AT = 1000
JOBS = "`fireworq_jq(%s)`" % QUEUE
FAILURES = "`fireworq_jq_fail(%s)`" % QUEUE

if TYPE_CHECKING:
    _Base = TestCase
else:
    _Base = object


def failure_rows() -> list[tuple[Any, ...]]:
    return [(n + 1, "crash", b"http://127.0.0.1:9/x", b'{"n":%d}' % n,
             b'{"status":"failure","code":500,"message":"x"}', 1, 1732790400000 + n,
             1732790400000) for n in range(ENTRIES)]


class BulkRetryCrashMixin(_Base):
    driver: str
    options: tuple[str, ...] = ()

    def execute(self, statement: str, args: Any = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError()

    def write_entries(self) -> None:
        raise NotImplementedError()

    def count_jobs(self) -> int:
        [(count,)] = self.execute("SELECT COUNT(*) FROM %s" % JOBS)
        return int(count)

    def payloads(self, table: str) -> list[int]:
        return [json.loads(bytes(payload))["n"]
                for (payload,) in self.execute("SELECT payload FROM %s" % table)]

    def check_each_once(self) -> tuple[int, int]:
        jobs, entries = self.payloads(JOBS), self.payloads(FAILURES)
        self.assertEqual(len(jobs) + len(entries), ENTRIES)
        self.assertEqual(sorted(jobs + entries), list(range(ENTRIES)))
        return len(jobs), len(entries)

    async def test_kill9_during_bulk_retry(self) -> None:
        daemon = await Daemon.start(self, self.driver, self.options)
        self.daemon = daemon
        await daemon.api.put_queue(QUEUE)
        await daemon.api.ok("POST", f"/queue/{QUEUE}/pause")
        self.write_entries()

        request = Deferred.fromCoroutine(daemon.api.request(
            "POST", f"/queue/{QUEUE}/failed/retry", '{"limit": 10000}', timeout=60))
        request.addErrback(lambda failure: None)  # the daemon dies before it answers

        async def started() -> bool:
            return await deferToThread(self.count_jobs) >= KILL_AT
        await eventually(started, timeout=30, step=0.005, what=f"{KILL_AT} retried jobs")
        await daemon.kill9()
        await request

        jobs, entries = self.check_each_once()
        print(f"\nKILL -9 DURING BULK RETRY ({self.driver}): {jobs} retried, {entries} still"
              f" in the log, none lost or doubled")
        self.assertGreater(entries, 0, "the bulk retry ended before the kill")

        await daemon.spawn()
        answer = await daemon.api.ok("POST", f"/queue/{QUEUE}/failed/retry",
                                     '{"limit": 10000}')
        self.assertEqual(answer["retried"], entries)
        self.assertEqual(self.check_each_once(), (ENTRIES, 0))


class SqliteBulkRetryCrashTests(BulkRetryCrashMixin, TestCase):
    driver = "sqlite"

    @property
    def path(self) -> str:
        return os.path.join(self.daemon.dir, "fireworq.sqlite3")

    def execute(self, statement: str, args: Any = None) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(self.path, timeout=10)) as connection:
            return list(connection.execute(statement, args or ()).fetchall())

    def write_entries(self) -> None:
        with closing(sqlite3.connect(self.path, timeout=10)) as connection:
            connection.executemany(
                "INSERT INTO %s (job_id, category, url, payload, result, fail_count,"
                " failed_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)" % FAILURES,
                failure_rows())
            connection.commit()


class MySQLBulkRetryCrashTests(BulkRetryCrashMixin, TestCase):
    driver = "mysql"

    def setUp(self) -> None:
        self.database = mysqltools.create_database("fwcrash")
        self.addCleanup(mysqltools.drop_database, self.database)
        self.options = (f"--mysql-dsn={mysqltools.dsn_text(self.database)}",)

    def execute(self, statement: str, args: Any = None) -> list[tuple[Any, ...]]:
        return mysqltools.execute(self.database, statement, args)

    def write_entries(self) -> None:
        rows = failure_rows()
        values = ",".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(rows))
        self.execute("INSERT INTO %s (job_id, category, url, payload, result, fail_count,"
                     " failed_at, created_at) VALUES %s" % (FAILURES, values),
                     [value for row in rows for value in row])
