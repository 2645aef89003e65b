#!/usr/bin/env python3
"""Batch pushes against single pushes, and the cost of a unique key per push.

For each driver asked (mysql, sqlite) and each run, on a fresh daemon and database, with
the queue paused (so that the figures are the push path alone, not the deliveries), in
this order:

  single            5,000 POST /job/{c}, one job each, over 8 keep-alive connections:
                    the baseline of every other line.
  single+key        5,000 more, each with a unique_key of its own (all new keys): the
                    cost of a key is the difference of the time per push.
  duplicate         the same 5,000 keys pushed again: each stores nothing and answers the
                    first push's answer.
  batch 1000        10 POST /jobs/{c} of 1,000 jobs each, one after the other on one
                    connection (10,000 jobs).
  batch 100 x8      100 POST /jobs/{c} of 100 jobs each over 8 connections (10,000 jobs).
  batch 1000+key    10 batches of 1,000 jobs with new unique keys, on one connection.

Rates are jobs/s from the first request sent to the last answer. Every run checks that
the job table holds what was answered (no job lost, none stored twice). Prints one line
per measurement, then medians (min - max) and the cost of a key per push.

Usage: .venv/bin/python bench/push_batches.py [--driver mysql,sqlite] [--runs 3]
       [--mysql USER[:PW]@HOST[:PORT]]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fwbench import infra  # noqa: E402  (after the path set-up above)

QUEUE = "bench_batch"
CATEGORY = "bench_batch_job"
SINGLES = 5000
BATCH_JOBS = 10000
CONNECTIONS = 8
URL = "http://127.0.0.1:9/x"


def post_all(port: int, path: str, bodies: list[bytes], connections: int) -> float:
    """POST each body to ``path`` over ``connections`` keep-alive connections; the
    seconds from the first request to the last answer. Anything but 200 fails the run."""
    indexes = iter(range(len(bodies)))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def poster() -> None:
        client = infra.Http(port)
        try:
            while True:
                with lock:
                    index = next(indexes, None)
                if index is None:
                    return
                status, answer = client.request("POST", path, bodies[index])
                if status != 200:
                    raise infra.BenchError("POST %s answered %d: %s" % (
                        path, status, answer[:300].decode("utf-8", "replace")))
        except BaseException as error:
            errors.append(error)
        finally:
            client.close()

    threads = [threading.Thread(target=poster, daemon=True) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.perf_counter() - started
    if errors:
        raise infra.BenchError("pushing failed: %r" % errors[0])
    return took


def job(n: int, key: str | None = None) -> dict[str, object]:
    members: dict[str, object] = {"url": URL, "payload": {"n": n}}
    if key is not None:
        members["unique_key"] = key
    return members


def batches(count: int, size: int, key: Callable[[int], str | None]) -> list[bytes]:
    return [json.dumps({"jobs": [job(n, key(n)) for n in range(b * size, (b + 1) * size)]})
            .encode() for b in range(count)]


def one_run(driver: str, server: infra.MySQLServer) -> dict[str, float]:
    figures: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="fwbench-batch-"))
        store: infra.Store = (infra.MySQLStore(stack, server, "push_batches")
                              if driver == "mysql" else infra.SQLiteStore(directory))
        daemon = infra.Daemon(stack, sys.executable, directory, store.daemon_args())
        daemon.define(QUEUE, CATEGORY)
        daemon.api.json("POST", "/queue/%s/pause" % QUEUE)
        single = "/job/" + CATEGORY
        expected = 0

        def measure(name: str, path: str, bodies: list[bytes], jobs: int, stored: int,
                    connections: int = CONNECTIONS) -> None:
            nonlocal expected
            figures[name] = jobs / post_all(daemon.port, path, bodies, connections)
            expected += stored
            if store.count_jobs(QUEUE) != expected:
                raise infra.BenchError("%s: %d jobs stored, %d expected"
                                       % (name, store.count_jobs(QUEUE), expected))

        measure("single", single,
                [json.dumps(job(n)).encode() for n in range(SINGLES)], SINGLES, SINGLES)
        keyed = [json.dumps(job(n, "key-%d" % n)).encode() for n in range(SINGLES)]
        measure("single+key", single, keyed, SINGLES, SINGLES)
        measure("duplicate", single, keyed, SINGLES, 0)
        measure("batch 1000", "/jobs/" + CATEGORY,
                batches(BATCH_JOBS // 1000, 1000, lambda n: None), BATCH_JOBS, BATCH_JOBS, 1)
        measure("batch 100 x8", "/jobs/" + CATEGORY,
                batches(BATCH_JOBS // 100, 100, lambda n: None), BATCH_JOBS, BATCH_JOBS)
        measure("batch 1000+key", "/jobs/" + CATEGORY,
                batches(BATCH_JOBS // 1000, 1000, lambda n: "batch-key-%d" % n), BATCH_JOBS,
                BATCH_JOBS, 1)
        daemon.check_alive()
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
                    print("run %d %-6s %-15s %8.0f jobs/s" % (run, driver, name, rate),
                          flush=True)
    finally:
        for line in infra.sweep():
            print("cleanup: " + line, file=sys.stderr)
    print("\nmedians over %d runs (min - max), jobs/s; load average %s"
          % (arguments.runs, os.getloadavg()))
    for (driver, name), rates in results.items():
        print("%-6s %-15s %8.0f  (%.0f - %.0f)" % (driver, name, statistics.median(rates),
                                                   min(rates), max(rates)))
    for driver in drivers:
        plain = statistics.median(results[(driver, "single")])
        keyed = statistics.median(results[(driver, "single+key")])
        batch = statistics.median(results[(driver, "batch 1000")])
        print("%-6s a unique key costs %+.3f ms a push (%+.0f%% time); a batch of 1000 is"
              " %.1fx single pushes" % (driver, 1000 / keyed - 1000 / plain,
                                        100 * (plain / keyed - 1), batch / plain))
    return 0


if __name__ == "__main__":
    sys.exit(main())
