"""PyMySQL or mysqlclient under adbapi: the work the daemon does, timed with both drivers.

Three loads through an adbapi pool of 4 connections on MariaDB, each run against each
driver in alternation (3 rounds, medians): single-row INSERT transactions (a push batch of
one), 50-row INSERTs (a busy push batch), and the grab transaction (SELECT ids, SELECT ...
FOR UPDATE SKIP LOCKED, UPDATE) of 20 rows. Reported: transactions per second and the
client CPU per transaction (process time / transactions), the cost that competes with the
reactor for the GIL.

Usage: python bench/driver_compare.py   (needs both drivers: pip install pymysql mysqlclient,
the latter needs libmariadb-dev to build)
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any, Callable

import pymysql
from twisted.enterprise import adbapi
from twisted.internet import defer, reactor

DATABASE = "fwbench_drivers"
TABLE = (
    "CREATE TABLE `jobs` (`job_id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,"
    " `next_try` BIGINT UNSIGNED NOT NULL, `grabber_id` BIGINT UNSIGNED,"
    " `status` ENUM('claimed','grabbed') NOT NULL DEFAULT 'claimed',"
    " `created_at` BIGINT UNSIGNED NOT NULL, `retry_count` INT UNSIGNED NOT NULL DEFAULT 0,"
    " `retry_delay` INT UNSIGNED NOT NULL DEFAULT 0, `fail_count` INT UNSIGNED NOT NULL DEFAULT 0,"
    " `category` VARCHAR(255) NOT NULL, `url` BLOB, `payload` MEDIUMBLOB, `timeout` INT UNSIGNED,"
    " PRIMARY KEY (`job_id`), KEY `grab` (`status`, `next_try`)) DEFAULT CHARSET=binary"
)
ROW = "(FLOOR(UNIX_TIMESTAMP(NOW(3))*1000), FLOOR(UNIX_TIMESTAMP(NOW(3))*1000), 3, 30, %s, %s, %s, 10)"
INSERT = "INSERT INTO jobs (next_try, created_at, retry_count, retry_delay, category, url, payload, timeout) VALUES "
VALUES = ("send_welcome", b"http://127.0.0.1:8000/work", b'{"user": 42, "lang": "ja"}')


def insert(rows: int) -> Callable[[Any], None]:
    query = INSERT + ",".join([ROW] * rows)
    params = list(VALUES) * rows

    def txn(cursor: Any) -> None:
        cursor.execute(query, params)
    return txn


def grab(cursor: Any) -> None:
    cursor.execute("SELECT job_id FROM jobs WHERE status = 'claimed' ORDER BY next_try, job_id"
                   " LIMIT 20")
    ids = [row[0] for row in cursor.fetchall()]
    if not ids:
        return
    marks = ",".join(["%s"] * len(ids))
    cursor.execute("SELECT job_id, category, url, payload, status, created_at, next_try,"
                   " retry_count, retry_delay, fail_count, timeout, grabber_id FROM jobs"
                   " WHERE job_id IN (%s) AND status = 'claimed' FOR UPDATE SKIP LOCKED" % marks,
                   ids)
    rows = cursor.fetchall()
    if not rows:
        return
    cursor.execute("UPDATE jobs SET status = 'grabbed', grabber_id = CONNECTION_ID()"
                   " WHERE job_id IN (%s)" % ",".join(["%s"] * len(rows)),
                   [row[0] for row in rows])


def pool_for(driver: str) -> adbapi.ConnectionPool:
    module = "MySQLdb" if driver == "mysqlclient" else "pymysql"
    extra = {"db": DATABASE} if module == "MySQLdb" else {"database": DATABASE}
    return adbapi.ConnectionPool(module, host="127.0.0.1", port=3306, user="root",
                                 password="", charset="utf8mb4", cp_min=4, cp_max=4,
                                 cp_noisy=False, **extra)


async def load(pool: adbapi.ConnectionPool, work: Callable[[Any], None],
               transactions: int) -> tuple[float, float]:
    started, cpu = time.perf_counter(), time.process_time()
    pending: list[Any] = []
    for _ in range(transactions):
        pending.append(pool.runInteraction(work))
        if len(pending) >= 8:  # 2x the pool's threads in flight
            await pending.pop(0)
    for d in pending:
        await d
    return (transactions / (time.perf_counter() - started),
            (time.process_time() - cpu) / transactions * 1e6)


async def main() -> None:
    connection = pymysql.connect(host="127.0.0.1", user="root", password="", autocommit=True)
    with connection.cursor() as cursor:
        cursor.execute("DROP DATABASE IF EXISTS %s" % DATABASE)
        cursor.execute("CREATE DATABASE %s" % DATABASE)
        cursor.execute("USE %s" % DATABASE)
        cursor.execute(TABLE)
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    loads = [("insert x1", insert(1), 3000), ("insert x50", insert(50), 300),
             ("grab x20", grab, 500)]
    try:
        for _ in range(3):
            for driver in ("pymysql", "mysqlclient"):
                pool = pool_for(driver)
                for name, work, count in loads:
                    results.setdefault((name, driver), []).append(await load(pool, work, count))
                pool.close()
                with connection.cursor() as cursor:
                    cursor.execute("UPDATE jobs SET status = 'claimed', grabber_id = NULL")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP DATABASE IF EXISTS %s" % DATABASE)
        connection.close()
    for (name, driver), runs in sorted(results.items()):
        rate = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print("%-11s %-12s %7.0f txn/s  %6.0f us client CPU/txn" % (name, driver, rate, cpu))


def run() -> None:
    d = defer.Deferred.fromCoroutine(main())
    d.addErrback(lambda f: f.printTraceback(sys.stderr)).addBoth(lambda _: reactor.stop())


if __name__ == "__main__":
    reactor.callWhenRunning(run)
    reactor.run()
