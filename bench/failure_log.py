#!/usr/bin/env python3
"""Failure-log operations: bulk retry and bulk delete rates, against single retries.

For each driver asked (mysql, sqlite) and each run, on a fresh daemon and database:

  bulk retry   10,000 entries written into a paused queue's failure log (as a Fireworq
               node writes them), then one POST /queue/{q}/failed/retry with limit 10000;
               entries/s from sending the request to its answer (the queue is paused, so
               this is the retry transactions alone, not the deliveries).
  single       the baseline, in the same run: 1,000 entries retried one request each
               (POST /queue/{q}/failed/{id}/retry) over 8 keep-alive connections.
  bulk delete  10,000 entries removed by one DELETE /queue/{q}/failed.

Every run checks that the counts add up (no entry lost or left). Prints one line per
measurement and medians (min - max) at the end.

Usage: .venv/bin/python bench/failure_log.py [--driver mysql,sqlite] [--runs 3]
       [--mysql USER[:PW]@HOST[:PORT]]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fwbench import infra  # noqa: E402  (after the path set-up above)

from fireworq.storage.sqlcommon import failure_table  # noqa: E402

QUEUE = "bench_failed"
BULK = 10000
SINGLE = 1000
CONNECTIONS = 8


def write_entries(store: infra.Store, count: int) -> None:
    """``count`` entries with distinct payloads, in one statement (Fireworq's columns)."""
    marks = "?" if store.kind == "sqlite" else "%s"
    rows = ",".join(["(%s)" % ", ".join([marks] * 8)] * count)
    values: list[Any] = []
    for n in range(count):
        values += [n + 1, "bench", b"http://127.0.0.1:9/x", b'{"n":%d}' % n,
                   b'{"status":"failure","code":500,"message":"x"}', 1,
                   1732790400000 + n, 1732790400000]
    if store.kind == "sqlite":
        # SQLite binds at most 32766 variables per statement.
        per = 32766 // 8
        for start in range(0, count, per):
            chunk = min(per, count - start)
            store.execute("INSERT INTO %s (job_id, category, url, payload, result, fail_count,"
                          " failed_at, created_at) VALUES %s"
                          % (failure_table(QUEUE), ",".join(["(%s)" % ",".join("?" * 8)]
                                                            * chunk)),
                          values[start * 8:(start + chunk) * 8])
        return
    store.execute("INSERT INTO %s (job_id, category, url, payload, result, fail_count,"
                  " failed_at, created_at) VALUES %s" % (failure_table(QUEUE), rows), values)


def failure_ids(store: infra.Store) -> list[int]:
    return [int(row[0]) for row in store.query(
        "SELECT failure_id FROM %s ORDER BY failure_id" % failure_table(QUEUE))]


def retry_each(port: int, ids: list[int]) -> None:
    """One request per entry, over ``CONNECTIONS`` keep-alive connections."""
    local = threading.local()
    clients: list[infra.Http] = []

    def retry(failure_id: int) -> None:
        if not hasattr(local, "client"):
            local.client = infra.Http(port)
            clients.append(local.client)
        local.client.json("POST", "/queue/%s/failed/%d/retry" % (QUEUE, failure_id))

    try:
        with ThreadPoolExecutor(CONNECTIONS) as pool:
            list(pool.map(retry, ids))
    finally:
        for client in clients:
            client.close()


def one_run(driver: str, server: infra.MySQLServer) -> dict[str, float]:
    figures: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="fwbench-fail-"))
        store: infra.Store = (infra.MySQLStore(stack, server, "failure_log")
                              if driver == "mysql" else infra.SQLiteStore(directory))
        daemon = infra.Daemon(stack, sys.executable, directory, store.daemon_args())
        daemon.define(QUEUE, None)
        daemon.api.json("POST", "/queue/%s/pause" % QUEUE)

        write_entries(store, BULK)
        started = time.perf_counter()
        answer = daemon.api.json("POST", "/queue/%s/failed/retry" % QUEUE, {"limit": BULK})
        figures["bulk retry"] = BULK / (time.perf_counter() - started)
        if answer["retried"] != BULK or store.count_jobs(QUEUE) != BULK \
                or store.count_failures(QUEUE) != 0:
            raise infra.BenchError("bulk retry: %d retried, %d jobs, %d entries left"
                                   % (answer["retried"], store.count_jobs(QUEUE),
                                      store.count_failures(QUEUE)))

        write_entries(store, SINGLE)
        ids = failure_ids(store)
        started = time.perf_counter()
        retry_each(daemon.port, ids)
        figures["single retries"] = SINGLE / (time.perf_counter() - started)
        if store.count_jobs(QUEUE) != BULK + SINGLE or store.count_failures(QUEUE) != 0:
            raise infra.BenchError("single retries: the counts do not add up")

        write_entries(store, BULK)
        started = time.perf_counter()
        answer = daemon.api.json("DELETE", "/queue/%s/failed" % QUEUE, {"limit": BULK})
        figures["bulk delete"] = BULK / (time.perf_counter() - started)
        if answer["deleted"] != BULK or store.count_failures(QUEUE) != 0:
            raise infra.BenchError("bulk delete: %d deleted" % answer["deleted"])
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--driver", default="mysql,sqlite")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mysql", default="root@127.0.0.1:3306")
    arguments = parser.parse_args()
    server = infra.MySQLServer.parse(arguments.mysql)
    drivers = [name.strip() for name in arguments.driver.split(",") if name.strip()]
    results: dict[tuple[str, str], list[float]] = {}
    try:
        for run in range(1, arguments.runs + 1):
            for driver in drivers:
                for name, rate in one_run(driver, server).items():
                    results.setdefault((driver, name), []).append(rate)
                    print("run %d %-6s %-15s %8.0f entries/s" % (run, driver, name, rate),
                          flush=True)
    finally:
        for line in infra.sweep():
            print("cleanup: " + line, file=sys.stderr)
    print("\nmedians over %d runs (min - max), entries/s; load average %s"
          % (arguments.runs, os.getloadavg()))
    for (driver, name), rates in results.items():
        print("%-6s %-15s %8.0f  (%.0f - %.0f)" % (driver, name, statistics.median(rates),
                                                   min(rates), max(rates)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
